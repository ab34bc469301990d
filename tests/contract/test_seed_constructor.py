"""The seed's constructor form, ``AphroditeProductionStatLogger(local_interval=...,
production_monitor=..., aphrodite_config=...)``, feeds the given monitor (not the process
runtime), whichever of ``recorder`` / ``manager`` / ``sla_manager`` the monitor exposes."""
from __future__ import annotations

import types

import pytest

from aphrodite_sla import create_production_sla_manager
from aphrodite_sla import runtime as runtime_mod
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder

NS = types.SimpleNamespace


@pytest.fixture
def no_runtime():
    runtime_mod.reset_runtime()
    yield
    assert runtime_mod._runtime is None, "the seed form must not create the process runtime"
    runtime_mod.reset_runtime()


def _monitors():
    manager = create_production_sla_manager(anomaly_detection=False)
    recorder = EngineStatsRecorder(create_production_sla_manager(anomaly_detection=False))
    return [
        ("recorder", NS(recorder=recorder), recorder.manager),
        ("manager", NS(manager=manager), manager),
        ("sla_manager", NS(sla_manager=create_production_sla_manager(anomaly_detection=False)), None),
        ("the manager itself", create_production_sla_manager(anomaly_detection=False), None),
    ]


@pytest.mark.parametrize("index", range(4), ids=["recorder", "manager", "sla_manager", "manager-itself"])
def test_seed_form_feeds_the_given_monitor(aphrodite_api, no_runtime, samples, index):
    label, monitor, sla_manager = _monitors()[index]
    sla_manager = sla_manager or getattr(monitor, "sla_manager", None) or monitor
    api = aphrodite_api
    ours = api.Ours(local_interval=10.0, production_monitor=monitor, aphrodite_config=api.config(model="seed-model"))
    assert isinstance(ours, api.StatLoggerBase)
    assert ours.model_name == "seed-model" and ours.local_interval == 10.0
    assert ours.recorder.manager is sla_manager, label
    ours.log_engine_initialized()
    r = api.finished("STOP", e2e_latency=0.25, queued_time=0.01, prefill_time=0.04, num_generation_tokens=5,
                     mean_time_per_output_token=0.02)
    ours.record(*api.step(running=1, kv=0.5, ttfts=[0.05], itls=[0.02, 0.03], finished=[r]))
    ours.log()
    ours.recorder.flush()
    store = sla_manager.store
    assert samples(store, "ttft_ms") == pytest.approx([50.0])
    assert samples(store, "itl_ms") == pytest.approx([20.0, 30.0])
    assert samples(store, "request_latency_ms") == pytest.approx([250.0])
    assert samples(store, "kv_cache_usage_percent") == pytest.approx([50.0])


def test_seed_form_shares_one_recorder_per_manager(aphrodite_api, no_runtime):
    manager = create_production_sla_manager(anomaly_detection=False)
    monitor = NS(manager=manager)
    a = aphrodite_api.Ours(production_monitor=monitor, aphrodite_config=aphrodite_api.config())
    b = aphrodite_api.Ours(aphrodite_api.config(), 1, production_monitor=monitor)
    assert a.recorder is b.recorder  # one pre-evaluation hook, one staging list per manager


def test_seed_form_uses_the_runtime_recorder_for_the_runtime_manager(aphrodite_api):
    runtime_mod.reset_runtime()
    try:
        rt = runtime_mod.get_runtime()
        ours = aphrodite_api.Ours(production_monitor=NS(sla_manager=rt.manager))
        assert ours.recorder is rt.recorder
    finally:
        runtime_mod.reset_runtime()


def test_seed_form_rejects_an_unusable_monitor(aphrodite_api, no_runtime):
    with pytest.raises(TypeError, match="production_monitor"):
        aphrodite_api.Ours(production_monitor=object())


def test_vllm_logger_accepts_a_monitor_too(vllm_api, no_runtime, samples):
    manager = create_production_sla_manager(anomaly_detection=False)
    ours = vllm_api.Ours(vllm_api.config(), 0, production_monitor=NS(manager=manager))
    ours.record(*vllm_api.step(ttfts=[0.2]))
    ours.recorder.flush()
    assert samples(manager.store, "ttft_ms") == pytest.approx([200.0])
