"""Production monitor: alerts from the event stream, monitoring modes (escalation, calm-period
de-escalation with hysteresis, maintenance), dedup per mode, callback isolation, the summary."""
import logging
import math

import pytest

from aphrodite_sla import Direction, ManualClock, SLAManager, SLAThreshold, SLAViolation, Statistic, ViolationSeverity
from aphrodite_sla.events import (
    ANOMALY_ALERT,
    DEPLOYMENT_ALERT,
    ESCALATION_ALERT,
    STALL_ALERT,
    VIOLATION_ALERT,
    AnomalyDetected,
    DeploymentEvent,
    MonitoringModeChanged,
    ResponseEscalated,
    StallDetected,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
    episode_id,
    fingerprint,
)
from aphrodite_sla.recovery.monitoring_mode import (
    POLICIES,
    AlertSeverity,
    MaintenanceWindow,
    ModePolicy,
    MonitoringMode,
    SuppressedReason,
)
from aphrodite_sla.recovery.production_monitor import ProductionMonitor, create_production_monitor
from aphrodite_sla.self_metrics import Component
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.threshold import SLAStatus, ViolationRule

T0 = 1_700_000_000.0
M = MonitoringMode


def lat_sla(name="lat_p95"):
    return SLAThreshold(name, 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat", sample_rate_hz=100.0, min_samples=5)


def violation(sla, severity, at, rule=ViolationRule.SUSTAINED):
    return SLAViolation(sla, "lat", Statistic.P95, Direction.UPPER, 300.0, 120.0, 100.0, severity, 60.0, at, at, 1.0, 5, 100,
                        peak_severity=severity, rule=rule)


def raised(sla, severity, at):
    fp = fingerprint(VIOLATION_ALERT, sla=sla)
    return ViolationRaised(fp, episode_id(fp, at), at, violation(sla, severity, at))


def escalated(sla, severity, at, previous=ViolationSeverity.MINOR):
    fp = fingerprint(VIOLATION_ALERT, sla=sla)
    return ViolationEscalated(fp, episode_id(fp, at), at, violation(sla, severity, at), previous)


def resolved(sla, at, started=None):
    fp = fingerprint(VIOLATION_ALERT, sla=sla)
    return ViolationResolved(fp, episode_id(fp, started or at), at, violation(sla, ViolationSeverity.MINOR, at), started or at)


def stalled(at):
    fp = fingerprint(STALL_ALERT)
    return StallDetected(fp, episode_id(fp, at), at, violation("engine_stall", ViolationSeverity.CRITICAL, at, ViolationRule.STALL), None)


@pytest.fixture
def setup():
    clock = ManualClock(T0)
    mgr = SLAManager([lat_sla()], clock=clock, anomaly_detection=False, regression_interval_s=math.inf)
    monitor = ProductionMonitor(mgr)
    got = []
    monitor.register_alert_callback(got.append)
    yield clock, mgr, monitor, got
    monitor.close()


def test_mode_policies_match_the_seed():
    assert [(POLICIES[m].alert_cooldown_s, POLICIES[m].health_check_interval_s) for m in M] == [
        (300.0, 60.0), (60.0, 30.0), (30.0, 15.0), (900.0, 300.0)]
    with pytest.raises(ValueError, match=r"ModePolicy\.alert_cooldown_s"):
        ModePolicy(alert_cooldown_s=0, health_check_interval_s=1)


def test_escalation_steps_and_publishes_mode_changes(setup):
    clock, mgr, monitor, got = setup
    changes = []
    mgr.subscribe(changes.append, MonitoringModeChanged, name="test-modes")
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0))
    assert monitor.mode is M.NORMAL  # a minor violation alerts but does not lift the mode
    monitor.handle(raised("b", ViolationSeverity.CRITICAL, T0 + 1))
    assert monitor.mode is M.HIGH_ALERT  # a critical from NORMAL lifts one step only
    monitor.handle(raised("c", ViolationSeverity.CRITICAL, T0 + 2))
    assert monitor.mode is M.EMERGENCY  # a critical while already high
    mgr.events.drain()
    assert [(c.old_mode, c.new_mode) for c in changes] == [("normal", "high_alert"), ("high_alert", "emergency")]
    assert [c.by for c in monitor.mode_history()] == ["auto", "auto"]


