"""The simulated engine client against the real ``AsyncLLM``: each action recovery calls has the same
name, parameters (names, kinds, defaults) and sync/async kind, so code written against the
simulation binds to a real engine unchanged (vLLM exactly; Aphrodite's fork adds parameters and
returns None from ``wake_up``, so there ours must be a subset)."""
from __future__ import annotations

import importlib
import inspect

import pytest

from aphrodite_sla.sim.engine_client import SimulatedEngineClient

METHODS = (
    "abort", "pause_generation", "resume_generation", "is_paused", "reset_prefix_cache", "reset_mm_cache", "sleep",
    "wake_up", "is_sleeping", "check_health", "get_num_unfinished_requests",
)
PROPERTIES = ("errored", "dead_error")


def _async_llm(api):
    return importlib.import_module(f"{api.name}.v1.engine.async_llm").AsyncLLM


def _params(fn) -> list[tuple[str, inspect._ParameterKind, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", METHODS)
def test_method_binds_like_the_real_async_llm(engine, name):
    real = getattr(_async_llm(engine), name)
    ours = getattr(SimulatedEngineClient, name)
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(real), f"{name}: sync/async differs from {engine.name}"
    if engine.name == "vllm":
        assert _params(ours) == _params(real), f"{name}: parameters differ from vLLM {engine.version}"
    else:
        theirs = {n: (k, d) for n, k, d in _params(real)}
        for n, k, d in _params(ours):
            assert theirs.get(n) == (k, d), f"{name}({n}): not accepted as such by {engine.name} {engine.version}"


@pytest.mark.parametrize("name", PROPERTIES)
def test_property_like_the_real_async_llm(engine, name):
    assert isinstance(inspect.getattr_static(_async_llm(engine), name), property)
    assert isinstance(inspect.getattr_static(SimulatedEngineClient, name), property)


def test_pause_modes_are_vllms(vllm_api):
    import typing

    from aphrodite_sla.sim.engine import PAUSE_MODES

    assert PAUSE_MODES == typing.get_args(importlib.import_module("vllm.v1.engine").PauseMode)
