"""RecoveryEngine: the ladder, timeouts, retries, rollback, cooldowns, concurrency, advisory mode,
approvals, kept mitigations, stats and the event-stream wiring.

Handlers here are small ones of our own; verification is scripted (``ScriptedVerifier``) except
in the end-to-end test, which reads a real SLAManager's windows. No timing assertions: durations
come from a ManualClock the handlers advance; real timeouts are short and only bound hangs."""
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import (
    ApprovalDecided,
    ApprovalRequested,
    MonitorEvent,
    RecoveryFinished,
    RecoveryStarted,
    ResponseEscalated,
    StallDetected,
    ViolationRaised,
    ViolationResolved,
)
from aphrodite_sla.recovery.engine import RecoveryEngine
from aphrodite_sla.recovery.model import (
    ActionOutcome,
    Applied,
    ExecutionStatus,
    Precheck,
    RecoveryAction,
    RecoveryExecution,
    RecoveryProcedure,
)
from aphrodite_sla.recovery.procedures import CRITICAL_SYSTEM
from aphrodite_sla.recovery.recovery_stats import DURATION_BUCKETS_S
from aphrodite_sla.recovery.verification import Verification, WindowVerifier
from aphrodite_sla.sla.manager import SLAManager
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, SLAViolation, Statistic, ViolationSeverity

T0 = 1_700_000_000.0
A = RecoveryAction


def violation(sla: str = "request_latency_p95", severity: ViolationSeverity = ViolationSeverity.MAJOR, *, first: float = T0,
              source: str = "request_latency_ms") -> SLAViolation:
    return SLAViolation(sla, source, Statistic.P95, Direction.UPPER, 400.0, 250.0, 200.0, severity, 300.0, first, first + 10,
                        1.0, 10, 100)


class Handler:
    """A handler that records what it was asked, and acts as told: "ok", "raise", "hang", or a
    list of those per attempt."""

    def __init__(self, action: RecoveryAction, behaviour: str | list[str] = "ok", *, requires_approval: bool = False,
                 precheck: Precheck | None = None, keep: bool = False, undo: bool = True, on_apply: Callable[[], Any] | None = None) -> None:
        self.action = action
        self.requires_approval = requires_approval
        self.behaviour = behaviour
        self._precheck = precheck or Precheck.go()
        self.keep = keep
        self.with_undo = undo
        self.on_apply = on_apply
        self.applied = 0
        self.prechecked = 0
        self.undone = 0
        self.violations: list[SLAViolation | None] = []

    def precheck(self, target: Any, violation: SLAViolation | None) -> Precheck:
        self.prechecked += 1
        return self._precheck

    async def apply(self, target: Any, violation: SLAViolation | None) -> Applied:
        self.applied += 1
        self.violations.append(violation)
        kind = self.behaviour if isinstance(self.behaviour, str) else self.behaviour[min(self.applied, len(self.behaviour)) - 1]
        if kind == "raise":
            raise RuntimeError(f"{self.action.value} broke")
        if kind == "hang":
            await asyncio.sleep(3600)
        if self.on_apply is not None:
            self.on_apply()
        return Applied(f"{self.action.value} done", self._undo if self.with_undo else None, keep_until_resolved=self.keep)

    async def _undo(self) -> None:
        self.undone += 1