def test_major_lifts_to_high_alert_and_stall_to_emergency(setup):
    _, _, monitor, got = setup
    monitor.handle(escalated("a", ViolationSeverity.MAJOR, T0))
    assert monitor.mode is M.HIGH_ALERT
    monitor.handle(raised("b", ViolationSeverity.MAJOR, T0 + 1))
    assert monitor.mode is M.HIGH_ALERT  # a major while high stays high
    monitor.handle(stalled(T0 + 2))
    assert monitor.mode is M.EMERGENCY
    assert got[-1].name == STALL_ALERT and got[-1].severity is AlertSeverity.CRITICAL


def test_stall_from_normal_goes_straight_to_emergency(setup):
    _, _, monitor, _ = setup
    monitor.handle(stalled(T0))
    assert monitor.mode is M.EMERGENCY


def test_de_escalation_one_step_per_calm_period(setup):
    _, _, monitor, _ = setup
    monitor.handle(raised("a", ViolationSeverity.CRITICAL, T0))
    monitor.handle(raised("b", ViolationSeverity.CRITICAL, T0))
    assert monitor.mode is M.EMERGENCY
    monitor.handle(resolved("a", T0 + 60))
    monitor.tick(T0 + 1000)
    assert monitor.mode is M.EMERGENCY  # "b" is still active: no calm period has begun
    monitor.handle(resolved("b", T0 + 1000))
    monitor.tick(T0 + 1299)
    assert monitor.mode is M.EMERGENCY
    monitor.tick(T0 + 1300)
    assert monitor.mode is M.HIGH_ALERT  # 5 min calm: one step down
    monitor.tick(T0 + 1300 + 599)
    assert monitor.mode is M.HIGH_ALERT  # the 10-min calm of HIGH_ALERT counts from the step down
    monitor.tick(T0 + 1300 + 600)
    assert monitor.mode is M.NORMAL
    assert [c.new_mode for c in monitor.mode_history()] == [M.HIGH_ALERT, M.EMERGENCY, M.HIGH_ALERT, M.NORMAL]


def test_flapping_violation_does_not_flap_the_mode(setup):
    _, _, monitor, _ = setup
    t = T0
    for _ in range(15):  # a major that resolves and returns every 4 minutes for an hour
        monitor.handle(raised("a", ViolationSeverity.MAJOR, t))
        monitor.tick(t + 60)
        monitor.handle(resolved("a", t + 120, t))
        monitor.tick(t + 180)
        t += 240
    assert monitor.mode is M.HIGH_ALERT
    assert len(monitor.mode_history()) == 1  # lifted once, never stepped down while it kept returning
    monitor.handle(raised("b", ViolationSeverity.MINOR, t))
    monitor.tick(t + 3600)
    assert monitor.mode is M.HIGH_ALERT  # an active violation (even minor) holds the mode
    monitor.handle(resolved("b", t + 3600))
    monitor.tick(t + 3600 + 600)
    assert monitor.mode is M.NORMAL


def test_maintenance_suppresses_alerts_and_is_never_auto_changed(setup):
    clock, _, monitor, got = setup
    with pytest.raises(ValueError, match=r"set_mode\.mode"):
        monitor.set_mode("panic", "x", "ops")
    with pytest.raises(ValueError, match=r"set_mode\.reason"):
        monitor.set_mode(M.MAINTENANCE, " ", "ops")
    with pytest.raises(ValueError, match=r"set_mode\.until"):
        monitor.set_mode(M.MAINTENANCE, "upgrade", "ops", until=T0 - 1)
    with pytest.raises(ValueError, match=r"set_mode\.until"):
        monitor.set_mode(M.HIGH_ALERT, "drill", "ops", until=T0 + 10)
    change = monitor.set_mode(M.MAINTENANCE, "driver upgrade", "ops", until=T0 + 3600)
    assert change is not None and change.by == "ops" and change.until == T0 + 3600
    monitor.handle(raised("a", ViolationSeverity.CRITICAL, T0 + 10))
    monitor.handle(stalled(T0 + 11))
    monitor.tick(T0 + 3000)
    assert monitor.mode is M.MAINTENANCE  # no escalation inside maintenance
    assert got == []
    log = monitor.alerts()
    assert [a.suppressed_reason for a in log] == [SuppressedReason.MAINTENANCE] * 2
    assert all(a.mode is M.MAINTENANCE for a in log)
    monitor.tick(T0 + 3600)  # the planned end: back to what the active violations call for
    assert monitor.mode is M.EMERGENCY
    assert monitor.mode_history()[-1].reason == "maintenance window ended"


