"""Self-healing: task scheduling on a manual clock, run history, thresholds and healing, the
30-minute escalation through a real event stream, maintenance windows, the default tasks."""
import logging
from logging.handlers import RotatingFileHandler

import pytest

from aphrodite_sla import ManualClock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import ESCALATION_ALERT, ResponseEscalated, fingerprint
from aphrodite_sla.recovery.maintenance import MaintenanceScheduler, TaskRun
from aphrodite_sla.recovery.monitoring_mode import MonitoringMode
from aphrodite_sla.recovery.production_monitor import ProductionMonitor
from aphrodite_sla.recovery.self_healing import HealthReadings, HealthThresholds, SelfHealing, TaskOutcome
from aphrodite_sla.sla.manager import SLAManager

T0 = 1_700_000_000.0
H = 3600.0


class Readings:
    """A settable reader of system use."""

    def __init__(self, clock, memory=50.0, cpu=20.0, disk=40.0):
        self.clock, self.memory, self.cpu, self.disk = clock, memory, cpu, disk

    def __call__(self):
        return HealthReadings(self.clock(), self.memory, self.cpu, self.disk, "test")


@pytest.fixture
def clock():
    return ManualClock(T0)


def test_default_tasks_run_at_the_seeds_intervals(clock):
    sh = SelfHealing(clock=clock, readings=Readings(clock))
    assert {t.name: t.interval_s for t in sh.status().scheduler.tasks} == {
        "cleanup": 6 * H, "memory_optimization": 4 * H, "health_check": 1 * H, "log_rotation": 24 * H}
    ran = {}
    for hour in range(1, 25):
        for run in sh.run_due(T0 + hour * H):
            ran.setdefault(run.task, []).append(hour)
    assert ran["health_check"] == list(range(1, 25))
    assert ran["memory_optimization"] == [4, 8, 12, 16, 20, 24]
    assert ran["cleanup"] == [6, 12, 18, 24]
    assert ran["log_rotation"] == [24]
    assert sh.run_due(T0 + 24 * H) == []  # nothing due twice at the same time
    assert all(r.ok for r in sh.history())


def test_custom_tasks_history_and_failures(clock):
    sched = MaintenanceScheduler(clock=clock)
    calls = []
    sched.add_task("ok", 60, lambda: calls.append(1) or "swept 3 entries")
    sched.add_task("soft_fail", 60, lambda: TaskOutcome(False, "nothing to do"))

    def boom():
        raise OSError("disk gone")

    sched.add_task("boom", 120, boom)
    with pytest.raises(ValueError, match=r"add_task\.name"):
        sched.add_task("ok", 60, lambda: None)
    with pytest.raises(ValueError, match=r"MaintenanceTask\.interval_s"):
        sched.add_task("bad", 0, lambda: None)
    with pytest.raises(ValueError, match=r"MaintenanceTask\.fn"):
        sched.add_task("bad", 10, "not callable")
    assert sched.run_due(T0 + 59) == []
    runs = sched.run_due(T0 + 60)
    assert [(r.task, r.ok, r.detail) for r in runs] == [("ok", True, "swept 3 entries"), ("soft_fail", False, "nothing to do")]
    runs = sched.run_due(T0 + 120)
    assert {(r.task, r.ok) for r in runs} == {("ok", True), ("soft_fail", False), ("boom", False)}
    assert "OSError: disk gone" in next(r for r in runs if r.task == "boom").detail
    history = sched.history()
    assert len(history) == 5 and history[0].started_at == T0 + 120  # newest first
    assert len(sched.history(limit=2)) == 2
    with pytest.raises(ValueError, match=r"history\.limit"):
        sched.history(limit=-1)
    status = {t.name: t for t in sched.status().tasks}
    assert status["ok"].successes == 2 and status["boom"].failures == 1
    assert status["soft_fail"].success_rate_percent == 0.0
    assert status["ok"].next_due == T0 + 180


