"""Recovery actions: EngineHandle across real event loops, and every handler's pre-check, apply and
undo against the recording fake engine (tests/fake_engine.py)."""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aphrodite_sla.events import VIOLATION_ALERT, episode_id, fingerprint
from aphrodite_sla.integrations.admission import AdmissionController, AdmissionLimits, AdmissionState
from aphrodite_sla.integrations.server_state import ServerState
from aphrodite_sla.integrations.stall import stall_violation
from aphrodite_sla.recovery import actions as A
from aphrodite_sla.recovery.engine_handle import EngineHandle, EngineUnavailable
from aphrodite_sla.recovery.hooks import CommandHook, HookContext
from aphrodite_sla.recovery.model import ActionHandler, Applied, RecoveryAction
from aphrodite_sla.recovery.target import RecoveryTarget, ScalingState
from aphrodite_sla.sla.threshold import Direction, SLAViolation, Statistic, ViolationSeverity
from tests.fake_engine import RecordingEngineClient

RA = RecoveryAction


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def engine_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A real event loop running in its own thread, like the engine's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="engine-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def in_other_thread(make: Callable[[], Any]) -> Any:
    """Run ``make()``'s coroutine with asyncio.run on a fresh thread (the recovery thread)."""
    out: dict[str, Any] = {}

    def main() -> None:
        try:
            out["value"] = asyncio.run(make())
        except BaseException as err:
            out["error"] = err

    t = threading.Thread(target=main, name="recovery-loop")
    t.start()
    t.join(20)
    assert not t.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def violation(severity: ViolationSeverity = ViolationSeverity.MAJOR, name: str = "ttft_p95") -> SLAViolation:
    return SLAViolation(
        metric_name=name, source_metric="ttft_ms", statistic=Statistic.P95, direction=Direction.UPPER, observed_value=812.5,
        bound=550.0, target_value=500.0, severity=severity, window_seconds=60.0, first_breach_time=1_700_000_000.25,
        detected_at=1_700_000_030.0, sustained_ratio=0.9, evaluation_points=10, sample_count=400, peak_severity=severity,
    )


def target(client: Any = None, **kw: Any) -> RecoveryTarget:
    kw.setdefault("engine_call_timeout_s", 2.0)
    return RecoveryTarget(engine=EngineHandle(client), **kw)


class Breakers:
    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def force_open(self, name: str, reason: str) -> None:
        self.log.append(("force_open", name, reason))

    def reset(self, name: str) -> None:
        self.log.append(("reset", name))


def py_hook(code: str, *args: str, timeout_s: float = 10.0) -> CommandHook:
    return CommandHook((sys.executable, "-c", code, *args), timeout_s=timeout_s)


# -- EngineHandle --------------------------------------------------------------------------------
async def test_handle_without_client_or_method_is_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="no engine client"):
        await EngineHandle().call("check_health", timeout_s=1)
    handle = EngineHandle(RecordingEngineClient(missing=("reset_mm_cache",)))
    assert handle.has("check_health") and not handle.has("reset_mm_cache") and not handle.has("nope")
    assert handle.missing("check_health") is None
    assert "reset_mm_cache()" in (handle.missing("check_health", "reset_mm_cache") or "")
    with pytest.raises(EngineUnavailable, match="reset_mm_cache"):
        await handle.call("reset_mm_cache", timeout_s=1)


async def test_handle_direct_calls_sync_and_async_and_times_out() -> None:
    fake = RecordingEngineClient(unfinished=("a", "b"))
    handle = EngineHandle(fake)
    assert await handle.call("get_num_unfinished_requests", timeout_s=1) == 2
    assert await handle.call("reset_prefix_cache", timeout_s=1) is True
    await handle.call("abort", ["a"], timeout_s=1)
    assert fake.unfinished == {"b"}
    fake.hang("is_paused")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"is_paused\(\) did not answer within 0.2 s"):
        await handle.call("is_paused", timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert fake.cancelled == ["is_paused"]
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(ValueError, match="timeout_s"):
            await handle.call("is_paused", timeout_s=bad)


def test_handle_schedules_onto_the_engine_loop_from_another_thread(engine_loop: asyncio.AbstractEventLoop) -> None:
    fake = RecordingEngineClient(unfinished=("r1",))
    handle = EngineHandle(fake, engine_loop)
    engine_thread = in_other_thread(lambda: _thread_of(engine_loop))

    async def recovery() -> tuple[Any, Any, int]:
        done = await handle.call("reset_prefix_cache", timeout_s=2)
        n = await handle.call("get_num_unfinished_requests", timeout_s=2)  # a sync method runs on the engine loop too
        return done, n, threading.get_ident()

    done, n, caller_thread = in_other_thread(recovery)
    assert (done, n) == (True, 1)
    assert caller_thread != engine_thread
    assert [c.method for c in fake.calls] == ["reset_prefix_cache", "get_num_unfinished_requests"]
    assert all(c.loop is engine_loop and c.thread == engine_thread for c in fake.calls)


async def _thread_of(loop: asyncio.AbstractEventLoop) -> int:
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_ident(), loop))