def test_calendar_window_enters_and_leaves_maintenance(setup):
    _, _, monitor, got = setup
    window = monitor.schedule_maintenance(T0 + 100, T0 + 200, "reindex", "ops")
    assert isinstance(window, MaintenanceWindow)
    with pytest.raises(ValueError, match=r"MaintenanceWindow\.end"):
        monitor.schedule_maintenance(T0 + 10, T0 + 5)
    monitor.tick(T0 + 99)
    assert monitor.mode is M.NORMAL
    monitor.tick(T0 + 100)
    assert monitor.mode is M.MAINTENANCE
    monitor.handle(raised("a", ViolationSeverity.MAJOR, T0 + 150))
    monitor.handle(resolved("a", T0 + 160, T0 + 150))
    assert got == []
    monitor.tick(T0 + 200)
    assert monitor.mode is M.NORMAL
    assert [c.by for c in monitor.mode_history()] == ["ops", "calendar"]


def test_dedup_by_fingerprint_with_the_mode_cooldown(setup):
    _, _, monitor, got = setup
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0))
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0 + 100))  # a new episode inside NORMAL's 5 min
    assert len(got) == 1
    assert monitor.alerts()[0].count == 2 and monitor.alerts()[0].last_seen == T0 + 100
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0 + 301))
    assert len(got) == 2 and got[1].count == 1
    monitor.set_mode(M.EMERGENCY, "drill", "ops")
    monitor.handle(raised("x", ViolationSeverity.MINOR, T0 + 400))
    monitor.handle(raised("x", ViolationSeverity.MINOR, T0 + 420))  # inside EMERGENCY's 30 s
    monitor.handle(raised("x", ViolationSeverity.MINOR, T0 + 431))
    assert [a.sla for a in got] == ["a", "a", "x", "x"]


def test_severity_escalation_is_always_delivered(setup):
    _, _, monitor, got = setup
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0))
    monitor.handle(raised("a", ViolationSeverity.MAJOR, T0 + 10))  # higher than what was delivered
    monitor.handle(escalated("a", ViolationSeverity.MAJOR, T0 + 20))  # an escalation event: always
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0 + 30))  # lower: folded
    assert [(a.severity, a.escalated) for a in got] == [
        (AlertSeverity.MINOR, False), (AlertSeverity.MAJOR, True), (AlertSeverity.MAJOR, True)]
    assert monitor.alerts()[-1].count == 2


def test_callback_errors_are_counted_and_others_still_run(setup):
    _, mgr, monitor, got = setup
    calls = []

    def broken(alert):
        calls.append(alert)
        raise RuntimeError("pager down")

    monitor.register_alert_callback(broken)
    monitor.register_alert_callback(lambda a: calls.append(("after", a.alert_id)))
    monitor.handle(raised("a", ViolationSeverity.MINOR, T0))
    monitor.handle(raised("b", ViolationSeverity.MINOR, T0 + 1))
    assert len(got) == 2 and len(calls) == 4
    assert monitor.callback_errors == 2
    assert mgr.self_metrics.errors_of(Component.SUBSCRIBER) == 2
    with pytest.raises(ValueError, match="callback"):
        monitor.register_alert_callback("not callable")


def test_which_events_are_alerts(setup):
    _, _, monitor, got = setup
    status = SLAStatus("lat_p95", Statistic.P95, 150.0, 120.0, True, False, None, 100, 5, 0.2, 99.0, 0.9, None, T0)
    afp = fingerprint(ANOMALY_ALERT, sla="lat_p95")
    monitor.handle(AnomalyDetected(afp, episode_id(afp, T0), T0, status, 0.9, "level_shift"))
    efp = fingerprint(ESCALATION_ALERT, subject="self_healing:memory")
    monitor.handle(ResponseEscalated(efp, episode_id(efp, T0), T0, "self_healing:memory", T0 - 1800, "memory 93% > 85%"))
    dfp = fingerprint(DEPLOYMENT_ALERT, model="m")
    for kind in ("tracked", "regressed", "rolled_back", "stable"):
        monitor.handle(DeploymentEvent(dfp, episode_id(dfp, T0), T0, "d1", kind, "x"))
    assert [(a.name, a.severity) for a in got] == [
        (ANOMALY_ALERT, AlertSeverity.WARNING), (ESCALATION_ALERT, AlertSeverity.CRITICAL),
        (DEPLOYMENT_ALERT, AlertSeverity.MAJOR), (DEPLOYMENT_ALERT, AlertSeverity.WARNING)]
    assert monitor.mode is M.NORMAL  # only violations move the mode