def test_disable_enable_and_force(clock):
    sched = MaintenanceScheduler(clock=clock)
    calls = []
    sched.add_task("t", 60, lambda: calls.append(clock()))
    sched.disable()
    assert sched.run_due(T0 + 600) == []
    run = sched.force("t")
    assert isinstance(run, TaskRun) and run.forced and run.ok and calls == [T0]
    with pytest.raises(ValueError, match=r"force\.task_name"):
        sched.force("nope")
    sched.enable()
    assert [r.task for r in sched.run_due(T0 + 60)] == ["t"]  # due one interval after the forced run


def test_scheduler_thread_starts_and_stops(clock):
    sched = MaintenanceScheduler(clock=clock, tick_s=0.05)
    sched.start()
    assert sched.status().running
    assert sched.stop()
    assert not sched.status().running


def test_breach_runs_the_healing_response(clock):
    readings = Readings(clock)
    healed = []
    sh = SelfHealing(clock=clock, readings=readings, heal=lambda cond: healed.append(cond) or f"freed for {cond}",
                     thresholds=HealthThresholds(memory_percent=85, cpu_percent=80, disk_percent=90))
    report = sh.check_health()
    assert report.ok and healed == [] and sh.active() == []
    readings.memory, readings.disk = 92.0, 95.0
    report = sh.check_health()
    assert not report.ok and report.breached == ("memory", "disk")
    assert healed == ["memory", "disk"] and report.healed == ("memory", "disk")
    assert "memory 92.0% > 85%" in report.detail
    episodes = {e.condition: e for e in sh.active()}
    assert episodes["memory"].heal_attempts == 1 and episodes["memory"].last_heal_detail == "freed for memory"
    readings.memory = 60.0
    sh.check_health()
    assert [e.condition for e in sh.active()] == ["disk"]
    health = sh.health()  # readings vs thresholds, heals nothing
    assert health.breached == ("disk",) and healed == ["memory", "disk", "disk"]


def test_heal_failures_and_async_heal_are_handled(clock):
    readings = Readings(clock, cpu=99.0)

    def broken(_):
        raise RuntimeError("no engine")

    sh = SelfHealing(clock=clock, readings=readings, heal=broken)
    report = sh.check_health()
    assert report.healed == ("cpu",)
    assert "RuntimeError: no engine" in sh.active()[0].last_heal_detail

    async def async_heal(cond):
        return f"async {cond}"

    sh2 = SelfHealing(clock=clock, readings=readings, heal=async_heal)
    sh2.check_health()
    assert sh2.active()[0].last_heal_detail == "async cpu"


def test_engine_check_is_a_condition(clock):
    state = {"ok": True}

    def engine():
        if not state["ok"]:
            raise TimeoutError("check_health timed out")
        return True

    healed = []
    sh = SelfHealing(clock=clock, readings=Readings(clock), engine_check=engine, heal=healed.append)
    assert sh.check_health().ok
    state["ok"] = False
    report = sh.check_health()
    assert report.breached == ("engine",) and "TimeoutError" in report.detail and healed == ["engine"]


def test_unrecovered_condition_escalates_once_per_episode_through_the_stream(clock):
    stream = EventStream()
    got = []
    stream.subscribe(got.append, ResponseEscalated, name="test-escalations")
    readings = Readings(clock, memory=95.0)
    sh = SelfHealing(clock=clock, events=stream, readings=readings, heal=lambda c: "gc done")
    for minute in range(0, 61, 10):  # failing for an hour, checked every 10 minutes
        clock.set(T0 + minute * 60)
        sh.check_health()
    stream.drain()
    assert len(got) == 1
    event = got[0]
    assert event.subject == "self_healing:memory" and event.failing_since == T0 and event.occurred_at == T0 + 1800
    assert event.fingerprint == fingerprint(ESCALATION_ALERT, subject="self_healing:memory")
    assert "4 healing attempt(s)" in event.detail  # checks at 0, 10, 20 and 30 min each healed
    readings.memory = 50.0
    clock.set(T0 + 4000)
    sh.check_health()  # recovered: the episode ends
    readings.memory = 96.0
    for minute in range(0, 31, 10):
        clock.set(T0 + 5000 + minute * 60)
        sh.check_health()
    stream.drain()
    assert len(got) == 2 and got[1].episode != got[0].episode
    assert sh.status().escalations == 2


