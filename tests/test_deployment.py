"""Deployment watch: baselines from the previous deployment, regression → rollback (once, and not
with auto-rollback off), healthy → stable, manual rollback, and the config hash."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from aphrodite_sla import ManualClock, SLAManager, SLAThreshold, Statistic
from aphrodite_sla.events import DeploymentEvent
from aphrodite_sla.recovery.deployment import DeploymentMonitor, DeploymentStatus, config_hash_of, deployment_fields

T0 = 1_700_000_000.0
S = DeploymentStatus


def lat_sla():
    return SLAThreshold("lat_p95", 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat", sample_rate_hz=100.0, min_samples=5)


@pytest.fixture
def env():
    clock = ManualClock(T0)
    mgr = SLAManager([lat_sla()], clock=clock, anomaly_detection=False, regression_interval_s=math.inf)
    events = []
    mgr.subscribe(events.append, DeploymentEvent, name="test-deployments")
    return clock, mgr, events, np.random.default_rng(7)


def feed(clock, mgr, rng, seconds, median, watch=None, check_every=10.0):
    """Record ``median``-centred latencies at 10 Hz for ``seconds``; check the watch every ``check_every`` s."""
    statuses = []
    for i in range(int(seconds * 10)):
        clock.advance(0.1)
        mgr.record_measurement("lat", rng.lognormal(math.log(median), 0.2))
        if watch is not None and (i + 1) % int(check_every * 10) == 0:
            watch.check()
            statuses.append(watch.history()[0].status)
    return statuses


def test_regression_rolls_back_once(env):
    clock, mgr, events, rng = env
    calls = []
    watch = DeploymentMonitor(mgr, rollback_hook=lambda dep, reason: calls.append((dep.deployment_id, reason)) or True,
                              stabilisation_s=300, monitoring_s=600)
    feed(clock, mgr, rng, 120, 80.0)  # the previous deployment, healthy
    dep = watch.track("llama", "v2", "abc123", deployment_id="d2")
    assert dep.status is S.TRACKING and dep.baseline == "deployment:d2" and dep.baseline_samples["lat_p95"] >= 500
    statuses = feed(clock, mgr, rng, 120, 130.0, watch)  # the new one: median +60%
    assert statuses[:5] == [S.TRACKING] * 5  # the SLA's 1-min window still holds the old deployment
    assert S.ROLLED_BACK in statuses
    assert len(calls) == 1 and calls[0][0] == "d2" and "lat_p95" in calls[0][1]
    final = watch.get("d2")
    assert final.status is S.ROLLED_BACK and final.rolled_back_by == "auto"
    assert final.results["lat_p95"].regressed and final.results["lat_p95"].baseline_name == "deployment:d2"
    assert watch.active() == []
    watch.check()
    mgr.events.drain()
    assert len(calls) == 1
    assert [e.kind for e in events] == ["tracked", "regressed", "rolled_back"]
    assert len({e.episode for e in events}) == 1 and all(e.deployment_id == "d2" for e in events)


def test_no_rollback_with_auto_rollback_off_then_manual(env):
    clock, mgr, events, rng = env
    calls = []
    watch = DeploymentMonitor(mgr, rollback_hook=lambda dep, reason: calls.append(reason) or True, auto_rollback=False,
                              stabilisation_s=300, monitoring_s=600)
    feed(clock, mgr, rng, 120, 80.0)
    watch.track("llama", "v2", "abc123", deployment_id="d2")
    statuses = feed(clock, mgr, rng, 120, 130.0, watch)
    assert statuses[-1] is S.REGRESSED and calls == []
    with pytest.raises(ValueError, match=r"rollback\.by"):
        watch.rollback("d2", "")
    with pytest.raises(ValueError, match=r"rollback\.deployment_id"):
        watch.rollback("nope", "ops")
    assert watch.rollback("d2", "ops").status is S.ROLLED_BACK and calls == ["manual rollback"]
    with pytest.raises(ValueError, match="rolled_back already"):
        watch.rollback("d2", "ops")
    watch.enable_auto_rollback()
    assert watch.auto_rollback


def test_failed_raising_and_async_hooks(env):
    clock, mgr, events, rng = env

    async def async_ok(dep, reason):
        return True

    def raising(dep, reason):
        raise RuntimeError("orchestrator unreachable")

    outcomes = {}
    for name, hook in (("false", lambda d, r: False), ("raises", raising), ("async", async_ok)):
        watch = DeploymentMonitor(mgr, rollback_hook=hook, stabilisation_s=300, monitoring_s=600)
        feed(clock, mgr, rng, 120, 80.0)
        watch.track("m", name, "h", deployment_id=f"d-{name}")
        feed(clock, mgr, rng, 90, 130.0, watch)
        outcomes[name] = watch.get(f"d-{name}")
    assert outcomes["false"].status is S.ROLLBACK_FAILED and "reported failure" in outcomes["false"].findings[-1]
    assert outcomes["raises"].status is S.ROLLBACK_FAILED and "orchestrator unreachable" in outcomes["raises"].findings[-1]
    assert outcomes["async"].status is S.ROLLED_BACK


def test_healthy_deployment_becomes_stable(env):
    clock, mgr, events, rng = env
    calls = []
    watch = DeploymentMonitor(mgr, rollback_hook=lambda d, r: calls.append(r), stabilisation_s=300, monitoring_s=600)
    feed(clock, mgr, rng, 120, 80.0)
    watch.track("llama", "v3", "def456", deployment_id="d3")
    statuses = feed(clock, mgr, rng, 320, 81.0, watch)
    assert S.STABILISING in statuses and statuses[-1] is S.STABLE
    assert calls == []
    dep = watch.get("d3")
    assert not dep.results["lat_p95"].regressed and not any("conclusive" in f for f in dep.findings)
    assert [d.deployment_id for d in watch.active()] == ["d3"]  # still watched until monitoring_s
    feed(clock, mgr, rng, 300, 81.0, watch)
    assert watch.active() == [] and watch.get("d3").status is S.STABLE
    mgr.events.drain()
    assert [e.kind for e in events] == ["tracked", "stable"]


def test_without_a_baseline_it_is_stable_but_says_unverified(env):
    clock, mgr, events, rng = env
    watch = DeploymentMonitor(mgr, stabilisation_s=300, monitoring_s=600)
    dep = watch.track("llama", "v1", "aaa", deployment_id="first")  # first deployment: no traffic before it
    assert dep.baseline_samples == {"lat_p95": 0} and "need 20" in dep.findings[0]
    feed(clock, mgr, rng, 310, 80.0, watch)
    dep = watch.get("first")
    assert dep.status is S.STABLE and any("without a conclusive comparison" in f for f in dep.findings)


def test_a_newer_deployment_supersedes_and_history(env):
    clock, mgr, events, rng = env
    watch = DeploymentMonitor(mgr, stabilisation_s=300, monitoring_s=600)
    watch.track("m", "v1", "h1", deployment_id="a")
    clock.advance(10)
    watch.track("m", "v2", "h2", deployment_id="b")
    assert watch.get("a").status is S.SUPERSEDED
    assert [d.deployment_id for d in watch.history()] == ["b", "a"]
    assert [d.deployment_id for d in watch.active()] == ["b"]
    with pytest.raises(ValueError, match=r"track\.deployment_id"):
        watch.track("m", "v2", "h2", deployment_id="b")
    with pytest.raises(ValueError, match=r"track\.version"):
        watch.track("m", "", "h2")
    with pytest.raises(ValueError, match=r"DeploymentMonitor\.slas"):
        DeploymentMonitor(mgr, slas=["nope"])
    with pytest.raises(ValueError, match=r"DeploymentMonitor\.monitoring_s"):
        DeploymentMonitor(mgr, stabilisation_s=900, monitoring_s=60)
    with pytest.raises(ValueError, match=r"rollback\.rollback_hook"):
        watch.rollback("b", "ops")


def test_watch_thread_starts_and_stops(env):
    _, mgr, _, _ = env
    watch = DeploymentMonitor(mgr, check_interval_s=0.05)
    watch.start()
    assert watch.stop()


def vllm_like(**over):
    model = dict(model="meta-llama/Llama-3-8B", revision="main", tokenizer="meta-llama/Llama-3-8B", dtype="torch.bfloat16",
                 quantization=None, max_model_len=8192, enforce_eager=False)
    cache = dict(cache_dtype="auto", block_size=16, gpu_memory_utilization=0.9, enable_prefix_caching=True)
    parallel = dict(tensor_parallel_size=2, pipeline_parallel_size=1, data_parallel_size=1)
    for d in (model, cache, parallel):
        for k in list(d):
            if k in over:
                d[k] = over[k]
    return SimpleNamespace(model_config=SimpleNamespace(**model), cache_config=SimpleNamespace(**cache),
                           parallel_config=SimpleNamespace(**parallel), scheduler_config=SimpleNamespace(max_num_seqs=256),
                           lora_config=None, speculative_config=None)


def test_config_hash_is_stable_and_sensitive():
    base = config_hash_of(vllm_like())
    assert base == config_hash_of(vllm_like()) and len(base) == 64
    assert config_hash_of(vllm_like(dtype="torch.float16")) != base
    assert config_hash_of(vllm_like(tensor_parallel_size=4)) != base
    assert config_hash_of(vllm_like(quantization="awq")) != base
    flat = {"model": "meta-llama/Llama-3-8B", "revision": "main", "tokenizer": "meta-llama/Llama-3-8B", "dtype": "torch.bfloat16",
            "max_model_len": 8192, "enforce_eager": False, "kv_cache_dtype": "auto", "block_size": 16, "gpu_memory_utilization": 0.9,
            "enable_prefix_caching": True, "tensor_parallel_size": 2, "pipeline_parallel_size": 1, "data_parallel_size": 1,
            "max_num_seqs": 256}
    assert config_hash_of(flat) == base  # a dict with the same fields is the same deployment
    assert deployment_fields({"model": "x"}) == {"model": "x"}  # missing fields are tolerated
    assert config_hash_of({"model": "x", "seed": 1}) == config_hash_of({"model": "x", "seed": 2})  # not a deployment field
    with pytest.raises(ValueError, match=r"config_hash_of\.config"):
        config_hash_of(object())