def test_health_check_reconciles_active_violations_with_the_snapshot(setup):
    clock, mgr, monitor, _ = setup
    monitor.handle(raised("lat_p95", ViolationSeverity.MAJOR, T0))
    assert monitor.mode is M.HIGH_ALERT
    mgr.evaluate(T0 + 1)  # the manager sees no violation (the resolution event was lost)
    monitor.tick(T0 + 1)
    monitor.tick(T0 + 600)
    assert monitor.mode is M.HIGH_ALERT  # calm began at the reconciliation, 599 s ago
    monitor.tick(T0 + 601)
    assert monitor.mode is M.NORMAL


def test_summary_shape_and_24h_log(setup):
    clock, mgr, monitor, _ = setup
    monitor.handle(raised("a", ViolationSeverity.MAJOR, T0))
    monitor.handle(raised("b", ViolationSeverity.MINOR, T0 + 1))
    s = monitor.get_production_summary(T0 + 2)
    assert set(s) >= {"monitoring_mode", "current_health", "component_status", "total_alerts_24h", "alerts_by_severity", "recent_alerts"}
    assert s["monitoring_mode"] == "high_alert"
    assert set(s["current_health"]) == {"status", "active_violations", "sla_compliance", "engine_stalled"}
    assert s["current_health"]["status"] == "unknown"  # nothing evaluated yet
    assert s["component_status"]["recovery_engine"] is None and s["recovery_success_rate"] is None
    assert s["total_alerts_24h"] == 2
    assert s["alerts_by_severity"] == {"warning": 0, "minor": 1, "major": 1, "critical": 0}
    assert [a["sla"] for a in s["recent_alerts"]] == ["b", "a"]
    monitor.tick(T0 + 24 * 3600 + 0.5)
    assert monitor.get_production_summary(T0 + 24 * 3600 + 0.5)["total_alerts_24h"] == 1

    with_recovery = ProductionMonitor(mgr, recovery_stats=lambda: {"success_rate_percent": 95.2, "executions": 4})
    s2 = with_recovery.get_production_summary()
    assert s2["component_status"]["recovery_engine"]["success_rate_percent"] == 95.2
    assert s2["recovery_success_rate"] == 95.2
    with_recovery.close()


def test_record_metric_never_raises_and_counts_unknown(setup, caplog):
    clock, mgr, monitor, _ = setup
    assert monitor.record_metric("lat_p95", 80.0)
    with caplog.at_level(logging.WARNING):
        assert not monitor.record_metric("no_such_metric", 1.0)
        assert not monitor.record_metric("no_such_metric", 2.0)
        assert not monitor.record_metric("lat", "not a number")
    assert monitor.dropped_metrics == {"no_such_metric": 2, "lat": 1}
    unknown_logs = [r for r in caplog.records if "unknown metric 'no_such_metric'" in r.getMessage()]
    assert len(unknown_logs) == 1  # logged once


def test_end_to_end_through_the_event_stream():
    clock = ManualClock(T0)
    monitor = create_production_monitor(SLAManager([lat_sla()], clock=clock, anomaly_detection=False, page_rules=PageRulesConfig(enabled=False), regression_interval_s=math.inf))
    got = []
    monitor.register_alert_callback(got.append)
    mgr = monitor.manager
    for _ in range(600):
        clock.advance(0.1)
        monitor.record_metric("lat", 400.0)  # 3.3x the 120 ms bound: critical
        if int(clock() * 10) % 50 == 0:
            mgr.evaluate()
    mgr.evaluate()
    assert got and got[0].name == VIOLATION_ALERT and got[0].severity is AlertSeverity.CRITICAL
    assert monitor.mode is M.HIGH_ALERT
    summary = monitor.get_production_summary()
    assert summary["current_health"]["status"] == "critical"
    assert summary["current_health"]["active_violations"] == 1
    monitor.close()