def test_maintenance_window_pauses_healing_and_enters_monitor_maintenance(clock):
    mgr = SLAManager([], clock=clock, anomaly_detection=False)
    monitor = ProductionMonitor(mgr)
    healed = []
    readings = Readings(clock, memory=97.0)
    sh = SelfHealing(clock=clock, events=mgr.events, readings=readings, heal=healed.append, calendar=monitor.calendar,
                     escalate_after_s=600)
    sh.maintenance_window(T0 + 100, T0 + 3700, "model swap", "ops")
    clock.set(T0 + 200)
    monitor.tick()
    assert monitor.mode is MonitoringMode.MAINTENANCE
    for minute in range(0, 40, 10):
        clock.set(T0 + 200 + minute * 60)
        report = sh.check_health()
        assert report.in_maintenance and report.healed == () and report.escalated == ()
    assert healed == [] and sh.active() == []
    clock.set(T0 + 3700)
    monitor.tick()
    assert monitor.mode is MonitoringMode.NORMAL
    assert sh.check_health().healed == ("memory",)
    monitor.close()


def test_disabled_self_healing_does_not_heal(clock):
    healed = []
    sh = SelfHealing(clock=clock, readings=Readings(clock, disk=99.0), heal=healed.append)
    sh.disable()
    assert sh.run_due(T0 + 10 * H) == []
    assert sh.force("health_check").ok is False  # the check itself still reports the breach
    assert healed == []
    sh.enable()
    sh.force("health_check")
    assert healed == ["disk"]


def test_thresholds_validation_and_seed_env():
    assert HealthThresholds.from_seed_env({"MEMORY_THRESHOLD": "70", "CPU_THRESHOLD": " "}) == HealthThresholds(memory_percent=70.0)
    with pytest.raises(ValueError, match=r"HealthThresholds\.disk_percent"):
        HealthThresholds.from_seed_env({"DISK_THRESHOLD": "lots"})
    with pytest.raises(ValueError, match=r"HealthThresholds\.cpu_percent"):
        HealthThresholds(cpu_percent=150)
    with pytest.raises(ValueError, match=r"SelfHealing\.intervals_s"):
        SelfHealing(intervals_s={"defrag": 10})


def test_cleanup_calls_our_stores_and_collects(clock):
    seen = []

    def store(now):
        seen.append(now)
        return 7

    def broken(now):
        raise KeyError("x")

    out = SelfHealing(clock=clock, cleanups=[store, store]).cleanup()
    assert out.ok and "dropped 14 expired entries from 2 store(s)" in out.detail and seen == [T0, T0]
    assert not SelfHealing(clock=clock, cleanups=[broken]).cleanup().ok


def test_memory_optimisation_reports_rss(clock):
    out = SelfHealing(clock=clock).optimize_memory()
    assert out.ok and "gc collected" in out.detail and "RSS" in out.detail
    assert out.freed_bytes is None or isinstance(out.freed_bytes, int)


def test_log_rotation_rolls_our_rotating_handlers(clock, tmp_path):
    sh = SelfHealing(clock=clock)
    assert "no rotating log handlers" in sh.rotate_logs().detail
    path = tmp_path / "sla.log"
    handler = RotatingFileHandler(path, maxBytes=10_000_000, backupCount=2)
    log = logging.getLogger("aphrodite_sla")
    log.addHandler(handler)
    try:
        log.warning("before rotation")
        handler.flush()
        out = sh.rotate_logs()
        assert out.ok and out.detail == "rolled 1 of 1 handler(s)"
        assert (tmp_path / "sla.log.1").read_text().strip().endswith("before rotation")
    finally:
        log.removeHandler(handler)
        handler.close()