async def _ident() -> int:
    return threading.get_ident()


def test_handle_timeout_cancels_the_call_on_the_engine_loop(engine_loop: asyncio.AbstractEventLoop) -> None:
    fake = RecordingEngineClient().hang("pause_generation")
    handle = EngineHandle(fake, engine_loop)

    async def recovery() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="pause_generation"):
            await handle.call("pause_generation", mode="abort", timeout_s=0.2)
        return time.monotonic() - started

    assert in_other_thread(recovery) < 2
    assert wait_until(lambda: fake.cancelled == ["pause_generation"])
    # the engine loop still serves afterwards
    assert in_other_thread(lambda: handle.call("is_paused", timeout_s=2)) is False


def test_handle_caller_cancelled_cancels_the_engine_side(engine_loop: asyncio.AbstractEventLoop) -> None:
    fake = RecordingEngineClient().hang("sleep")
    handle = EngineHandle(fake, engine_loop)

    async def recovery() -> None:
        task = asyncio.ensure_future(handle.call("sleep", level=1, timeout_s=30))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_other_thread(recovery)
    assert wait_until(lambda: fake.cancelled == ["sleep"])


def test_handle_engine_loop_not_running_is_unavailable() -> None:
    stopped = asyncio.new_event_loop()
    try:
        handle = EngineHandle(RecordingEngineClient(), stopped)
        with pytest.raises(EngineUnavailable, match="not running"):
            in_other_thread(lambda: handle.call("check_health", timeout_s=1))
    finally:
        stopped.close()
    with pytest.raises(EngineUnavailable, match="closed"):
        in_other_thread(lambda: handle.call("check_health", timeout_s=1))


async def test_handle_from_server_reads_the_client_at_call_time() -> None:
    server = ServerState()
    handle = EngineHandle.from_server(server)
    assert not handle.available
    fake = RecordingEngineClient()
    server.engine_client, server.engine_loop = fake, asyncio.get_running_loop()  # same loop: called directly
    assert handle.available and handle.loop is server.engine_loop
    assert await handle.call("reset_prefix_cache", timeout_s=1) is True
    t = RecoveryTarget.from_server(server)
    assert t.admission is server.admission and t.engine.client is fake


# -- target --------------------------------------------------------------------------------------
def test_scaling_state_bounds_and_validation() -> None:
    s = ScalingState(current_replicas=2, min_replicas=1, max_replicas=3)
    assert s.snapshot().desired_replicas == 2
    assert s.scale_up() == (2, 3)
    assert s.scale_up() == (3, 3)  # bounded by max
    assert s.set_desired(0) == 1  # clamped to min
    with pytest.raises(ValueError, match="min_replicas"):
        ScalingState(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="current_replicas"):
        ScalingState(current_replicas=-1)
    with pytest.raises(ValueError, match="fleet_replicas"):
        RecoveryTarget(fleet_replicas=0)
    with pytest.raises(ValueError, match="engine_call_timeout_s"):
        RecoveryTarget(engine_call_timeout_s=0)


def test_default_handlers_cover_every_action() -> None:
    handlers = A.default_handlers()
    assert set(handlers) == set(RecoveryAction)
    for action, handler in handlers.items():
        assert handler.action is action
        assert callable(handler.precheck) and asyncio.iscoroutinefunction(handler.apply)
    approval = {a for a, h in handlers.items() if h.requires_approval}
    assert approval == {RA.SERVICE_RESTART, RA.DEPLOYMENT_ROLLBACK}


ENGINE_ACTIONS = [RA.CACHE_INVALIDATION, RA.HEALTH_CHECK_RESET, RA.SERVICE_RESTART]


