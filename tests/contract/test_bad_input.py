"""Malformed stats through the engine's real manager: nothing escapes from our logger, and what
cannot be used is counted (store drops by reason, or the recorder's bad steps / record errors).

The engine's own ``PrometheusStatLogger`` sits in the same manager and raises on several of these
inputs; the test tells its exceptions apart from ours by the traceback."""
from __future__ import annotations

import math
import traceback
import types

import pytest

from aphrodite_sla.store.spec import DropReason

NS = types.SimpleNamespace


class Exploding:
    """Every attribute read raises something other than AttributeError."""

    def __getattr__(self, name):
        raise RuntimeError(f"exploding attribute {name}")


class BadIterable:
    def __iter__(self):
        raise ValueError("cannot iterate")


def _cases(engine):
    fin = engine.finished
    good_sched, good_it = engine.step(running=1)
    nan_it = engine.IterationStats()
    nan_it.time_to_first_tokens_iter = [math.nan, 0.1]
    nan_it.inter_token_latencies_iter = [math.inf, -math.inf, 0.02]
    neg_it = engine.IterationStats()
    neg_it.time_to_first_tokens_iter = [-0.5]
    neg_it.finished_requests = [fin("STOP", e2e_latency=-1.0, queued_time=-2.0, num_generation_tokens=3,
                                    mean_time_per_output_token=-0.1)]
    absurd_it = engine.IterationStats()
    absurd_it.time_to_first_tokens_iter = [1e308, 1e300]  # 1e308 s * 1000 overflows to inf
    absurd_it.num_generation_tokens = 10**400  # int too large for float
    typed_it = engine.IterationStats()
    typed_it.time_to_first_tokens_iter = ["0.1", "fast", None, b"x", object(), [1, 2]]
    typed_it.inter_token_latencies_iter = 5  # not iterable
    typed_it.finished_requests = [None, 42, "req", NS(), fin("ABORT", e2e_latency="slow")]
    typed_sched = engine.SchedulerStats()
    typed_sched.kv_cache_usage = "full"
    typed_sched.num_running_reqs = 2.5
    typed_sched.prefix_cache_stats = NS(queries=None, hits="many")
    return [
        ("None/None", None, None),
        ("None sched", None, good_it),
        ("None iteration", good_sched, None),
        ("empty namespaces", NS(), NS()),
        ("plain objects", object(), object()),
        ("numbers", 1, 2.0),
        ("strings", "sched", "iter"),
        ("nan/inf latencies", good_sched, nan_it),
        ("negative values", good_sched, neg_it),
        ("absurd values", good_sched, absurd_it),
        ("wrong types", typed_sched, typed_it),
        ("exploding attributes", Exploding(), Exploding()),
        ("bad iterables", NS(prefix_cache_stats=None), NS(time_to_first_tokens_iter=BadIterable(),
                                                             finished_requests=BadIterable())),
    ]


def _from_us(exc: BaseException) -> bool:
    return any("aphrodite_sla" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


def test_malformed_stats_never_escape(engine, runtime):
    manager = engine.StatLoggerManager(engine.config(), engine_idxs=[0], custom_stat_loggers=[engine.Ours],
                                       enable_default_loggers=False)
    manager.log_engine_initialized()
    cases = _cases(engine)
    engine_raised = []
    for label, sched, it in cases:
        try:
            manager.record(sched, it, engine_idx=0)
        except Exception as exc:
            assert not _from_us(exc), f"{label}: our code raised {exc!r}"
            engine_raised.append(label)  # the engine's own Prometheus logger choked on it
        manager.log()
    recorder = runtime.recorder
    assert recorder.counters.steps_recorded == len(cases)  # we are first in the manager: we saw all
    recorder.flush()  # off the hot path: must not raise either
    store = runtime.manager.store

    drops = store.dropped()
    reasons = {r for (_, r) in drops}
    assert {DropReason.NAN, DropReason.INFINITE, DropReason.NEGATIVE} <= reasons, drops
    assert drops.get(("ttft_ms", DropReason.NEGATIVE)) == 1
    assert drops.get(("ttft_ms", DropReason.INFINITE)) == 1  # 1e308 s in ms
    assert drops.get(("itl_ms", DropReason.INFINITE)) == 2
    assert drops.get(("request_latency_ms", DropReason.NEGATIVE)) == 1
    unreadable = recorder.counters.bad_steps + recorder.counters.record_errors
    assert unreadable >= 2, recorder.counters  # the exploding and bad-iterable steps
    # the valid values in the same steps were kept
    ttft = store.buffer("ttft_ms").window(-math.inf, math.inf)[1].tolist()
    assert 100.0 in ttft and 1e303 in ttft and all(math.isfinite(v) and v >= 0 for v in ttft)
    # the engine's own logger raised on some inputs that ours took
    assert engine_raised, "expected the engine's PrometheusStatLogger to reject some of these"


@pytest.mark.parametrize("kwargs", [{}, {"mm_cache_stats": object()}, {"engine_idx": 7}, {"future_arg": 1}])
def test_record_signature_is_lenient(engine, runtime, kwargs):
    ours = engine.Ours(engine.config(), 0)
    ours.record(*engine.step(ttfts=[0.1]), **kwargs)
    ours.record(None, None)
    assert ours.record_errors == 0
    assert runtime.recorder.counters.steps_recorded == 2


def test_constructor_is_lenient(engine, runtime):
    for args, kwargs in [((), {}), ((None,), {}), ((engine.config(), "x"), {}), ((object(), 3), {"unknown": 1}),
                         ((NS(model_config=NS(served_model_name=["a", "b"])),), {"local_interval": "nan"})]:
        ours = engine.Ours(*args, **kwargs)
        ours.log_engine_initialized()
        ours.record(*engine.step())
        ours.log()
        ours.record_sleep_state("x", None)
    assert ours.model_name == "a"
    assert ours.ignored_kwargs == ()
    assert engine.Ours(engine.config(), 0, unknown=1).ignored_kwargs == ("unknown",)


def test_a_runtime_that_cannot_start_does_not_stop_the_engine(engine, monkeypatch, caplog):
    from aphrodite_sla import runtime as runtime_mod

    def broken():
        raise RuntimeError("no runtime today")

    monkeypatch.setattr(runtime_mod, "get_runtime", broken)
    manager = engine.StatLoggerManager(engine.config(), engine_idxs=[0], custom_stat_loggers=[engine.Ours],
                                       enable_default_loggers=False)
    manager.log_engine_initialized()
    manager.record(*engine.step(ttfts=[0.1]), engine_idx=0)
    manager.log()
    manager.stat_loggers[0].per_engine_stat_loggers[0].record_sleep_state(1, 1)
    assert "cannot create the SLA runtime" in caplog.text
