"""The process-wide runtime: configuration errors never stop an engine, start/stop are idempotent."""
import pytest

from aphrodite_sla import runtime as rt
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.sla.threshold import SLAThreshold, Statistic


@pytest.fixture(autouse=True)
def fresh_runtime(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("APHRODITE_SLA_"):
            monkeypatch.delenv(key)
    rt.reset_runtime()
    yield
    rt.reset_runtime()


def test_singleton_and_idempotent_start_stop(monkeypatch):
    monkeypatch.setenv("APHRODITE_SLA_SYSTEM_SAMPLER", "0")
    a = rt.get_runtime()
    assert rt.get_runtime() is a
    a.start()
    a.start()
    assert a.manager.is_monitoring and a.stall.is_running
    assert a.context.manager is a.manager and a.context.stall is a.stall
    a.stop()
    a.stop()
    assert not a.manager.is_monitoring


def test_malformed_configuration_falls_back_to_defaults_and_reports(monkeypatch, caplog):
    monkeypatch.setenv("APHRODITE_SLA_EVALUATION_INTERVAL_S", "soon")
    r = rt.get_runtime()
    assert r.config == SLAConfig()
    assert "APHRODITE_SLA_EVALUATION_INTERVAL_S" in r.info.config_error
    assert any("invalid configuration" in rec.message for rec in caplog.records)


def test_configured_thresholds_replace_and_disable_defaults():
    custom = SLAThreshold("request_latency_p95", 2000.0, 25.0, 5, statistic=Statistic.P95, source_metric="request_latency_ms")
    r = rt.SLARuntime(SLAConfig(sla_set="seed", thresholds=(custom,), disabled_slas=("echo_evolution_convergence",), system_sampler=False))
    assert r.manager.thresholds["request_latency_p95"].target_value == 2000.0
    assert "echo_evolution_convergence" not in r.manager.thresholds
