"""Our StatLogger inside the engine's real ``StatLoggerManager``, beside the real
``PrometheusStatLogger``, fed real ``SchedulerStats`` / ``IterationStats`` /
``FinishedRequestStats``: the store must hold exactly the expected samples (seconds → ms), and the
engine's own Prometheus metrics must still work."""
from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY

from aphrodite_sla.store.spec import DropReason


def _steps(engine):
    """Three engine steps: a prefill step, a decode step that finishes one STOP and one ERROR
    request, and a last step finishing a single-token LENGTH request (no TPOT for it)."""
    fin = engine.finished
    r1 = fin("STOP", request_id="r1", e2e_latency=1.5, queued_time=0.1, prefill_time=0.2, decode_time=0.72,
             inference_time=1.4, mean_time_per_output_token=0.08, num_generation_tokens=10, num_prompt_tokens=60)
    r2 = fin("ERROR", request_id="r2", e2e_latency=0.5, queued_time=0.05, prefill_time=0.1, decode_time=0.35,
             inference_time=0.45, mean_time_per_output_token=0.07, num_generation_tokens=6, num_prompt_tokens=40)
    r3 = fin("LENGTH", request_id="r3", e2e_latency=0.3, queued_time=0.02, prefill_time=0.28, decode_time=0.0,
             inference_time=0.28, mean_time_per_output_token=0.0, num_generation_tokens=1, num_prompt_tokens=8)
    return [
        engine.step(running=2, waiting=1, kv=0.25, prefix=(2, 100, 40), ttfts=[0.120, 0.250], gen_tokens=2,
                    prompt_tokens=100),
        engine.step(running=2, waiting=0, kv=0.30, prefix=(0, 0, 0), itls=[0.020, 0.030, 0.025, 0.040],
                    gen_tokens=4, finished=[r1, r2]),
        engine.step(running=0, waiting=0, kv=0.0, prefix=(1, 8, 0), ttfts=[0.3], gen_tokens=1, prompt_tokens=8,
                    preempted=1, finished=[r3]),
    ]


EXPECTED = {
    "ttft_ms": [120.0, 250.0, 300.0],
    "itl_ms": [20.0, 30.0, 25.0, 40.0],
    "request_latency_ms": [1500.0, 500.0, 300.0],
    "queue_time_ms": [100.0, 50.0, 20.0],
    "prefill_time_ms": [200.0, 100.0, 280.0],
    "decode_time_ms": [720.0, 350.0, 0.0],
    "tpot_ms": [80.0, 70.0],  # r3 has one output token: no TPOT
    "request_error_percent": [0.0, 100.0, 0.0],
    "finished_requests": [1.0, 1.0, 1.0],
    "goodput_requests": [1.0, 1.0],  # r1 and r3 met TTFT 2000 ms / TPOT 100 ms; r2 failed
    "goodput_percent": [100.0, 0.0, 100.0],  # the same judgement as a share: 100 met, 0 missed (the failed r2)
    "kv_cache_usage_percent": [25.0, 30.0, 0.0],
    "num_running_reqs": [2.0, 2.0, 0.0],
    "num_waiting_reqs": [1.0, 0.0, 0.0],
    "prefix_cache_queries": [100.0, 0.0, 8.0],
    "prefix_cache_hits": [40.0, 0.0, 0.0],
    "generation_tokens": [2.0, 4.0, 1.0],
    "prompt_tokens": [100.0, 0.0, 8.0],
    "preemptions": [0.0, 0.0, 1.0],
    "tokens_per_second": [],  # steps milliseconds apart: no full throughput interval yet
}


def _manager(engine, config, engine_idxs=(0,)):
    return engine.StatLoggerManager(config, engine_idxs=list(engine_idxs), custom_stat_loggers=[engine.Ours],
                                    enable_default_loggers=False)


def _ours(manager, engine, engine_idx=0):
    adapters = [lg for lg in manager.stat_loggers if hasattr(lg, "per_engine_stat_loggers")]
    found = [a.per_engine_stat_loggers[engine_idx] for a in adapters
             if isinstance(a.per_engine_stat_loggers.get(engine_idx), engine.Ours)]
    assert len(found) == 1, f"our logger is not in the manager: {manager.stat_loggers}"
    return found[0]