@pytest.mark.parametrize("action", ENGINE_ACTIONS)
def test_engine_actions_without_engine_are_not_available(action: RecoveryAction) -> None:
    pre = A.default_handlers()[action].precheck(target(), violation())
    assert not pre.ok and not pre.available
    assert pre.reason.startswith("no engine handle: ")


@pytest.mark.parametrize(("action", "method"), [
    (RA.CACHE_INVALIDATION, "reset_prefix_cache"), (RA.HEALTH_CHECK_RESET, "check_health"), (RA.SERVICE_RESTART, "pause_generation"),
])
def test_engine_actions_with_engine_lacking_the_method_are_not_available(action: RecoveryAction, method: str) -> None:
    pre = A.default_handlers()[action].precheck(target(RecordingEngineClient(missing=(method,))), None)
    assert not pre.available and f"{method}()" in pre.reason


async def run(action: RecoveryAction, t: RecoveryTarget, v: SLAViolation | None = None) -> Applied:
    handler: ActionHandler = A.default_handlers()[action]
    pre = handler.precheck(t, v)
    assert pre.ok, pre.reason
    return await handler.apply(t, v)


# -- CACHE_INVALIDATION --------------------------------------------------------------------------
async def test_cache_invalidation_resets_prefix_and_mm_cache() -> None:
    fake = RecordingEngineClient()
    applied = await run(RA.CACHE_INVALIDATION, target(fake), violation())
    assert fake.names() == ["reset_prefix_cache", "reset_mm_cache"]
    assert fake.calls[0].args == () and fake.calls[0].kwargs == {}  # never resets running requests
    assert applied.undo is None and not applied.keep_until_resolved
    assert "prefix cache reset" in applied.detail and "multimodal" in applied.detail


async def test_cache_invalidation_false_is_a_failure_and_mm_cache_optional() -> None:
    fake = RecordingEngineClient().returns("reset_prefix_cache", False)
    with pytest.raises(A.ActionFailed, match="returned False"):
        await run(RA.CACHE_INVALIDATION, target(fake))
    # refused while requests run: tried again preempting them (vLLM's reset_running_requests), then failed
    assert fake.names() == ["reset_prefix_cache", "reset_prefix_cache"]
    assert fake.calls[1].kwargs == {"reset_running_requests": True}
    fake = RecordingEngineClient(missing=("reset_mm_cache",))
    applied = await run(RA.CACHE_INVALIDATION, target(fake))
    assert fake.names() == ["reset_prefix_cache"] and "multimodal" not in applied.detail


# -- LOAD_BALANCER_ADJUST ------------------------------------------------------------------------
@pytest.mark.parametrize(("severity", "fraction"), [
    (ViolationSeverity.MINOR, 0.10), (ViolationSeverity.MAJOR, 0.25), (ViolationSeverity.CRITICAL, 0.50),
])
async def test_load_balancer_adjust_sheds_by_severity_and_undo_reopens(severity: ViolationSeverity, fraction: float) -> None:
    t = target(shed_retry_after_s=7.0)
    applied = await run(RA.LOAD_BALANCER_ADJUST, t, violation(severity))
    policy = t.admission.policy
    assert (policy.state, policy.shed_fraction, policy.retry_after_s) == (AdmissionState.SHEDDING, fraction, 7.0)
    assert "ttft_p95" in policy.reason and applied.keep_until_resolved and applied.undo is not None
    assert await applied.undo() == "admission source recovery-shed removed"
    assert t.admission.state is AdmissionState.OPEN


async def test_load_balancer_adjust_keeps_to_its_own_source_and_respects_later_changes() -> None:
    """Recovery's shedding lives under its own admission source: undoing it never writes back, nor
    lifts, what an operator or degradation set (the strictest source wins meanwhile)."""
    admission = AdmissionController()
    admission.shed(0.1, 3.0, "operator")
    t = target(admission=admission)
    applied = await run(RA.LOAD_BALANCER_ADJUST, t, violation(ViolationSeverity.CRITICAL))
    assert admission.shed_fraction == 0.5
    assert applied.undo is not None
    await applied.undo()
    p = admission.policy
    assert (p.state, p.shed_fraction, p.retry_after_s, p.reason) == (AdmissionState.SHEDDING, 0.1, 3.0, "operator")
    admission.open()  # the operator's limit goes: nothing of recovery's is left behind
    assert admission.state is AdmissionState.OPEN and A.SHED_SOURCE not in admission.sources()
    # our source changed by someone after us: undo leaves theirs
    applied = await run(RA.LOAD_BALANCER_ADJUST, t, violation(ViolationSeverity.CRITICAL))
    admission.apply(AdmissionLimits(shed_fraction=0.9), "operator override", source=A.SHED_SOURCE)
    assert applied.undo is not None
    assert "left as is" in await applied.undo()
    assert admission.shed_fraction == 0.9


