"""Recovery wired into the monitor: the REST API inside the engine's app (ASGI middleware), the
seed's fields on the JSON endpoints, the recovery metrics, degradation following the violations,
advisory mode, and the whole chain on the simulated engine (fault -> violation -> procedure ->
metric back within bound, sooner than without recovery)."""
from __future__ import annotations

import json
import math

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from aphrodite_sla import ManualClock
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.events import ViolationRaised, ViolationResolved, episode_id, fingerprint
from aphrodite_sla.export.recovery_collector import RecoveryCollector
from aphrodite_sla.integrations.admission import AdmissionState
from aphrodite_sla.integrations.asgi import SLAMiddleware
from aphrodite_sla.recovery.degradation import ADMISSION_SOURCE, DegradationLevel
from aphrodite_sla.recovery.model import ExecutionStatus
from aphrodite_sla.sla.threshold import Direction, SLAViolation, Statistic, ViolationSeverity

TOKEN = "correct-horse-battery-staple"
API = "/api/auto-recovery"


def _context(**config: object) -> MonitorContext:
    return MonitorContext.build(SLAConfig(system_sampler=False, **config), clock=ManualClock())  # type: ignore[arg-type]


def _violation(severity: ViolationSeverity = ViolationSeverity.CRITICAL, sla: str = "ttft_p95") -> SLAViolation:
    return SLAViolation(sla, "ttft_ms", Statistic.P95, Direction.UPPER, 900.0, 400.0, 200.0, severity, 300.0,
                        1_700_000_000.0, 1_700_000_060.0, 0.9, 12, 500, peak_severity=severity)


@pytest.fixture
def app_client():
    ctx = _context(api_token=TOKEN, recovery="act")

    async def completions(request):  # stands for the engine's route
        return JSONResponse({"ok": True})

    app = SLAMiddleware(Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])]), context=ctx)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine")
    yield ctx, client
    ctx.recovery.stop()
    ctx.recovery.engine.stop()


