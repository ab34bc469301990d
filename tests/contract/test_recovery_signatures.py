"""Contract: every engine call our recovery actions make exists on the real ``AsyncLLM`` of vLLM
and Aphrodite, is a coroutine function where we await one, and accepts the arguments we pass; and
the recording fake the unit tests use (tests/fake_engine.py) binds the same way, so it cannot drift.

Why the calls are recorded rather than listed: the actions run here against the fake (every engine
path enabled), and the arguments they really passed are bound against the real classes' signatures;
a list kept by hand would pass while the code changed. No engine is constructed (no GPU).
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import typing
from types import SimpleNamespace as NS
from typing import Any

import pytest

from aphrodite_sla.recovery import actions as A
from aphrodite_sla.recovery.engine_handle import EngineHandle
from aphrodite_sla.recovery.model import RecoveryAction
from aphrodite_sla.recovery.target import RecoveryTarget
from aphrodite_sla.sla.threshold import Direction, SLAViolation, Statistic, ViolationSeverity
from tests.fake_engine import ENGINE_ACTION_METHODS, Call, RecordingEngineClient

EMPTY = inspect.Parameter.empty


@pytest.fixture
def real(engine: NS) -> NS:
    """The engine's real AsyncLLM (``engine`` skips, or fails under SLA_CONTRACT_REQUIRE_ENGINES=1,
    when the engine cannot import at all; past that, a missing class is a broken contract)."""
    pkg = engine.name
    async_llm = importlib.import_module(f"{pkg}.v1.engine.async_llm")
    return NS(
        name=pkg,
        AsyncLLM=async_llm.AsyncLLM,
        PauseMode=importlib.import_module(f"{pkg}.v1.engine").PauseMode,
        EngineDeadError=importlib.import_module(f"{pkg}.v1.engine.exceptions").EngineDeadError,
    )


def _violation() -> SLAViolation:
    return SLAViolation(
        metric_name="ttft_p95", source_metric="ttft_ms", statistic=Statistic.P95, direction=Direction.UPPER, observed_value=900.0,
        bound=550.0, target_value=500.0, severity=ViolationSeverity.CRITICAL, window_seconds=60.0, first_breach_time=1.0,
        detected_at=2.0, sustained_ratio=1.0, evaluation_points=5, sample_count=50,
    )


async def _every_engine_call() -> list[Call]:
    """Run every action (apply and undo) with every engine path enabled; the calls they made."""
    fake = RecordingEngineClient(unfinished=("r1",))
    target = RecoveryTarget(engine=EngineHandle(fake), memory_sleep_enabled=True, fleet_replicas=2, engine_call_timeout_s=5.0)
    for action, handler in A.default_handlers().items():
        pre = handler.precheck(target, _violation())
        if not pre.ok:
            assert not pre.available, f"{action}: {pre.reason}"  # needs a hook / breakers: no engine call
            continue
        applied = await handler.apply(target, _violation())
        if action is RecoveryAction.SERVICE_RESTART:
            fake.paused = True  # so the undo's resume path runs too
        if applied.undo is not None:
            await applied.undo()
    return fake.calls


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return asyncio.run(_every_engine_call())


def test_the_actions_exercise_the_engine_surface(calls: list[Call]) -> None:
    assert {c.method for c in calls} == {
        "reset_prefix_cache", "reset_mm_cache", "check_health", "get_num_unfinished_requests", "pause_generation", "resume_generation",
        "is_paused", "is_sleeping", "sleep", "wake_up",
    }


def test_every_call_exists_is_awaitable_and_binds_on_the_real_engine(real: NS, calls: list[Call]) -> None:
    for call in calls:
        method = getattr(real.AsyncLLM, call.method, None)
        assert method is not None, f"{real.name} AsyncLLM has no {call.method}()"
        fake_method = getattr(RecordingEngineClient, call.method)
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(fake_method), (
            f"{real.name} AsyncLLM.{call.method}: coroutine function is {inspect.iscoroutinefunction(method)}, the fake says otherwise"
        )
        try:
            inspect.signature(method).bind(object(), *call.args, **call.kwargs)
        except TypeError as err:
            pytest.fail(f"{real.name} AsyncLLM.{call.method}{inspect.signature(method)} rejects args={call.args} kwargs={call.kwargs}: {err}")


def test_the_fake_binds_like_the_real_engine(real: NS) -> None:
    """Each fake parameter is the real one (name, kind, default); any extra real parameter has a
    default, so every call that binds on the fake binds on the engine with the same meaning."""
    for name in ENGINE_ACTION_METHODS:
        real_method = getattr(real.AsyncLLM, name)
        fake_method = getattr(RecordingEngineClient, name)
        assert inspect.iscoroutinefunction(real_method) == inspect.iscoroutinefunction(fake_method), f"{real.name} {name}: async differs"
        real_params = inspect.signature(real_method).parameters
        fake_params = inspect.signature(fake_method).parameters
        for p in fake_params.values():
            assert p.name in real_params, f"{real.name} AsyncLLM.{name} has no parameter {p.name!r} (the fake does)"
            r = real_params[p.name]
            assert (r.kind, r.default) == (p.kind, p.default), f"{real.name} AsyncLLM.{name}({r}) vs fake ({p})"
        extra = [p for n, p in real_params.items() if n not in fake_params and p.default is EMPTY and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert not extra, f"{real.name} AsyncLLM.{name}: required parameters the fake lacks: {extra}"
    assert isinstance(inspect.getattr_static(real.AsyncLLM, "errored"), property)


def test_the_pause_mode_we_pass_aborts_in_flight_requests(real: NS) -> None:
    modes = typing.get_args(real.PauseMode)
    assert A.PAUSE_ABORT_MODE in modes, f"{real.name} PauseMode is {modes}"
    doc = inspect.getdoc(real.AsyncLLM.pause_generation) or ""
    assert f'"{A.PAUSE_ABORT_MODE}"`: Abort all in-flight requests' in doc.replace("``", "`"), doc
    # sleep(level) takes the same mode and defaults to it: MEMORY_CLEANUP's sleep aborts in-flight requests (documented)
    assert inspect.signature(real.AsyncLLM.sleep).parameters["mode"].default == A.PAUSE_ABORT_MODE


def test_check_health_failure_is_an_exception_we_catch(real: NS) -> None:
    # HEALTH_CHECK_RESET turns any Exception from check_health() into "engine dead"
    assert issubclass(real.EngineDeadError, Exception)
    assert "dead_error" in inspect.getsource(real.AsyncLLM.check_health)


def test_reset_prefix_cache_reports_success_as_bool(real: NS) -> None:
    ann: Any = inspect.signature(real.AsyncLLM.reset_prefix_cache).return_annotation
    assert ann in (bool, "bool"), ann