class ScriptedVerifier:
    """Answers verified/unverified in turn (the last answer repeats)."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers) or [True]
        self.calls: list[tuple[str, float]] = []

    def verify(self, violation: SLAViolation, settle_s: float) -> Verification:
        self.calls.append((violation.metric_name, settle_s))
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return Verification(answer, "back within bound" if answer else "still beyond bound")


def procedure(*actions: RecoveryAction, pid: str = "p", slas: tuple[str, ...] = (), **kw: Any) -> RecoveryProcedure:
    kw.setdefault("settle_seconds", 0.0)
    kw.setdefault("cooldown_seconds", 0.0)
    kw.setdefault("timeout_seconds", 5.0)
    return RecoveryProcedure(pid, pid, "test procedure", tuple(actions), slas=slas, **kw)


class Recorder:
    def __init__(self, stream: EventStream) -> None:
        self.events: list[MonitorEvent] = []
        self._lock = threading.Lock()
        stream.subscribe(self._on, name="test-recorder")

    def _on(self, event: MonitorEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def engines():
    made: list[RecoveryEngine] = []

    def make(handlers: list[Handler], verifier: Any = None, procedures: list[RecoveryProcedure] | None = None, **kw: Any) -> RecoveryEngine:
        kw.setdefault("global_cooldown_s", 0.0)
        kw.setdefault("clock", ManualClock(T0))
        engine = RecoveryEngine({h.action: h for h in handlers}, "target", verifier=verifier or ScriptedVerifier(True),
                                procedures=procedures, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        assert engine.stop(timeout=5.0)


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until ``predicate()`` is truthy; fails the test after ``timeout`` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# -- the ladder ------------------------------------------------------------------------------------
async def test_the_first_verified_action_ends_the_run_and_an_unverified_one_is_rolled_back(engines):
    h1, h2, h3 = Handler(A.CACHE_INVALIDATION), Handler(A.LOAD_BALANCER_ADJUST), Handler(A.TRAFFIC_ROUTING)
    verifier = ScriptedVerifier(False, True)
    engine = engines([h1, h2, h3], verifier, [procedure(h1.action, h2.action, h3.action)])
    ex = await engine.execute_recovery(violation())
    assert ex.status is ExecutionStatus.SUCCEEDED
    assert [r.outcome for r in ex.actions] == [ActionOutcome.UNVERIFIED, ActionOutcome.SUCCEEDED]
    assert ex.actions[0].rolled_back and ex.actions[0].verified is False and h1.undone == 1
    assert ex.actions[1].verified is True and not ex.actions[1].rolled_back and h2.undone == 0
    assert h3.applied == 0 and h3.prechecked == 0
    assert "load_balancer_adjust verified" in ex.reason
    assert h1.violations[0].metric_name == "request_latency_p95"


async def test_no_action_verified_fails_the_run_with_every_action_rolled_back(engines):
    hs = [Handler(A.CACHE_INVALIDATION), Handler(A.LOAD_BALANCER_ADJUST, undo=False)]
    engine = engines(hs, ScriptedVerifier(False), [procedure(*(h.action for h in hs))])
    ex = await engine.execute_recovery(violation())
    assert ex.status is ExecutionStatus.FAILED
    assert [r.outcome for r in ex.actions] == [ActionOutcome.UNVERIFIED, ActionOutcome.UNVERIFIED]
    assert ex.actions[0].rolled_back and hs[0].undone == 1
    assert not ex.actions[1].rolled_back and ex.actions[1].rollback_detail == "nothing to undo"
    assert engine.history(1)[0].execution_id == ex.execution_id


async def test_a_hanging_action_ends_at_its_timeout_and_the_ladder_goes_on(engines):
    hang, ok = Handler(A.SERVICE_RESTART, "hang"), Handler(A.TRAFFIC_ROUTING)
    engine = engines([hang, ok], ScriptedVerifier(True), [procedure(hang.action, ok.action, timeout_seconds=0.05)])
    ex = await engine.execute_recovery(violation())
    assert [r.outcome for r in ex.actions] == [ActionOutcome.TIMED_OUT, ActionOutcome.SUCCEEDED]
    assert "timed out after 0.05 s" in ex.actions[0].detail
    assert ex.status is ExecutionStatus.SUCCEEDED


async def test_an_apply_that_returns_despite_its_cancel_is_undone(engines):
    undone = []

    class Stubborn(Handler):
        async def apply(self, target: Any, violation: SLAViolation | None) -> Applied:
            self.applied += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
            return Applied("applied late", self._late_undo)

        async def _late_undo(self) -> None:
            undone.append(True)

    h = Stubborn(A.RESOURCE_SCALING)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action, timeout_seconds=0.05)])
    ex = await engine.execute_recovery(violation())
    (r,) = ex.actions
    assert r.outcome is ActionOutcome.TIMED_OUT and r.rolled_back and undone == [True]
    assert ex.status is ExecutionStatus.FAILED


async def test_a_raising_action_is_tried_retry_count_times_then_the_next_runs(engines):
    bad, good = Handler(A.CIRCUIT_BREAKER_ACTIVATION, "raise"), Handler(A.HEALTH_CHECK_RESET)
    engine = engines([bad, good], ScriptedVerifier(True), [procedure(bad.action, good.action, retry_count=3)])
    ex = await engine.execute_recovery(violation())
    assert bad.applied == 3
    assert ex.actions[0].outcome is ActionOutcome.FAILED and ex.actions[0].attempts == 3
    assert "RuntimeError: circuit_breaker_activation broke" in ex.actions[0].detail
    assert not ex.actions[0].rolled_back  # nothing was returned to undo
    assert ex.actions[1].outcome is ActionOutcome.SUCCEEDED and ex.status is ExecutionStatus.SUCCEEDED


async def test_a_retry_that_succeeds_counts_its_attempts(engines):
    flaky = Handler(A.CACHE_INVALIDATION, ["raise", "hang", "ok"])
    engine = engines([flaky], ScriptedVerifier(True), [procedure(flaky.action, retry_count=3, timeout_seconds=0.05)])
    ex = await engine.execute_recovery(violation())
    assert flaky.applied == 3 and ex.actions[0].attempts == 3 and ex.actions[0].outcome is ActionOutcome.SUCCEEDED


async def test_prechecks_and_missing_handlers_skip_to_the_next_action(engines):
    gone = Handler(A.RESOURCE_SCALING, precheck=Precheck.unavailable("no scaling hook configured"))
    unsafe = Handler(A.SERVICE_RESTART, precheck=Precheck.refuse("requests would be lost"))
    ok = Handler(A.TRAFFIC_ROUTING)
    engine = engines([gone, unsafe, ok], ScriptedVerifier(True),
                     [procedure(A.DEPLOYMENT_ROLLBACK, gone.action, unsafe.action, ok.action)])
    ex = await engine.execute_recovery(violation())
    assert [r.outcome for r in ex.actions] == [ActionOutcome.NOT_AVAILABLE, ActionOutcome.NOT_AVAILABLE,
                                               ActionOutcome.PRECHECK_FAILED, ActionOutcome.SUCCEEDED]
    assert ex.actions[0].detail == "no handler for this action"
    assert ex.actions[2].detail == "requests would be lost"
    assert gone.applied == unsafe.applied == 0


# -- loops, concurrency, modes ---------------------------------------------------------------------
async def test_a_second_raise_of_the_same_sla_within_the_cooldown_is_skipped(engines):
    h = Handler(A.CACHE_INVALIDATION)
    clock = ManualClock(T0)
    engine = engines([h], ScriptedVerifier(False), [procedure(h.action, cooldown_seconds=60.0)], clock=clock)
    first = await engine.execute_recovery(violation())
    second = await engine.execute_recovery(violation())
    assert first.status is ExecutionStatus.FAILED
    assert second.status is ExecutionStatus.SKIPPED and "cooldown" in second.reason and h.applied == 1
    other = await engine.execute_recovery(violation("request_latency_p99"))  # another SLA has its own cooldown
    assert other.status is ExecutionStatus.FAILED
    clock.advance(61.0)
    assert (await engine.execute_recovery(violation())).status is ExecutionStatus.FAILED
    stats = engine.stats()
    assert stats.by_status == {"failed": 3, "skipped": 1} and stats.by_reason == {"cooldown": 1}
    assert [e.status for e in engine.history()].count(ExecutionStatus.SKIPPED) == 1


async def test_the_global_cooldown_holds_any_procedure_of_the_same_sla_but_lets_an_escalation_through(engines):
    h = Handler(A.CACHE_INVALIDATION)
    procs = [procedure(h.action, pid="latency", slas=("request_latency_p95",)),
             procedure(h.action, pid="other_latency", slas=("request_latency_p95",), severity_threshold=ViolationSeverity.MINOR),
             procedure(h.action, pid=CRITICAL_SYSTEM, severity_threshold=ViolationSeverity.CRITICAL)]
    engine = engines([h], ScriptedVerifier(False), procs, global_cooldown_s=300.0)
    assert (await engine.execute_recovery(violation())).procedure_id == "latency"
    engine.remove_procedure("latency")  # the next MAJOR raise selects another procedure of the same rank
    skipped = await engine.execute_recovery(violation())
    assert skipped.status is ExecutionStatus.SKIPPED and "global cooldown" in skipped.reason
    critical = await engine.execute_recovery(violation(severity=ViolationSeverity.CRITICAL))
    assert critical.procedure_id == CRITICAL_SYSTEM and critical.status is ExecutionStatus.FAILED


class Gated(Handler):
    """A handler whose apply waits until ``gate`` is set (runs that stay active meanwhile)."""

    def __init__(self, action: RecoveryAction, gate: threading.Event) -> None:
        super().__init__(action)
        self.gate = gate

    async def apply(self, target: Any, violation: SLAViolation | None) -> Applied:
        while not self.gate.is_set():
            await asyncio.sleep(0.002)
        return await super().apply(target, violation)


async def test_no_more_than_max_concurrent_recoveries_run(engines):
    gate = threading.Event()
    h = Gated(A.CACHE_INVALIDATION, gate)
    procs = [procedure(h.action, pid=f"p{i}", slas=(f"sla{i}",)) for i in range(3)]
    engine = engines([h], ScriptedVerifier(True), procs, max_concurrent=2)
    runs = [asyncio.create_task(engine.execute_recovery(violation(f"sla{i}"))) for i in range(2)]
    await eventually(lambda: len(engine.active()) == 2)
    third = await engine.execute_recovery(violation("sla2"))
    assert third.status is ExecutionStatus.SKIPPED and "max_concurrent 2" in third.reason
    assert {e.status for e in engine.active()} == {ExecutionStatus.RUNNING}
    gate.set()
    assert [r.status for r in await asyncio.gather(*runs)] == [ExecutionStatus.SUCCEEDED] * 2
    assert engine.active() == [] and h.applied == 2


async def test_one_fault_tripping_several_slas_runs_one_ladder(engines):
    """p95, p99 and TTFT break together: the procedure that answers them runs once, the others are
    skipped while it runs (each would repeat the same actions on the same engine)."""
    gate = threading.Event()
    h = Gated(A.CACHE_INVALIDATION, gate)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action)])
    first = asyncio.create_task(engine.execute_recovery(violation("p95")))
    await eventually(lambda: len(engine.active()) == 1)
    second = await engine.execute_recovery(violation("p99"))
    assert second.status is ExecutionStatus.SKIPPED and "already running (for p95)" in second.reason
    gate.set()
    assert (await first).status is ExecutionStatus.SUCCEEDED and h.applied == 1


async def test_advisory_mode_changes_nothing(engines):
    hs = [Handler(A.CACHE_INVALIDATION), Handler(A.LOAD_BALANCER_ADJUST, requires_approval=True),
          Handler(A.TRAFFIC_ROUTING, precheck=Precheck.refuse("already draining"))]
    verifier = ScriptedVerifier(True)
    engine = engines(hs, verifier, [procedure(*(h.action for h in hs))], advisory=True)
    ex = await engine.execute_recovery(violation())
    assert ex.status is ExecutionStatus.ADVISORY and ex.advisory
    assert [r.outcome for r in ex.actions] == [ActionOutcome.ADVISORY] * 3
    assert [r.detail for r in ex.actions] == ["would apply", "would apply (after approval)", "would not run: already draining"]
    assert sum(h.applied for h in hs) == 0 and sum(h.undone for h in hs) == 0
    assert verifier.calls == [] and engine.approvals.requests() == []
    engine.advisory = False
    assert (await engine.execute_recovery(violation("request_latency_p99"))).status is ExecutionStatus.SUCCEEDED


async def test_a_disabled_engine_records_a_skip(engines):
    h = Handler(A.CACHE_INVALIDATION)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action)])
    engine.disable()
    assert (await engine.execute_recovery(violation())).reason == "recovery is disabled"
    engine.enable()
    assert (await engine.execute_recovery(violation())).status is ExecutionStatus.SUCCEEDED
    assert h.applied == 1


async def test_a_maintenance_window_holds_back_violation_driven_recovery_but_not_a_persons(engines):
    stream = EventStream()
    h = Handler(A.CACHE_INVALIDATION)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action)])
    engine.attach(stream)
    maintenance = True
    engine.in_maintenance = lambda: maintenance
    stream.publish([ViolationRaised("fp1", "fp1-1", T0, violation())])
    (ex,) = await eventually(engine.history)
    assert ex.status is ExecutionStatus.SKIPPED and "maintenance window" in ex.reason and h.applied == 0
    assert engine.stats().by_reason["maintenance"] == 1
    # a person's execute_recovery is their decision: it runs in the window
    assert (await engine.execute_recovery(violation("request_latency_p99"))).status is ExecutionStatus.SUCCEEDED
    maintenance = False
    stream.publish([ViolationRaised("fp2", "fp2-1", T0, violation("ttft_p95"))])
    await eventually(lambda: any(e.sla == "ttft_p95" and e.status is ExecutionStatus.SUCCEEDED for e in engine.history()))
    assert h.applied == 2


async def test_a_violation_no_procedure_answers_is_skipped(engines):
    engine = engines([], ScriptedVerifier(True), [procedure(A.CACHE_INVALIDATION, slas=("ttft_p95",))])
    ex = await engine.execute_recovery(violation("custom_sla", ViolationSeverity.MINOR))
    assert ex.status is ExecutionStatus.SKIPPED and ex.procedure_id == "" and "no procedure answers custom_sla" in ex.reason


# -- approvals -------------------------------------------------------------------------------------
async def test_an_approved_risky_action_runs_after_approval_from_another_thread(engines):
    stream = EventStream()
    rec = Recorder(stream)
    risky = Handler(A.SERVICE_RESTART, requires_approval=True)
    engine = engines([risky], ScriptedVerifier(True), [procedure(risky.action)], events=stream)
    run = asyncio.create_task(engine.execute_recovery(violation()))
    (req,) = await eventually(engine.approvals.pending)
    assert risky.applied == 0 and engine.active()[0].status is ExecutionStatus.AWAITING_APPROVAL
    threading.Thread(target=engine.approvals.approve, args=(req.request_id, "alice")).start()
    ex = await run
    assert ex.status is ExecutionStatus.SUCCEEDED and risky.applied == 1
    assert engine.approvals.get(req.request_id).decided_by == "alice"
    assert stream.drain()
    assert [e.request_id for e in rec.of(ApprovalRequested)] == [req.request_id]
    (decided,) = rec.of(ApprovalDecided)
    assert decided.approved and decided.decided_by == "alice" and decided.episode == ex.episode


async def test_a_denied_action_is_not_applied_and_the_ladder_goes_on(engines):
    risky, safe = Handler(A.DEPLOYMENT_ROLLBACK, requires_approval=True), Handler(A.TRAFFIC_ROUTING, requires_approval=True)
    engine = engines([risky, safe], ScriptedVerifier(True), [procedure(risky.action, safe.action)],
                     require_approval=frozenset({A.DEPLOYMENT_ROLLBACK}))  # overrides the handlers' own flags
    run = asyncio.create_task(engine.execute_recovery(violation()))
    (req,) = await eventually(engine.approvals.pending)
    engine.approvals.deny(req.request_id, "bob", "not during the launch")
    ex = await run
    assert ex.actions[0].outcome is ActionOutcome.DENIED and ex.actions[0].detail == "denied by bob: not during the launch"
    assert risky.applied == 0 and safe.applied == 1 and ex.status is ExecutionStatus.SUCCEEDED


async def test_an_approval_nobody_answers_is_denied_on_timeout(engines):
    risky = Handler(A.SERVICE_RESTART, requires_approval=True)
    engine = engines([risky], ScriptedVerifier(True), [procedure(risky.action)], approval_timeout_s=0.05)
    ex = await engine.execute_recovery(violation())
    assert ex.actions[0].outcome is ActionOutcome.DENIED and "by timeout" in ex.actions[0].detail
    assert risky.applied == 0 and ex.status is ExecutionStatus.FAILED


# -- kept mitigations and the stream ---------------------------------------------------------------
async def test_a_kept_mitigation_is_undone_when_its_episode_resolves_on_a_real_stream(engines):
    stream = EventStream()
    rec = Recorder(stream)
    shed = Handler(A.LOAD_BALANCER_ADJUST, keep=True)
    engine = engines([shed], ScriptedVerifier(True), [procedure(shed.action)], events=stream)
    engine.attach(stream)
    v = violation()
    stream.publish([ViolationRaised("fp1", "fp1-1", T0 + 10, v)])
    (ex,) = await eventually(engine.history)
    assert ex.status is ExecutionStatus.SUCCEEDED and ex.episode == "fp1-1" and ex.fingerprint == "fp1"
    assert shed.undone == 0 and engine.stats().kept_mitigations == 1
    stream.publish([ViolationResolved("fp1", "other-episode", T0 + 50, v, T0)])
    assert stream.drain()
    assert shed.undone == 0
    stream.publish([ViolationResolved("fp1", "fp1-1", T0 + 60, v, T0)])
    await eventually(lambda: shed.undone == 1)
    (after,) = await eventually(lambda: [e for e in engine.history() if e.actions[0].rolled_back])
    assert after.actions[0].rollback_detail == "violation resolved: undone" and engine.stats().kept_mitigations == 0
    assert stream.drain()
    (started,) = rec.of(RecoveryStarted)
    (finished,) = rec.of(RecoveryFinished)
    assert (started.fingerprint, started.episode, started.execution_id) == ("fp1", "fp1-1", ex.execution_id)
    assert finished.execution.status is ExecutionStatus.SUCCEEDED and finished.episode == "fp1-1"


async def test_stop_undoes_kept_mitigations(engines):
    shed = Handler(A.LOAD_BALANCER_ADJUST, keep=True)
    engine = engines([shed], ScriptedVerifier(True), [procedure(shed.action)])
    await engine.execute_recovery(violation())
    assert shed.undone == 0
    assert engine.stop()
    assert shed.undone == 1 and engine.history()[0].actions[0].rollback_detail == "recovery engine stopped: undone"


async def test_a_stall_on_the_stream_runs_the_critical_procedure(engines):
    from aphrodite_sla.integrations.stall import stall_violation
    from aphrodite_sla.snapshot import StallState, StallStatus

    stream = EventStream()
    h = Handler(A.CIRCUIT_BREAKER_ACTIVATION)
    procs = [procedure(h.action, pid="latency", slas=("request_latency_p95",)),
             procedure(h.action, pid=CRITICAL_SYSTEM, severity_threshold=ViolationSeverity.CRITICAL)]
    engine = engines([h], ScriptedVerifier(True), procs)
    engine.attach(stream)
    status = StallStatus(StallState.STALLED, None, T0, 45.0, T0 - 15.0, T0 - 45.0, T0 - 45.0, 3, 3, 1, 0)
    stream.publish([StallDetected("stallfp", "stallfp-1", T0, stall_violation(T0, 45.0, 30.0, 15), status)])
    (ex,) = await eventually(engine.history)
    assert ex.procedure_id == CRITICAL_SYSTEM and ex.sla == "engine_stalled" and ex.severity is ViolationSeverity.CRITICAL


async def test_attach_end_to_end_with_a_real_manager_and_window_verification(engines):
    """A latency breach evaluated by a real SLAManager raises a violation on its stream; the engine
    runs, the handler makes latency healthy again, and WindowVerifier reads it back."""
    clock = ManualClock(T0)
    th = SLAThreshold("lat_p95", 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat", min_samples=5,
                      sample_rate_hz=100.0, min_evaluation_points=1, violation_threshold_percent=1)
    mgr = SLAManager([th], clock=clock, anomaly_detection=False, regression_interval_s=math.inf,
                     page_rules=PageRulesConfig(enabled=False))  # the sustained violation alone

    def heal() -> None:  # the action worked: latency is back at 50 ms from now on
        clock.advance(5.0)
        mgr.record_batch("lat", np.full(20, 50.0), np.full(20, clock()))

    fix = Handler(A.CACHE_INVALIDATION, on_apply=heal)
    engine = engines([fix], WindowVerifier(mgr, min_window_s=2.0), [procedure(fix.action, slas=("lat_p95",))], clock=clock)
    engine.attach(mgr.events)
    for _ in range(10):
        clock.advance(1.0)
        mgr.record_batch("lat", np.full(10, 400.0), np.full(10, clock()))
    assert mgr.evaluate()  # the ViolationRaised is delivered (and the run scheduled) before evaluate returns
    (ex,) = await eventually(lambda: [e for e in engine.history() if e.status.finished])
    assert ex.status is ExecutionStatus.SUCCEEDED and ex.sla == "lat_p95" and ex.triggered_at == T0 + 10
    assert "50 <= bound 120" in ex.actions[0].verification
    assert engine.stats().mttr_mean_s == pytest.approx(5.0)


# -- stats, escalation, reads ----------------------------------------------------------------------
async def test_stats_count_outcomes_and_measure_mttr_and_initiation_on_the_clock(engines):
    clock = ManualClock(T0)
    ok = Handler(A.CACHE_INVALIDATION, on_apply=lambda: clock.advance(20.0))
    engine = engines([ok], ScriptedVerifier(True, False), [procedure(ok.action, pid="fix")], clock=clock)
    clock.advance(2.0)
    first = await engine.execute_recovery(violation("a"), triggered_at=T0)  # started 2 s after its trigger, verified 20 s later
    clock.advance(100.0)
    await engine.execute_recovery(violation("b"), triggered_at=clock() - 4.0)  # unverified: FAILED
    engine.disable()
    await engine.execute_recovery(violation("c"))
    s = engine.stats()
    assert first.duration_s == pytest.approx(20.0)
    assert s.total == 3 and s.by_status == {"succeeded": 1, "failed": 1, "skipped": 1}
    assert s.by_procedure == {("fix", "succeeded"): 1, ("fix", "failed"): 1, ("fix", "skipped"): 1}
    assert s.success_rate_percent == pytest.approx(50.0)
    assert s.mttr_mean_s == pytest.approx(22.0) and s.mttr_median_s == pytest.approx(22.0)
    assert s.initiation_mean_s == pytest.approx(3.0) and s.initiation_p95_s == pytest.approx(4.0)
    buckets = dict(s.duration_buckets)
    assert s.duration_count == 2 and s.duration_sum_s == pytest.approx(40.0)
    assert buckets[10.0] == 0 and buckets[30.0] == 2 and buckets[math.inf] == 2 and len(buckets) == len(DURATION_BUCKETS_S)


async def test_failing_recoveries_escalate_once_after_escalate_after_s(engines):
    stream = EventStream()
    rec = Recorder(stream)
    clock = ManualClock(T0)
    h = Handler(A.CACHE_INVALIDATION)
    engine = engines([h], ScriptedVerifier(False), [procedure(h.action)], clock=clock, events=stream, escalate_after_s=100.0)
    for _ in range(4):
        await engine.execute_recovery(violation(), fingerprint="fp", episode="ep", triggered_at=clock())
        clock.advance(60.0)
    assert stream.drain()
    (esc,) = rec.of(ResponseEscalated)
    assert esc.fingerprint == "fp" and esc.failing_since == T0 and esc.occurred_at == T0 + 120.0
    assert "request_latency_p95" in esc.subject


async def test_reads_are_copies_and_the_version_moves(engines):
    h = Handler(A.CACHE_INVALIDATION)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action)])
    v0 = engine.version
    await engine.execute_recovery(violation())
    assert engine.version > v0
    got = engine.history()
    got[0].actions.clear()
    assert len(engine.history()[0].actions) == 1
    engine.add_procedure(procedure(A.TRAFFIC_ROUTING))  # replaces by id
    assert [p.actions for p in engine.procedures()] == [(A.TRAFFIC_ROUTING,)]
    with pytest.raises(TypeError):
        engine.add_procedure("latency_spike")  # type: ignore[arg-type]


async def test_skipped_runs_do_not_push_real_runs_out_of_the_history(engines):
    h = Handler(A.CACHE_INVALIDATION)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action, cooldown_seconds=60.0)], history_size=10)
    real = await engine.execute_recovery(violation())
    for _ in range(300):
        await engine.execute_recovery(violation())
    kept = engine.history()
    assert real.execution_id in [e.execution_id for e in kept] and len(kept) == 11
    assert engine.stats().by_status["skipped"] == 300


async def test_test_action_runs_one_action_by_hand_and_respects_advisory_mode(engines):
    h = Handler(A.CACHE_INVALIDATION)
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action)])
    result = await engine.test_action(A.CACHE_INVALIDATION, by="ops")
    assert result.outcome is ActionOutcome.SUCCEEDED and result.verified is None and h.violations == [None]
    engine.advisory = True
    assert (await engine.test_action(A.CACHE_INVALIDATION, by="ops")).outcome is ActionOutcome.ADVISORY
    assert h.applied == 1
    assert (await engine.test_action(A.DEPLOYMENT_ROLLBACK, by="ops")).outcome is ActionOutcome.NOT_AVAILABLE


def test_execute_recovery_runs_on_the_engine_thread_not_the_callers_loop(engines):
    threads: list[str] = []
    h = Handler(A.CACHE_INVALIDATION, on_apply=lambda: threads.append(threading.current_thread().name))
    engine = engines([h], ScriptedVerifier(True), [procedure(h.action)])
    ex: RecoveryExecution = asyncio.run(engine.execute_recovery(violation()))
    assert ex.status is ExecutionStatus.SUCCEEDED and threads == ["aphrodite-sla-recovery"]


def test_invalid_configuration_is_refused_by_name():
    with pytest.raises(ValueError, match="max_concurrent"):
        RecoveryEngine({}, None, verifier=ScriptedVerifier(), max_concurrent=0)
    with pytest.raises(ValueError, match="global_cooldown_s"):
        RecoveryEngine({}, None, verifier=ScriptedVerifier(), global_cooldown_s=-1)