def test_manager_records_exact_samples_beside_prometheus(engine, runtime, samples):
    config = engine.config(model="contract-model")
    manager = _manager(engine, config)
    kinds = [type(lg).__name__ for lg in manager.stat_loggers]
    assert kinds == ["PerEngineStatLoggerAdapter", "PrometheusStatLogger"], kinds
    ours = _ours(manager, engine)
    assert isinstance(ours, engine.StatLoggerBase)
    assert ours.model_name == "contract-model"
    assert ours.recorder is runtime.recorder

    manager.log_engine_initialized()
    assert runtime.info.started
    for sched, it in _steps(engine):
        manager.record(sched, it, engine_idx=0)
        manager.log()

    runtime.recorder.flush()
    store = runtime.manager.store
    for name, expected in EXPECTED.items():
        assert samples(store, name) == pytest.approx(expected, rel=1e-12, abs=1e-9), name
    assert runtime.recorder.counters.steps_recorded == 3
    assert runtime.recorder.counters.bad_steps == 0
    assert runtime.recorder.counters.record_errors == 0
    assert ours.record_errors == 0
    assert runtime.recorder.counters.per_engine_steps == {0: 3}
    engine_series = set(EXPECTED)
    drops = {k: n for k, n in store.dropped().items() if k[0] in engine_series}
    assert drops == {}, drops

    # the engine's own Prometheus logger saw the same steps
    p = engine.prefix
    labels = {"model_name": "contract-model", "engine": "0"}
    assert REGISTRY.get_sample_value(f"{p}time_to_first_token_seconds_count", labels) == 3
    assert REGISTRY.get_sample_value(f"{p}time_to_first_token_seconds_sum", labels) == pytest.approx(0.67)
    assert REGISTRY.get_sample_value(f"{p}inter_token_latency_seconds_count", labels) == 4
    assert REGISTRY.get_sample_value(f"{p}e2e_request_latency_seconds_count", labels) == 3
    assert REGISTRY.get_sample_value(f"{p}request_success_total", {**labels, "finished_reason": "stop"}) == 1
    assert REGISTRY.get_sample_value(f"{p}request_success_total", {**labels, "finished_reason": "error"}) == 1
    assert REGISTRY.get_sample_value(f"{p}num_requests_running", labels) == 0
    # and none of our series carries the engine's reserved prefix (its logger deletes those)
    assert not [n for n in store.names() if n.startswith(("vllm:", "aphrodite:"))]


def test_one_logger_per_engine_index_all_feeding_one_runtime(engine, runtime, samples):
    manager = _manager(engine, engine.config(), engine_idxs=(0, 1))
    first, second = _ours(manager, engine, 0), _ours(manager, engine, 1)
    assert (first.engine_index, second.engine_index) == (0, 1)
    assert first.recorder is second.recorder is runtime.recorder
    a = engine.step(running=1, kv=0.1, ttfts=[0.05])
    b = engine.step(running=3, kv=0.7, ttfts=[0.5])
    manager.record(*a, engine_idx=0)
    manager.record(*b, engine_idx=1)
    runtime.recorder.flush()
    assert runtime.recorder.counters.per_engine_steps == {0: 1, 1: 1}
    assert samples(runtime.manager.store, "ttft_ms") == pytest.approx([50.0, 500.0])
    assert samples(runtime.manager.store, "kv_cache_usage_percent") == pytest.approx([10.0, 70.0])


def test_flush_runs_before_evaluation(engine, runtime, samples):
    """The evaluator's pre-evaluation hook moves staged steps into the store (no explicit flush)."""
    manager = _manager(engine, engine.config())
    manager.record(*engine.step(running=1, itls=[0.01, 0.02]), engine_idx=0)
    assert samples(runtime.manager.store, "itl_ms") == []  # staged, not yet extracted
    runtime.manager.evaluate()
    assert samples(runtime.manager.store, "itl_ms") == pytest.approx([10.0, 20.0])


def test_sleep_state_and_periodic_log(engine, runtime, samples, caplog):
    ours = _ours(_manager(engine, engine.config()), engine)
    ours.record_sleep_state(1, 2)  # what the manager passes after sleep(level=2)
    assert ours.sleep_level == 2
    ours.record_sleep_state(1, 0)  # after release_kv_cache_memory()
    assert ours.sleep_level == 1
    ours.record_sleep_state(0, 0)  # after wake_up()
    assert ours.sleep_level == 0
    assert samples(runtime.manager.store, "engine_sleep_level") == [2.0, 1.0, 0.0]

    ours.local_interval = 0.0  # every call may log
    ours.recorder._clock = _raise  # a recorder failure is counted, never raised into the engine
    ours.record(*engine.step())
    assert ours.recorder.counters.record_errors == 1
    with caplog.at_level("WARNING", logger="aphrodite_sla.integrations.vllm"):
        ours.log()
    assert "could not be recorded" in caplog.text


def test_disabled_by_configuration_records_nothing(engine, monkeypatch, samples):
    from aphrodite_sla import runtime as runtime_mod

    monkeypatch.setenv("APHRODITE_SLA_ENABLED", "0")
    runtime_mod.reset_runtime()
    try:
        manager = _manager(engine, engine.config())
        manager.log_engine_initialized()
        manager.record(*engine.step(ttfts=[0.1]), engine_idx=0)
        rt = runtime_mod.get_runtime()
        assert rt.info.config_error is None, rt.info.config_error
        assert not rt.info.started
        assert rt.recorder.counters.steps_recorded == 0
    finally:
        runtime_mod.reset_runtime()


def _raise(*args, **kwargs):
    raise RuntimeError("boom")


def test_nan_defaults_do_not_leak(engine, runtime, samples):
    """A real default-constructed step (what an idle engine sends) records zeros, drops nothing."""
    manager = _manager(engine, engine.config())
    manager.record(engine.SchedulerStats(), engine.IterationStats(), engine_idx=0)
    runtime.recorder.flush()
    store = runtime.manager.store
    assert samples(store, "kv_cache_usage_percent") == [0.0]
    assert samples(store, "ttft_ms") == []
    assert not any(r is DropReason.NAN for (_, r) in store.dropped())
    assert all(math.isfinite(v) for v in samples(store, "num_running_reqs"))