def test_load_balancer_adjust_precheck_refuses_when_it_would_not_help() -> None:
    t = target()
    handler = A.default_handlers()[RA.LOAD_BALANCER_ADJUST]
    t.admission.shed(0.5)
    pre = handler.precheck(t, violation(ViolationSeverity.MAJOR))
    assert not pre.ok and pre.available and "already shedding" in pre.reason
    assert handler.precheck(t, None).ok is False
    t.admission.close()
    assert "closed" in handler.precheck(t, violation()).reason


# -- TRAFFIC_ROUTING -----------------------------------------------------------------------------
async def test_traffic_routing_refuses_single_replica_unless_allowed() -> None:
    handler = A.default_handlers()[RA.TRAFFIC_ROUTING]
    pre = handler.precheck(target(), violation())
    assert not pre.ok and pre.available and pre.reason == "single replica: draining would drop all traffic"
    assert handler.precheck(target(allow_single_replica_drain=True), violation()).ok


async def test_traffic_routing_drains_and_undo_restores() -> None:
    t = target(fleet_replicas=3, drain_retry_after_s=20.0)
    t.admission.shed(0.25, 5.0, "earlier")
    applied = await run(RA.TRAFFIC_ROUTING, t, violation())
    assert t.admission.state is AdmissionState.CLOSED and t.admission.retry_after_s == 20.0
    assert applied.keep_until_resolved and "3 replicas" in applied.detail
    assert not A.default_handlers()[RA.TRAFFIC_ROUTING].precheck(t, violation()).ok  # already draining
    assert applied.undo is not None
    await applied.undo()
    assert t.admission.state is AdmissionState.SHEDDING and t.admission.shed_fraction == 0.25


async def test_shed_then_drain_undone_in_reverse_order_ends_open() -> None:
    t = target(fleet_replicas=2)
    shed = await run(RA.LOAD_BALANCER_ADJUST, t, violation())
    drain = await run(RA.TRAFFIC_ROUTING, t, violation())
    assert drain.undo is not None and shed.undo is not None
    await drain.undo()
    assert t.admission.state is AdmissionState.SHEDDING
    await shed.undo()
    assert t.admission.state is AdmissionState.OPEN


# -- RESOURCE_SCALING ----------------------------------------------------------------------------
def test_resource_scaling_precheck() -> None:
    handler = A.default_handlers()[RA.RESOURCE_SCALING]
    pre = handler.precheck(target(), violation())
    assert not pre.available and "no scaling hook" in pre.reason
    t = target(scaling=ScalingState(current_replicas=1, max_replicas=2, desired_replicas=2))
    pre = handler.precheck(t, violation())
    assert not pre.ok and pre.available and "maximum of 2" in pre.reason
    assert handler.precheck(target(hooks={RA.RESOURCE_SCALING: py_hook("pass")}), violation()).ok


async def test_resource_scaling_raises_desired_and_undo_restores() -> None:
    t = target(scaling=ScalingState(current_replicas=2, max_replicas=4))
    applied = await run(RA.RESOURCE_SCALING, t, violation())
    assert t.scaling.desired_replicas == 3 and applied.detail == "desired replicas 2 -> 3"
    assert applied.undo is not None
    assert await applied.undo() == "desired replicas back to 2"
    assert t.scaling.desired_replicas == 2


