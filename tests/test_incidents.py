"""Incidents: the lifecycle, the store (migrations, dedup, retention), detection rules with
hysteresis, correlation, escalation, the response stages, auto-resolve and post-mortems, the API
and the configuration — driven through the real monitor and its event stream."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from aphrodite_sla import ManualClock, SLAThreshold, Statistic
from aphrodite_sla.config import ConfigError, SLAConfig, load_config
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.events import (
    AnomalyDetected,
    ApprovalRequested,
    BreakerStateChanged,
    IncidentChanged,
    PageRaised,
    RootCauseFound,
    ViolationRaised,
    ViolationResolved,
)
from aphrodite_sla.incidents.config import IncidentConfigError, parse_incident_config
from aphrodite_sla.incidents.escalation import EscalationPolicy
from aphrodite_sla.incidents.manager import IncidentManager, Signal
from aphrodite_sla.incidents.model import (
    Incident,
    IncidentSeverity,
    IncidentStatus,
    IncidentType,
    TransitionError,
    check_transition,
)
from aphrodite_sla.incidents.rules import DetectionRule, RuleEngine, RuleError, builtin_rules
from aphrodite_sla.incidents.schema import SCHEMA_VERSION, SchemaError
from aphrodite_sla.incidents.store import IncidentStore, Retention
from aphrodite_sla.recovery.api_routing import ApiRequest
from aphrodite_sla.sla.threshold import SLAStatus

T0 = 1_700_000_000.0
TOKEN = "s3cret"


def lat_sla() -> SLAThreshold:
    return SLAThreshold(metric_name="lat_p95", target_value=100.0, tolerance_percent=20.0, measurement_window_minutes=1,
                        statistic=Statistic.P95, source_metric="lat", sample_rate_hz=1000.0, min_samples=5, resolve_after_s=0.0)


def build(tmp_path: Path, clock: ManualClock, **incident_response):
    cfg = SLAConfig(thresholds=(lat_sla(),), api_token=TOKEN,
                    incident_response={"store_path": str(tmp_path / "incidents.db"), **incident_response})
    ctx = MonitorContext.build(cfg, clock=clock, with_recovery=False, with_rca=False)  # RCA's results are published by the tests
    changes: list[IncidentChanged] = []
    ctx.manager.subscribe(changes.append, IncidentChanged, name="test-changes")
    system = ctx.attach_incidents()
    system.start()
    return ctx, system, changes


def drive(ctx, clock: ManualClock, value: float, seconds: int) -> None:
    for k in range(seconds):
        clock.advance(1.0)
        ctx.manager.record_measurement("lat", value, clock())
        if k % 5 == 4:
            ctx.manager.evaluate()
    ctx.events.drain()


def call(system, method: str, path: str, body: dict | None = None, query: dict | None = None, token: str | None = TOKEN):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = system.api.handle(ApiRequest(method, path, query or {}, headers, json.dumps(body).encode() if body is not None else b""))
    return r.status, json.loads(r.body)


# -- model -----------------------------------------------------------------------------------------
def test_lifecycle_allows_only_its_transitions():
    check_transition(IncidentStatus.DETECTED, IncidentStatus.ACKNOWLEDGED)
    check_transition(IncidentStatus.RESOLVED, IncidentStatus.DETECTED)  # reopened
    with pytest.raises(TransitionError, match="from detected to closed"):
        check_transition(IncidentStatus.DETECTED, IncidentStatus.CLOSED)
    with pytest.raises(TransitionError, match="none \\(final\\)"):
        check_transition(IncidentStatus.CLOSED, IncidentStatus.DETECTED)
    assert len(IncidentStatus) == 8 and len(IncidentType) == 16


def test_times_to_detect_acknowledge_and_resolve():
    inc = Incident("INC-1", "fp", "t", IncidentSeverity.HIGH, IncidentType.ERROR_BURST, IncidentStatus.RESOLVED, detected_at=T0 + 120,
                   first_bad_at=T0, updated_at=T0, acknowledged_at=T0 + 300, resolved_at=T0 + 900)
    assert (inc.mttd_minutes, inc.mtta_minutes, inc.mttr_minutes) == (2.0, 3.0, 15.0)
    assert inc.to_dict()["mttr_minutes"] == 15.0


# -- store -----------------------------------------------------------------------------------------
def _sig(fp: str = "fp1", at: float = T0, **kw) -> Signal:
    return Signal(fp, kw.pop("title", "errors"), kw.pop("severity", IncidentSeverity.HIGH), IncidentType.ERROR_BURST, at, **kw)


def test_store_is_wal_with_foreign_keys_and_schema_version(tmp_path):
    store = IncidentStore.at_path(tmp_path / "x.db")
    mgr = IncidentManager(store, clock=lambda: T0)
    inc, what = mgr.signal(_sig())
    assert what == "opened"
    con = sqlite3.connect(tmp_path / "x.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys: no timeline row without its incident
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("INSERT INTO incident_events (incident_id, at, kind, message, actor, stage, data, replica) "
                    "VALUES ('nope', 1, 'k', 'm', 'a', '', '{}', '')")
    con.close()
    assert store.get(inc.incident_id).timeline[0].kind == "detected"


def test_the_default_sqlite_store_opens_on_a_fresh_machine(tmp_path, monkeypatch):
    """The default store lives in ~/.local/state/aphrodite-sla/, which a fresh machine does not
    have: a runtime started there logged "the incident store could not be opened; incidents are off"."""
    from aphrodite_sla.incidents.config import IncidentConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    url = IncidentConfig().url
    assert url.startswith("sqlite:///") and not (tmp_path / ".local").exists()
    store = IncidentStore(url)
    try:
        assert (tmp_path / ".local" / "state" / "aphrodite-sla" / "incidents.db").exists()
    finally:
        store.close()


def test_store_migrates_an_old_database_and_refuses_a_newer_one(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.commit()
    con.close()
    from sqlalchemy import create_engine

    from aphrodite_sla.incidents import schema as s

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        s._v1(conn)  # a version-1 database: no detection_rules table
        assert not conn.dialect.has_table(conn, "detection_rules")
    engine.dispose()
    store = IncidentStore.at_path(path)
    store.save_rule("r", {"x": 1}, T0, "me")
    assert store.rules() == {"r": {"x": 1}}
    con = sqlite3.connect(path)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="newer"):
        IncidentStore.at_path(path)


def test_one_open_incident_per_fingerprint_across_writers(tmp_path):
    a = IncidentManager(IncidentStore.at_path(tmp_path / "x.db", replica="a"), clock=lambda: T0)
    b = IncidentManager(IncidentStore.at_path(tmp_path / "x.db", replica="b"), clock=lambda: T0)
    first, _ = a.signal(_sig())
    second, what = b.signal(_sig(at=T0 + 1))
    assert what == "joined" and second.incident_id == first.incident_id and second.event_count == 2


def test_retention_purges_old_rows_but_keeps_open_incidents(tmp_path):
    clock = ManualClock(T0)
    store = IncidentStore.at_path(tmp_path / "x.db", clock=clock)
    mgr = IncidentManager(store, clock=clock)
    old, _ = mgr.signal(_sig("old"))
    mgr.resolve(old.incident_id, "me")
    still_open, _ = mgr.signal(_sig("open"))
    clock.advance(8 * 86400)
    assert store.purge(Retention())["events"] >= 3  # 7 days of events
    clock.advance(90 * 86400)
    assert store.purge(Retention())["incidents"] == 1
    assert store.get(old.incident_id) is None and store.get(still_open.incident_id) is not None


# -- detection: SLA violations, flapping, correlation ----------------------------------------------
def test_flapping_sla_opens_one_incident(tmp_path):
    clock = ManualClock(T0)
    ctx, system, changes = build(tmp_path, clock)
    raised: list[ViolationRaised] = []
    ctx.manager.subscribe(raised.append, ViolationRaised, name="raised")
    for cycle in range(6):
        drive(ctx, clock, 1000.0 if cycle % 2 == 0 else 10.0, 60)
    assert len([e for e in raised if not isinstance(e, PageRaised)]) == 3  # three violation episodes (and a page) ...
    page = system.store.page()
    assert page.total == 1  # ... one incident
    inc = system.store.get(page.items[0].incident_id)
    assert inc.event_count >= 3 and inc.incident_type is IncidentType.PERFORMANCE_DEGRADATION  # raised (+ escalated) events joined
    assert [c.change for c in changes].count("opened") == 1
    assert inc.mttd_minutes is not None and inc.mttd_minutes > 0  # first bad sample before detection


def test_flap_window_reopens_a_resolved_incident(tmp_path):
    clock = ManualClock(T0)
    store = IncidentStore.at_path(tmp_path / "x.db", clock=clock)
    mgr = IncidentManager(store, clock=clock, flap_window_s=600)
    inc, _ = mgr.signal(_sig())
    mgr.resolve(inc.incident_id, "me")
    clock.advance(300)
    again, what = mgr.signal(_sig(at=clock()))
    assert what == "reopened" and again.incident_id == inc.incident_id and again.status is IncidentStatus.DETECTED
    mgr.resolve(inc.incident_id, "me")
    clock.advance(601)
    third, what = mgr.signal(_sig(at=clock()))
    assert what == "opened" and third.incident_id != inc.incident_id


def test_same_correlation_id_joins(tmp_path):
    mgr = IncidentManager(IncidentStore.at_path(tmp_path / "x.db"), clock=lambda: T0)
    a, _ = mgr.signal(_sig("anomaly-fp", correlation_id="sla:ttft", severity=IncidentSeverity.LOW))
    b, what = mgr.signal(_sig("violation-fp", correlation_id="sla:ttft", severity=IncidentSeverity.CRITICAL))
    assert what == "joined" and b.incident_id == a.incident_id and b.severity is IncidentSeverity.CRITICAL


# -- rules -----------------------------------------------------------------------------------------
def test_seven_rules_with_the_seed_thresholds():
    rules = {r.name: (r.threshold, r.window_seconds) for r in builtin_rules()}
    assert rules == {"error_burst": (10, 300), "service_down": (5, 60), "quality_drop": (5, 600), "workflow_failure_spike": (8, 300),
                     "memory_exhaustion": (3, 120), "performance_degradation": (10, 300), "low_disk": (3, 300)}


def test_rule_fires_once_and_rearms_below_hysteresis():
    clock = ManualClock(T0)
    engine = RuleEngine(clock=clock)
    for _ in range(12):
        engine.submit("request_error")
    fired = engine.evaluate()
    assert [f.rule.name for f in fired] == ["error_burst"] and fired[0].count == 12
    engine.submit("request_error")
    assert engine.evaluate() == []  # disarmed while the count stays high
    clock.advance(301)
    assert engine.evaluate() == []  # count fell to 0 <= 5: re-armed
    for _ in range(10):
        engine.submit("request_error")
    assert [f.rule.name for f in engine.evaluate()] == ["error_burst"]


def test_request_outcome_rules_need_a_share_of_the_traffic():
    """At serving traffic the seed's absolute counts fire on a healthy engine: ten slow requests or
    eight client aborts among 12,000 finished in five minutes are normal; a share of them is not."""
    clock = ManualClock(T0)
    engine = RuleEngine(clock=clock)
    for k in range(300):  # 40 requests/s for 5 minutes, 12 slow and 10 aborted among them
        clock.set(T0 + k + 1)
        engine.submit("request_finished", count=40)
        if k % 25 == 0:
            engine.submit("slow_request")
        if k % 30 == 0:
            engine.submit("request_aborted")
    assert engine.finished(300, clock()) == 12_000
    assert engine.evaluate() == []  # healthy: 0.1% slow, 0.08% aborted
    for _ in range(1300):  # now over 10% of the window's requests are slow
        engine.submit("slow_request")
    assert [f.rule.name for f in engine.evaluate()] == ["performance_degradation"]
    quiet = RuleEngine(clock=clock)  # nothing counted as finished (a feeder without outcomes): the count alone decides
    for _ in range(10):
        quiet.submit("slow_request")
    assert [f.rule.name for f in quiet.evaluate()] == ["performance_degradation"]


def test_rule_events_are_bounded_and_bad_input_counted():
    clock = ManualClock(T0)
    engine = RuleEngine(clock=clock, max_events=5, retention_s=3600)
    assert not engine.submit("request_error", float("nan"))
    assert not engine.submit("", T0)
    for _ in range(8):
        engine.submit("request_error")
    assert engine.event_counts()["request_error"] == 5 and engine.dropped == 5
    clock.advance(3601)
    engine.evaluate()
    assert engine.event_counts()["request_error"] == 0  # one hour of retention


def test_rules_change_at_run_time_and_validate():
    engine = RuleEngine(clock=lambda: T0)
    engine.update("error_burst", {"threshold": 3})
    engine.update("low_disk", {"enabled": False})
    engine.put(DetectionRule.from_dict({"name": "kv_evictions", "event_kind": "kv_eviction", "threshold": 2, "window_seconds": 60,
                                        "severity": "medium", "incident_type": "memory_exhaustion"}))
    for kind in ("request_error",) * 3 + ("kv_eviction",) * 2 + ("disk_low",) * 5:
        engine.submit(kind, T0)
    assert sorted(f.rule.name for f in engine.evaluate(T0)) == ["error_burst", "kv_evictions"]
    with pytest.raises(RuleError, match="threshold"):
        engine.update("error_burst", {"threshold": 0})
    with pytest.raises(RuleError, match="unknown field"):
        DetectionRule.from_dict({"name": "x", "bogus": 1})


def test_engine_outcomes_open_an_error_burst_incident(tmp_path):
    clock = ManualClock(T0)
    ctx, system, changes = build(tmp_path, clock)
    for _ in range(10):
        ctx.recorder.outcome_listener("request_error")
    system.tick(now=clock())
    page = system.store.page()
    assert page.total == 1 and page.items[0].incident_type is IncidentType.ERROR_BURST and page.items[0].source == "rule:error_burst"


# -- response workflow, escalation, auto-resolve, post-mortem --------------------------------------
def test_stages_recovery_rca_and_auto_resolve_write_a_postmortem(tmp_path):
    clock = ManualClock(T0)
    ctx, system, changes = build(tmp_path, clock, auto_resolution=True, auto_resolve_after_seconds=120)
    drive(ctx, clock, 1000.0, 60)
    inc = system.store.page().items[0]
    fp = inc.fingerprint
    ctx.events.publish([ApprovalRequested(fp, "ep", clock(), "req-1", "exec-1", "engine_restart", clock() + 300),
                        RootCauseFound(fp, "ep", clock(), "lat_p95", "kv_cache_pressure", "resource", 0.8, None)])
    ctx.events.drain()
    mid = system.store.get(inc.incident_id)
    assert mid.root_cause == "kv_cache_pressure" and mid.pending_approvals == ("req-1",) and mid.status is IncidentStatus.INVESTIGATING
    drive(ctx, clock, 10.0, 60)  # back within bounds: monitoring
    assert system.store.get(inc.incident_id).status is IncidentStatus.MONITORING
    drive(ctx, clock, 10.0, 190)  # within bounds for the configured time after the last episode (the page's) ended: resolved
    done = system.store.get(inc.incident_id)
    assert done.status is IncidentStatus.RESOLVED and done.resolved_by == "auto"
    stages = [t.stage for t in done.timeline if t.kind == "stage"]
    assert stages == ["assessment", "remediation", "investigation", "recovery"]  # approval asked, RCA, back within bounds
    post = system.store.postmortem(inc.incident_id)
    for section in ("## Executive summary", "## Impact", "## Timeline", "## Root cause", "## Resolution and recovery", "## Lessons learned",
                    "## Action items", "## Metrics", "MTTD", "MTTR", "kv_cache_pressure"):
        assert section in post
    assert [c.change for c in changes if c.incident_id == inc.incident_id][-1] == "resolved"


def test_without_auto_resolution_a_person_resolves(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    drive(ctx, clock, 1000.0, 60)
    drive(ctx, clock, 10.0, 900)
    inc = system.store.page().items[0]
    assert inc.status is IncidentStatus.MONITORING
    assert any("waiting for a person" in t.message for t in system.store.get(inc.incident_id).timeline)


def test_escalation_levels_timeouts_acknowledgement_and_reminders(tmp_path):
    clock = ManualClock(T0)
    ctx, system, changes = build(tmp_path, clock)
    ctx.events.publish([BreakerStateChanged("b", "b", clock(), "model_inference", "closed", "open", "5 failures")])
    ctx.events.drain()
    inc = system.store.page().items[0]
    system.tick(now=clock())
    assert system.store.get(inc.incident_id).escalation_level == 1
    for minutes, level in ((14, 1), (1, 2), (30, 3), (45, 4), (60, 5), (200, 5)):
        clock.advance(minutes * 60)
        system.tick(now=clock())
        assert system.store.get(inc.incident_id).escalation_level == level, minutes
    escalated = [c for c in changes if c.change == "escalated"]
    assert [c.receivers for c in escalated] == [("monitoring",), ("support",), ("engineering",), ("management",), ("executive",)]
    status, body = call(system, "POST", f"/api/auto-recovery/escalation/{inc.incident_id}/acknowledge", {"by": "oncall"})
    assert status == 200 and body["acknowledged_by"] == "oncall"
    reminders = len([c for c in changes if c.change == "reminder"])
    clock.advance(31 * 60)
    system.tick(now=clock())
    ctx.events.drain()
    assert system.store.get(inc.incident_id).escalation_level == 5
    assert len([c for c in changes if c.change == "reminder"]) == reminders + 1


def test_failed_response_escalates_after_thirty_minutes():
    policy = EscalationPolicy(parse_incident_config({"escalation": {"min_severity": "critical"}}).escalation)
    inc = Incident("I", "fp", "t", IncidentSeverity.LOW, IncidentType.ERROR_BURST, IncidentStatus.MITIGATING, T0, T0, T0,
                   response_failed_at=T0)
    assert policy.decide(inc, T0 + 29 * 60) is None
    step = policy.decide(inc, T0 + 30 * 60)
    assert step is not None and step.level == 1 and "failed" in step.reason


def test_republish_at_start_renotifies_open_incidents(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    drive(ctx, clock, 1000.0, 60)
    opened = system.store.page().items[0]
    ctx2, system2, changes2 = build(tmp_path, clock)  # a restart on the same store
    ctx2.events.drain()
    assert [(c.incident_id, c.fingerprint) for c in changes2] == [(opened.incident_id, opened.fingerprint)]


# -- API ---------------------------------------------------------------------------------------------
def test_api_list_filters_pagination_and_changes(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    ids = []
    for n, sev in enumerate(("low", "high", "critical")):
        status, body = call(system, "POST", "/api/incidents", {"title": f"t{n}", "severity": sev, "type": "error_burst", "by": "me"})
        assert status == 201
        ids.append(body["id"])
        clock.advance(10)
    status, page = call(system, "GET", "/api/incidents", query={"severity": "high,critical", "limit": "1"})
    assert status == 200 and page["total"] == 2 and len(page["incidents"]) == 1 and page["next_offset"] == 1
    assert call(system, "GET", "/api/incidents", query={"severity": "nope"})[0] == 400
    assert call(system, "GET", "/api/incidents", query={"limit": "0"})[0] == 400
    assert call(system, "POST", f"/api/incidents/{ids[0]}/assign", {"assignee": "bob"})[1]["assigned_to"] == "bob"
    assert call(system, "POST", f"/api/incidents/{ids[0]}/close", {})[0] == 409
    assert call(system, "POST", f"/api/incidents/{ids[0]}/resolve", {"notes": "done", "by": "bob"})[1]["status"] == "resolved"
    assert call(system, "GET", f"/api/incidents/{ids[0]}/postmortem")[1]["stored"] is True
    assert call(system, "GET", "/api/incidents/INC-nope")[0] == 404
    audit = call(system, "GET", f"/api/incidents/{ids[0]}")[1]["audit"]
    assert [(a["action"], a["actor"]) for a in audit] == [("opened", "system"), ("assigned", "api"), ("resolved", "bob")]
    stats = call(system, "GET", "/api/incidents/stats")[1]
    assert stats["total"] == 3 and stats["open_by_severity"] == {"high": 1, "critical": 1}
    assert call(system, "GET", "/api/incidents/export")[1]["count"] == 3


def test_api_mutations_need_the_token_and_none_configured_refuses(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    body = {"title": "x", "severity": "low"}
    assert call(system, "POST", "/api/incidents", body, token=None)[0] == 401
    assert call(system, "POST", "/api/incidents", body, token="wrong")[0] == 401
    assert call(system, "POST", "/api/incidents", {**body, "extra": 1})[0] == 400
    from aphrodite_sla.incidents.api import IncidentApi

    open_api = IncidentApi(system, None)
    r = open_api.handle(ApiRequest("POST", "/api/incidents", {}, {"authorization": f"Bearer {TOKEN}"}, json.dumps(body).encode()))
    assert r.status == 403


def test_api_rules_and_events(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    assert call(system, "POST", "/api/incidents/rules/error_burst", {"threshold": 2})[1]["threshold"] == 2
    assert call(system, "POST", "/api/incidents/rules/low_disk/disable", {})[1]["enabled"] is False
    assert call(system, "POST", "/api/incidents/rules", {"name": "x", "event_kind": "k"})[0] == 400
    assert call(system, "POST", "/api/incidents/events", {"kind": "request_error", "count": 2})[0] == 202
    system.tick(now=clock())
    assert system.store.page().items[0].source == "rule:error_burst"
    assert system.store.rules()["error_burst"]["threshold"] == 2  # kept for the next start
    assert call(system, "GET", "/api/auto-recovery/escalation/active")[0] == 200
    assert "/api/incidents/{id}/acknowledge" in system.api.openapi_paths()


# -- configuration -----------------------------------------------------------------------------------
def test_configuration_errors_name_the_key():
    with pytest.raises(IncidentConfigError, match=r"incident_response.escalation.levels\[1\].timeout_minutes"):
        parse_incident_config({"escalation": {"levels": [{"timeout_minutes": 5}, {"timeout_minutes": -1}]}})
    with pytest.raises(IncidentConfigError, match=r"incident_response\.detection\.bogus: unknown key"):
        parse_incident_config({"detection": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"incident_response\.retention\.event_history_days"):
        SLAConfig(incident_response={"retention": {"event_history_days": "x"}})


def test_seed_yaml_configures_monitor_and_incidents(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("evaluation_interval_s: 10\nincident_response:\n  enabled: true\n  auto_remediation: true\n"
                    "  detection:\n    check_interval_seconds: 60\n    event_retention_seconds: 3600\n    max_events: 10000\n"
                    "  remediation:\n    safe_actions_only: true\n    require_approval_for: [restart_service, rollback]\n"
                    "    approval_timeout_seconds: 300\n"
                    "  notifications:\n    slack:\n      enabled: true\n      webhook_url: \"${SLACK_WEBHOOK_URL}\"\n"
                    "  dashboard:\n    enabled: true\n    port: 8080\n    refresh_interval_seconds: 30\n"
                    "  retention:\n    resolved_incidents_days: 90\n    event_history_days: 7\n    postmortems_days: 365\n")
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(path)})
    inc = parse_incident_config(cfg.incident_response)
    assert cfg.evaluation_interval_s == 10 and inc.detection.max_events == 10000
    assert inc.notifications == {"slack": {"enabled": True, "webhook_url": "${SLACK_WEBHOOK_URL}"}}  # raw, for notifications
    assert inc.retention.postmortems_days == 365 and [lv.timeout_minutes for lv in inc.escalation.levels] == [15, 30, 45, 60, 90]


def test_a_malformed_event_is_counted_not_raised(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    system.on_event(ViolationResolved("nofp", "e", T0, None, T0))  # type: ignore[arg-type]
    assert system.errors == 1 and system.store.page().total == 0



def test_restart_republishes_an_escalation_with_its_receivers(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    ctx.events.publish([BreakerStateChanged("b", "b", clock(), "model_inference", "closed", "open", "down")])
    ctx.events.drain()
    system.tick(now=clock())
    ctx2, system2, changes2 = build(tmp_path, clock)
    ctx2.events.drain()
    assert [(c.change, c.receivers) for c in changes2] == [("escalated", ("monitoring",))]


def test_incidents_db_from_the_environment(tmp_path):
    cfg = load_config({"APHRODITE_SLA_INCIDENTS_DB": str(tmp_path / "env.db")})
    ctx = MonitorContext.build(cfg, clock=ManualClock(T0), with_recovery=False)
    system = ctx.attach_incidents()
    assert Path(system.store.url.removeprefix("sqlite:///")) == tmp_path / "env.db" and (tmp_path / "env.db").exists()


def test_same_type_within_the_correlation_window_joins(tmp_path):
    clock = ManualClock(T0)
    mgr = IncidentManager(IncidentStore.at_path(tmp_path / "x.db"), clock=clock, correlation_window_s=300)
    a, _ = mgr.signal(_sig("p95", correlation_id="sla:p95"))
    b, what = mgr.signal(_sig("p99", at=T0 + 60, correlation_id="sla:p99"))
    assert what == "joined" and b.incident_id == a.incident_id
    c, what = mgr.signal(_sig("p50", at=T0 + 400, correlation_id="sla:p50"))
    assert what == "opened" and c.incident_id != a.incident_id


def test_a_rule_incident_recovers_when_its_count_clears(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock, auto_resolution=True, auto_resolve_after_seconds=60)
    for _ in range(10):
        system.record_engine_event("request_error")
    system.tick(now=clock())
    inc = system.store.page().items[0]
    clock.advance(301)  # the window emptied: the rule re-arms, the incident is monitored
    system.tick(now=clock())
    assert system.store.get(inc.incident_id).status is IncidentStatus.MONITORING
    clock.advance(61)
    system.tick(now=clock())
    assert system.store.get(inc.incident_id).status is IncidentStatus.RESOLVED


def test_same_root_cause_merges_into_one_incident(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock, detection={"group_window_seconds": 0})  # two incidents at once, then merged
    m = system.manager
    a, _ = m.signal(Signal("ttft", "ttft", IncidentSeverity.HIGH, IncidentType.PERFORMANCE_DEGRADATION, clock(), correlation_id="sla:ttft"))
    b, _ = m.signal(Signal("errors", "errors", IncidentSeverity.HIGH, IncidentType.ERROR_BURST, clock(), correlation_id="sla:errors"))
    assert a.incident_id != b.incident_id
    ctx.events.publish([RootCauseFound("ttft", "e1", clock(), "ttft", "kv_cache_pressure", "resource", 0.9, None),
                        RootCauseFound("errors", "e2", clock(), "errors", "kv_cache_pressure", "resource", 0.8, None)])
    ctx.events.drain()
    merged = system.store.get(b.incident_id)
    assert merged.status is IncidentStatus.RESOLVED and merged.labels["merged_into"] == a.incident_id
    again, what = m.signal(Signal("errors", "errors", IncidentSeverity.HIGH, IncidentType.ERROR_BURST, clock() + 10))
    assert what == "joined" and again.incident_id == a.incident_id


def test_approve_and_deny_risky_actions_through_the_incident(tmp_path):
    from aphrodite_sla.recovery.model import RecoveryAction

    clock = ManualClock(T0)
    cfg = SLAConfig(thresholds=(lat_sla(),), api_token=TOKEN, incident_response={"store_path": str(tmp_path / "a.db")})
    ctx = MonitorContext.build(cfg, clock=clock)
    system = ctx.attach_incidents()
    system.start()
    inc, _ = system.manager.signal(_sig("fp-risky", at=clock()))
    book = ctx.recovery.engine.approvals
    first = book.request("exec-1", RecoveryAction.SERVICE_RESTART, fingerprint="fp-risky", episode="e")
    second = book.request("exec-2", RecoveryAction.SERVICE_RESTART, fingerprint="fp-risky", episode="e")
    ctx.events.drain()
    assert system.store.get(inc.incident_id).pending_approvals == (first.request_id, second.request_id)
    status, body = call(system, "POST", f"/api/incidents/{inc.incident_id}/approvals/{first.request_id}/approve", {"by": "lead"})
    assert status == 200 and body["state"] == "approved" and book.get(first.request_id).approved
    assert call(system, "POST", f"/api/incidents/{inc.incident_id}/approvals/{second.request_id}/deny", {"by": "lead", "reason": "no"})[0] == 200
    assert call(system, "POST", f"/api/incidents/{inc.incident_id}/approvals/apr-unknown/approve", {})[0] == 404
    ctx.events.drain()
    after = system.store.get(inc.incident_id)
    assert after.pending_approvals == ()
    assert [t.actor for t in after.timeline if t.kind == "approval"] == ["lead", "lead"]


def _anomaly(sla: str = "lat_p95", at: float = T0) -> AnomalyDetected:
    status = SLAStatus(sla, Statistic.P95, 150.0, 120.0, False, False, None, 50, 10, 0.0, 100.0, 0.9, 4.0, at)
    return AnomalyDetected("anomaly-fp", "anomaly-fp-1", at, status, 0.9, "level_shift")


def test_a_warning_joins_its_slas_incident_but_opens_none_by_default(tmp_path):
    clock = ManualClock(T0)
    ctx, system, changes = build(tmp_path, clock)
    system.on_event(_anomaly(at=clock()))
    assert system.store.page().total == 0 and not changes  # a warning alone: no incident, no notification
    drive(ctx, clock, 1000.0, 60)  # the SLA is violated: an incident opens
    assert system.store.page().total == 1
    before = system.store.get(system.store.page().items[0].incident_id).event_count
    system.on_event(_anomaly(at=clock()))
    assert system.store.page().total == 1
    assert system.store.get(system.store.page().items[0].incident_id).event_count == before + 1  # joined


def test_warnings_open_incidents_when_configured(tmp_path):
    clock = ManualClock(T0)
    _ctx, system, _ = build(tmp_path, clock, detection={"open_on_warnings": True})
    system.on_event(_anomaly(at=clock()))
    page = system.store.page()
    assert page.total == 1 and page.items[0].severity is IncidentSeverity.LOW


def test_insufficient_evidence_is_a_note_never_a_root_cause(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    drive(ctx, clock, 1000.0, 60)
    inc = system.store.page().items[0]
    fp = inc.fingerprint
    ctx.events.publish([RootCauseFound(fp, "ep", clock(), "lat_p95", "insufficient_evidence", "unknown", 0.0, None)])
    ctx.events.drain()
    assert system.store.get(inc.incident_id).root_cause in (None, "")  # not a cause: not merged with other such incidents
    ctx.events.publish([RootCauseFound(fp, "ep", clock(), "lat_p95", "kv_cache_exhaustion", "resource_contention", 0.9, None),
                        RootCauseFound(fp, "ep", clock(), "lat_p95", "traffic_surge", "application", 0.4, None)])
    ctx.events.drain()
    got = system.store.get(inc.incident_id)
    assert got.root_cause == "kv_cache_exhaustion"  # the weaker later analysis stays on the timeline only
    assert sum(1 for t in got.timeline if "insufficient_evidence" in t.message or "traffic_surge" in t.message) == 2


def test_remediation_settings_change_what_recovery_does():
    from aphrodite_sla.recovery.model import RecoveryAction

    def engine(**incident_response):
        cfg = SLAConfig(thresholds=(lat_sla(),), recovery="act", incident_response=incident_response)
        return MonitorContext.build(cfg, clock=ManualClock(T0), with_rca=False).recovery.engine

    default = engine()
    assert not default.advisory and default.require_approval is None and default.approvals.timeout_s == 300.0
    assert engine(auto_remediation=False).advisory  # the seed's switch: recovery only advises
    custom = engine(remediation={"require_approval_for": ["scale_up"], "safe_actions_only": False, "approval_timeout_seconds": 60})
    assert custom.require_approval == frozenset({RecoveryAction.RESOURCE_SCALING}) and custom.approvals.timeout_s == 60.0
    safe = engine(remediation={"require_approval_for": ["clear_cache"]})  # plus every risky action (safe_actions_only)
    assert {RecoveryAction.CACHE_INVALIDATION, RecoveryAction.SERVICE_RESTART, RecoveryAction.DEPLOYMENT_ROLLBACK} <= safe.require_approval
    with pytest.raises(ConfigError, match=r"remediation.require_approval_for\[0\]: unknown recovery action 'reboot_gpu'"):
        SLAConfig(incident_response={"remediation": {"require_approval_for": ["reboot_gpu"]}})


def test_signals_of_one_fault_within_the_group_window_make_one_incident(tmp_path):
    clock = ManualClock(T0)
    mgr = IncidentManager(IncidentStore.at_path(tmp_path / "x.db"), clock=clock, group_window_s=120)
    stall, _ = mgr.signal(Signal("stall", "engine stalled", IncidentSeverity.CRITICAL, IncidentType.DEADLOCK, T0))
    down, what = mgr.signal(Signal("rule", "service_down", IncidentSeverity.CRITICAL, IncidentType.SERVICE_DOWN, T0 + 19))
    slow, what2 = mgr.signal(Signal("lat", "latency", IncidentSeverity.CRITICAL, IncidentType.PERFORMANCE_DEGRADATION, T0 + 30))
    assert (what, what2) == ("joined", "joined") and down.incident_id == slow.incident_id == stall.incident_id
    later, what3 = mgr.signal(Signal("errors", "errors", IncidentSeverity.HIGH, IncidentType.ERROR_BURST, T0 + 200))
    assert what3 == "opened" and later.incident_id != stall.incident_id  # past the window: a problem of its own