async def test_api_inside_the_engine_app_reads_freely_and_mutates_only_with_the_token(app_client) -> None:
    ctx, client = app_client
    status = await client.get(f"{API}/status")
    assert status.status_code == 200 and status.json()["mode"] == "act" and status.json()["mutations_enabled"]
    circuits = (await client.get(f"{API}/circuit-breaker/circuits")).json()["circuits"]
    assert {c["name"] for c in circuits} == {"aphrodite_engine", "model_inference", "kv_cache", "deep_tree_echo"}

    refused = await client.post(f"{API}/circuit-breaker/circuits/model_inference/force-open", json={"by": "mallory"})
    assert refused.status_code == 401
    assert ctx.recovery.breakers.get("model_inference").state.value == "closed"
    wrong = await client.post(f"{API}/degradation/rules/severe/activate", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and ctx.recovery.degradation.level is DegradationLevel.NONE

    auth = {"Authorization": f"Bearer {TOKEN}"}
    opened = await client.post(f"{API}/circuit-breaker/circuits/model_inference/force-open", json={"by": "alice"}, headers=auth)
    assert opened.status_code == 200 and opened.json()["state"] == "forced_open"
    # the middleware now fails inference requests fast, with Retry-After
    blocked = await client.post("/v1/completions", json={"prompt": "hi"})
    assert blocked.status_code == 503 and int(blocked.headers["retry-after"]) >= 1
    assert ctx.events.drain(10.0)  # readers see the view recovery publishes after the breaker's event
    health = (await client.get("/health/production")).json()
    assert health["circuit_breakers"]["model_inference"] == "forced_open"
    assert ctx.recovery.metrics_view().breakers["model_inference"].state == "forced_open"
    reset = await client.post(f"{API}/circuit-breaker/circuits/model_inference/reset", headers=auth)
    assert reset.json()["state"] == "closed"
    assert (await client.post("/v1/completions", json={"prompt": "hi"})).status_code == 200

    bad = await client.post(f"{API}/degradation/rules/severe/activate", json={"by": 3}, headers=auth)
    assert bad.status_code == 400 and "'by'" in bad.json()["error"]
    unknown = await client.post(f"{API}/degradation/rules/apocalypse/activate", headers=auth)
    assert unknown.status_code == 404
    level = await client.post(f"{API}/degradation/rules/moderate/activate", json={"by": "alice", "reason": "drill"}, headers=auth)
    assert level.status_code == 200 and level.json()["level"] == "moderate"
    assert ctx.server.admission.policy.limits.max_tokens_cap is not None  # the level's measures are in force
    overview = (await client.get(f"{API}/overview")).json()
    assert [(a["what"], a["by"]) for a in overview["audit"]] == [("breaker.force_open", "alice"), ("breaker.reset", "api")]
    mode = await client.post(f"{API}/monitoring/mode", json={"mode": "maintenance", "duration_s": 600, "by": "alice"}, headers=auth)
    assert mode.status_code == 200 and mode.json()["mode"] == "maintenance"


async def test_api_without_a_configured_token_refuses_every_mutation() -> None:
    ctx = _context()  # no api_token
    app = SLAMiddleware(Starlette(routes=[]), context=ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as client:
        for path in ("/enable", "/circuit-breaker/circuits/reset-all", "/degradation/disable", "/deployment/auto-rollback/disable"):
            answer = await client.post(API + path, headers={"Authorization": "Bearer anything"})
            assert answer.status_code == 403, path
        assert (await client.get(f"{API}/status")).json()["mode"] == "advisory"  # the safe default
    schema = json.loads(ctx.endpoints.handle("GET", "/openapi.json").body)
    assert f"{API}/circuit-breaker/circuits/{{id}}/force-open" in schema["paths"]
    assert schema["paths"][f"{API}/enable"]["post"]["security"] == [{"bearer": []}]


def test_summary_and_metrics_carry_the_seeds_recovery_fields() -> None:
    ctx = _context(recovery="act")
    summary = json.loads(ctx.endpoints.handle("GET", "/metrics/summary").body)
    assert summary["monitoring_mode"] == "normal" and summary["total_alerts_24h"] == 0 and summary["recovery_success_rate"] is None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecoveryCollector(ctx.recovery.metrics_view, model_name="m"))
    text = generate_latest(registry).decode()
    for family in ("recovery_executions_total", "recovery_duration_seconds_bucket", "recovery_active", "recovery_approvals_pending",
                   "recovery_escalations_total", "recovery_desired_replicas", "circuit_breaker_state", "circuit_breaker_rejected_total",
                   "degradation_level", "monitoring_mode"):
        assert family in text, family
    assert 'circuit_breaker_state{model_name="m",service="model_inference"} 0.0' in text
    assert 'monitoring_mode{mode="normal",model_name="m"} 1.0' in text


def test_degradation_follows_violations_in_act_mode_and_advisory_changes_nothing() -> None:
    for mode in ("act", "advisory"):
        ctx = _context(recovery=mode, degradation="major")
        violation = _violation(ViolationSeverity.CRITICAL)
        fp = fingerprint("SLAViolation", sla=violation.metric_name)
        episode = episode_id(fp, violation.first_breach_time)
        ctx.events.publish([ViolationRaised(fp, episode, violation.detected_at, violation)])
        assert ctx.events.drain(10.0)
        expected = DegradationLevel.SEVERE if mode == "act" else DegradationLevel.NONE
        assert ctx.recovery.degradation.level is expected, mode
        ctx.events.publish([ViolationResolved(fp, episode, violation.detected_at + 300, violation, violation.first_breach_time)])
        assert ctx.events.drain(10.0)
        assert ctx.recovery.degradation.level is DegradationLevel.NONE  # nothing active in the snapshot: reverted
        limits = ctx.server.admission.sources().get(ADMISSION_SOURCE)
        assert limits is None or limits[0].is_open  # degradation's own limits are gone (recovery's shedding is its own)
        ctx.recovery.engine.stop()  # undoes the procedure's kept mitigations
        assert ctx.server.admission.state is AdmissionState.OPEN


def test_the_simulated_chain_fault_violation_procedure_remedy_and_a_shorter_mttr() -> None:
    """kv_exhaustion: the latency or KV violation runs a procedure whose cache reset frees the
    pinned blocks (the simulator's remedy), verified by the SLA's own statistic; the same seed
    with recovery off keeps the fault its full ten minutes and recovers later."""
    from aphrodite_sla.simulate import run_simulation

    acted = run_simulation("kv_exhaustion", duration_s=1800, recovery="act", out=lambda _s: None, print_summary=False)
    baseline = run_simulation("kv_exhaustion", duration_s=1800, recovery="off", out=lambda _s: None, print_summary=False)
    [report] = acted.faults
    runs = acted.executions_for(report)
    assert runs and any(r.status is ExecutionStatus.SUCCEEDED for r in runs)
    verified = [a for r in runs for a in r.actions if a.verified]
    assert verified and all(("<=" in a.verification) or (">=" in a.verification) for a in verified)  # back within its bound
    resets = [a for r in runs for a in r.actions if a.action.value == "cache_invalidation" and a.outcome.value in ("succeeded", "unverified")]
    assert resets  # the action that remedied the fault ran
    assert acted.remedied == {"kv_exhaustion@600": "reset_prefix_cache"} and baseline.remedied == {}
    assert report.fault.end_s is not None and report.fault.end_s < 1200  # ended by the remedy, before its planned end
    with_recovery, without = acted.mttr_s(report), baseline.mttr_s(baseline.faults[0])
    assert with_recovery is not None and without is not None and with_recovery < without
    assert acted.recovery_busy_timeouts == 0
    assert all(math.isfinite(r.started_at - r.triggered_at) and r.started_at - r.triggered_at < 1.0 for r in runs)


def test_the_engine_deployment_is_tracked_once_per_configuration() -> None:
    ctx = _context()
    config = {"model": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16", "max_model_len": 8192}
    tracked = ctx.recovery.track_engine_deployment(config)
    assert tracked is not None and tracked.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert ctx.recovery.track_engine_deployment(dict(config)) is None  # a second StatLogger of the same engine
    assert len(ctx.recovery.deployments.history()) == 1
    assert ctx.recovery.track_engine_deployment(object()) is None  # nothing readable: not tracked, never raised
    changed = ctx.recovery.track_engine_deployment({**config, "dtype": "float16"})
    assert changed is not None and changed.config_hash != tracked.config_hash
    ctx.recovery.engine.stop()