async def test_resource_scaling_runs_the_hook_and_a_failing_hook_fails(tmp_path: Any) -> None:
    out = tmp_path / "args"
    hook = py_hook("import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))", str(out), "{action}", "{sla}", "{severity}")
    t = target(hooks={RA.RESOURCE_SCALING: hook})  # max == current: only the hook can scale
    applied = await run(RA.RESOURCE_SCALING, t, violation(ViolationSeverity.CRITICAL))
    assert out.read_text() == "resource_scaling ttft_p95 critical"
    assert "scaling hook ok" in applied.detail
    bad = target(scaling=ScalingState(current_replicas=1, max_replicas=3), hooks={RA.RESOURCE_SCALING: py_hook("raise SystemExit(3)")})
    with pytest.raises(A.ActionFailed, match="exited with 3"):
        await run(RA.RESOURCE_SCALING, bad, violation())
    assert bad.scaling.desired_replicas == 1


# -- CIRCUIT_BREAKER_ACTIVATION ------------------------------------------------------------------
async def test_circuit_breaker_activation() -> None:
    handler = A.default_handlers()[RA.CIRCUIT_BREAKER_ACTIVATION]
    assert not handler.precheck(target(), violation()).available
    breakers = Breakers()
    refused = A.default_handlers()[RA.CIRCUIT_BREAKER_ACTIVATION].precheck(target(breakers=breakers), violation())
    assert not refused.ok and refused.available and "single replica" in refused.reason  # held open = an outage there
    applied = await run(RA.CIRCUIT_BREAKER_ACTIVATION, target(breakers=breakers, fleet_replicas=3), violation())
    assert breakers.log == [("force_open", "model_inference", "recovery circuit_breaker_activation: ttft_p95 major")]
    assert applied.keep_until_resolved and applied.undo is not None
    await applied.undo()
    assert breakers.log[-1] == ("reset", "model_inference")


# -- HEALTH_CHECK_RESET --------------------------------------------------------------------------
async def test_health_check_reset_resets_our_state_when_the_engine_is_alive() -> None:
    resets: list[str] = []
    fake = RecordingEngineClient()
    applied = await run(RA.HEALTH_CHECK_RESET, target(fake, health_reset=lambda: resets.append("sync")), violation())
    assert fake.names() == ["check_health"] and resets == ["sync"] and "reset" in applied.detail

    async def async_reset() -> None:
        resets.append("async")

    await run(RA.HEALTH_CHECK_RESET, target(fake, health_reset=async_reset))
    assert resets == ["sync", "async"]
    assert "no monitor health state" in (await run(RA.HEALTH_CHECK_RESET, target(fake))).detail


async def test_health_check_reset_dead_engine_fails_and_keeps_our_state() -> None:
    resets: list[int] = []
    fake = RecordingEngineClient()
    fake.dead = True
    with pytest.raises(A.ActionFailed, match="EngineDeadError: EngineCore encountered an issue"):
        await run(RA.HEALTH_CHECK_RESET, target(fake, health_reset=lambda: resets.append(1)))
    assert resets == []
    fake = RecordingEngineClient().hang("check_health")
    with pytest.raises(TimeoutError):
        await run(RA.HEALTH_CHECK_RESET, target(fake, engine_call_timeout_s=0.1, health_reset=lambda: resets.append(1)))
    assert resets == []


# -- SERVICE_RESTART -----------------------------------------------------------------------------
async def test_service_restart_pauses_with_abort_then_resumes() -> None:
    fake = RecordingEngineClient(unfinished=("r1", "r2"))
    applied = await run(RA.SERVICE_RESTART, target(fake), violation())
    assert fake.names() == ["get_num_unfinished_requests", "pause_generation", "resume_generation"]
    assert fake.calls[1].kwargs == {"mode": "abort"} and fake.calls[1].args == ()
    assert fake.unfinished == set() and not fake.paused
    assert "2 in flight" in applied.detail
    assert applied.undo is not None
    assert await applied.undo() == "engine not paused"
    fake.paused = True
    assert await applied.undo() == "generation resumed" and not fake.paused


async def test_service_restart_resumes_even_when_the_pause_fails_or_hangs() -> None:
    fake = RecordingEngineClient().fail("pause_generation", RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        await run(RA.SERVICE_RESTART, target(fake))
    assert fake.names()[-1] == "resume_generation"
    fake = RecordingEngineClient().hang("pause_generation")
    with pytest.raises(TimeoutError):
        await run(RA.SERVICE_RESTART, target(fake, engine_call_timeout_s=0.1))
    assert fake.cancelled == ["pause_generation"] and fake.names()[-1] == "resume_generation"


async def test_service_restart_uses_the_hook_when_configured(tmp_path: Any) -> None:
    out = tmp_path / "restart"
    fake = RecordingEngineClient()
    hook = py_hook("import sys; open(sys.argv[1], 'w').write(sys.argv[2])", str(out), "{episode}")
    v = violation()
    applied = await run(RA.SERVICE_RESTART, target(fake, hooks={RA.SERVICE_RESTART: hook}), v)
    assert fake.names() == [] and applied.undo is None
    assert out.read_text() == episode_id(fingerprint(VIOLATION_ALERT, sla="ttft_p95"), v.first_breach_time)
    assert A.default_handlers()[RA.SERVICE_RESTART].precheck(target(hooks={RA.SERVICE_RESTART: hook}), v).ok  # no engine needed


# -- DEPLOYMENT_ROLLBACK -------------------------------------------------------------------------
async def test_deployment_rollback_needs_a_hook() -> None:
    handler = A.default_handlers()[RA.DEPLOYMENT_ROLLBACK]
    pre = handler.precheck(target(RecordingEngineClient()), violation())
    assert not pre.available and "no deployment_rollback hook" in pre.reason
    ok = await run(RA.DEPLOYMENT_ROLLBACK, target(hooks={RA.DEPLOYMENT_ROLLBACK: py_hook("print('rolled back')")}), violation())
    assert "rollback hook ok" in ok.detail and ok.undo is None
    failing = target(hooks={RA.DEPLOYMENT_ROLLBACK: py_hook("import sys; print('no previous revision'); sys.exit(2)")})
    with pytest.raises(A.ActionFailed, match="exited with 2 — no previous revision"):
        await run(RA.DEPLOYMENT_ROLLBACK, failing, violation())


# -- MEMORY_CLEANUP ------------------------------------------------------------------------------
async def test_memory_cleanup_is_gc_only_unless_enabled() -> None:
    fake = RecordingEngineClient()
    applied = await run(RA.MEMORY_CLEANUP, target(fake), violation())
    assert fake.names() == [] and applied.detail.startswith("gc collected ") and "not enabled" in applied.detail
    applied = await run(RA.MEMORY_CLEANUP, target(memory_sleep_enabled=True))  # no engine: gc still runs
    assert "sleep/wake skipped: no engine client" in applied.detail


async def test_memory_cleanup_sleeps_and_wakes_when_enabled() -> None:
    fake = RecordingEngineClient()
    applied = await run(RA.MEMORY_CLEANUP, target(fake, memory_sleep_enabled=True), violation())
    assert fake.names() == ["is_sleeping", "sleep", "wake_up"]
    assert fake.calls[1].kwargs == {"level": 1} and fake.sleeping == 0
    assert "slept" in applied.detail
    fake = RecordingEngineClient()
    fake.sleeping = 2  # put to sleep by an operator: leave it
    applied = await run(RA.MEMORY_CLEANUP, target(fake, memory_sleep_enabled=True))
    assert fake.names() == ["is_sleeping"] and "already asleep" in applied.detail


async def test_memory_cleanup_wakes_even_when_sleep_fails() -> None:
    fake = RecordingEngineClient().fail("sleep", ValueError("sleep mode is not enabled"))
    with pytest.raises(A.ActionFailed, match="sleep mode is not enabled"):
        await run(RA.MEMORY_CLEANUP, target(fake, memory_sleep_enabled=True))
    assert fake.names()[-1] == "wake_up"


# -- hook context --------------------------------------------------------------------------------
def test_hook_context_for_violation_and_stall() -> None:
    v = violation(ViolationSeverity.CRITICAL)
    ctx = HookContext.for_violation(RA.DEPLOYMENT_ROLLBACK, v)
    assert ctx.values() == {
        "sla": "ttft_p95", "severity": "critical", "episode": episode_id(fingerprint(VIOLATION_ALERT, sla="ttft_p95"), v.first_breach_time),
        "action": "deployment_rollback", "observed": "812.5", "bound": "550.0",
    }
    assert ctx.to_json()["observed"] == 812.5
    stall = HookContext.for_violation(RA.SERVICE_RESTART, stall_violation(100.0, 45.0, 30.0, 1))
    assert stall.sla == stall_violation(100.0, 45.0, 30.0, 1).metric_name and stall.severity == "critical"
    manual = HookContext.for_violation(RA.MEMORY_CLEANUP, None)
    assert manual.values()["sla"] == "" and manual.to_json()["observed"] is None
