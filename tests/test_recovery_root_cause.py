"""Recovery by the primary cause (``recovery.root_cause``): a confident ``RootCauseFound`` on the
stream switches the episode's procedure to the one its cause recommends; weak causes, insufficient
evidence, a resolved episode, maintenance and the switch turned off do nothing; approvals,
advisory mode and cooldowns still hold. The engine's handlers are small ones of our own (as in
``test_recovery_engine``); the RCA report is a real ``RCAAnalysis``."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.config import ConfigError, SLAConfig
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import (
    ApprovalRequested,
    RecoveryStarted,
    RootCauseFound,
    ViolationRaised,
    ViolationResolved,
)
from aphrodite_sla.rca.model import RCAAnalysis, Recommendation, RootCause
from aphrodite_sla.recovery.engine import RecoveryEngine
from aphrodite_sla.recovery.model import (
    ActionOutcome,
    ActionResult,
    ExecutionStatus,
    RecoveryAction,
    RecoveryExecution,
    RecoveryProcedure,
)
from aphrodite_sla.recovery.root_cause import RootCauseHook, RootCauseSettings, plan_switch, recommended_actions
from aphrodite_sla.sla.threshold import ViolationSeverity
from tests.test_recovery_engine import T0, Handler, Recorder, ScriptedVerifier, eventually, violation

A = RecoveryAction
FP, EPISODE = "fp-latency", "ep-1"
CAUSE = "slow_decode_after_deployment"


class HeldSleep:
    """The engine's settle wait: the first one is held until ``release()`` (the SLA's ladder is
    mid-rung when the cause arrives), later ones pass at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.released: asyncio.Event | None = None

    async def __call__(self, seconds: float) -> None:
        self.calls += 1
        if self.calls == 1:
            self.released = asyncio.Event()
            await self.released.wait()

    def release(self, engine: RecoveryEngine) -> None:
        if self.released is not None:
            engine.submit(_set(self.released)).result(5)


async def _set(event: asyncio.Event) -> None:
    event.set()


def analysis(cause: str = CAUSE, confidence: float = 0.92, actions: tuple[str, ...] = ("deployment_rollback",)) -> RCAAnalysis:
    primary = RootCause(cause, "application", "deployments", "A deployment preceded the incident", confidence, 4.2,
                        evidence_for=("deployment 41 s before onset", "step time 31 -> 55 ms"), evidence_against=())
    return RCAAnalysis("request_latency_p95", T0 + 40, T0 - 20, T0, primary,
                       recommendations=[Recommendation(a, "roll it back", cause) for a in actions], episode=EPISODE, fingerprint=FP)


def insufficient() -> RCAAnalysis:
    none = RootCause("insufficient_evidence", "", "", "no cause", 0.0, 0.0)
    return RCAAnalysis("request_latency_p95", T0 + 40, T0, T0, none, insufficient_reasons=["too little history"])


def found(a: RCAAnalysis, episode: str = EPISODE) -> RootCauseFound:
    p = a.primary_root_cause
    return RootCauseFound(FP, episode, T0 + 40, sla="request_latency_p95", cause=p.cause, category=p.category,
                          confidence=p.confidence, analysis=a)


class Rig:
    """An engine with a two-rung latency ladder, the rollback handler, a stream and the hook."""

    def __init__(self, *, settings: RootCauseSettings | None = None, rollback_approval: bool = False, advisory: bool = False) -> None:
        self.stream = EventStream()
        self.recorder = Recorder(self.stream)
        self.cache = Handler(A.CACHE_INVALIDATION)
        self.shed = Handler(A.LOAD_BALANCER_ADJUST)
        self.rollback = Handler(A.DEPLOYMENT_ROLLBACK, requires_approval=rollback_approval)
        self.sleep = HeldSleep()
        latency = RecoveryProcedure("latency", "latency", "test", (A.CACHE_INVALIDATION, A.LOAD_BALANCER_ADJUST),
                                    slas=("request_latency_p95",), settle_seconds=30.0, cooldown_seconds=0.0)
        self.engine = RecoveryEngine({h.action: h for h in (self.cache, self.shed, self.rollback)}, "target",
                                     verifier=ScriptedVerifier(True), clock=ManualClock(T0), procedures=[latency],
                                     global_cooldown_s=300.0, advisory=advisory, sleep=self.sleep)
        self.engine.attach(self.stream)
        self.maintenance = False  # the engine's maintenance window (set by a test)
        self.engine.in_maintenance = lambda: self.maintenance
        self.hook = RootCauseHook(self.engine, settings)
        self.hook.attach(self.stream)

    def raise_violation(self) -> None:
        self.stream.publish([ViolationRaised(FP, EPISODE, T0, violation())])

    def runs(self, procedure_id: str) -> list[RecoveryExecution]:
        return [e for e in self.engine.history() if e.procedure_id == procedure_id]

    def close(self) -> None:
        self.sleep.release(self.engine)
        self.stream.close()
        assert self.engine.stop(timeout=5.0)


@pytest.fixture
def rigs():
    made: list[Rig] = []

    def make(**kw: Any) -> Rig:
        rig = Rig(**kw)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


async def _mid_first_rung(rig: Rig) -> None:
    rig.raise_violation()
    await eventually(lambda: rig.cache.applied == 1 and rig.sleep.calls == 1)


async def test_a_confident_cause_supersedes_the_slas_ladder_and_runs_its_own(rigs):
    rig = rigs()
    await _mid_first_rung(rig)
    rig.stream.publish([found(analysis())])
    new = (await eventually(lambda: rig.runs(f"rca_{CAUSE}")))[0]
    old = rig.runs("latency")[0]
    assert old.status is ExecutionStatus.SUPERSEDED and f"superseded by rca_{CAUSE}" in old.reason
    assert new.status is ExecutionStatus.SUCCEEDED and [a.action for a in new.actions] == [A.DEPLOYMENT_ROLLBACK]
    assert rig.rollback.applied == 1 and rig.shed.applied == 0  # the latency ladder's next rung never ran
    basis = new.root_cause
    assert basis is not None and basis.cause == CAUSE and basis.confidence == pytest.approx(0.92)
    assert basis.replaced_procedure == "latency" and basis.replaced_execution == old.execution_id
    assert basis.evidence == ("deployment 41 s before onset", "step time 31 -> 55 ms") and basis.metric == "deployments"
    assert new.to_dict()["root_cause"]["cause"] == CAUSE  # what the API and the console show
    # the recorder is a stream subscriber: its copy arrives on its own thread, after the run
    started = await eventually(lambda: [e for e in rig.recorder.of(RecoveryStarted) if e.procedure_id == f"rca_{CAUSE}"])
    assert CAUSE in started[0].reason and "92%" in started[0].reason
    decision = rig.hook.decisions()[0]
    assert decision.acted and decision.execution_id == new.execution_id and decision.replaced_execution == old.execution_id


@pytest.mark.parametrize("make", [lambda: analysis(confidence=0.5), insufficient], ids=["weak", "insufficient"])
async def test_a_weak_cause_or_insufficient_evidence_changes_nothing(rigs, make):
    rig = rigs()
    await _mid_first_rung(rig)
    rig.hook.on_root_cause(found(make()))  # on this thread: the decision is recorded before it returns
    decision = rig.hook.decisions()[0]
    assert not decision.acted and ("below" in decision.reason or "insufficient" in decision.reason)
    rig.sleep.release(rig.engine)
    run = (await eventually(lambda: rig.runs("latency")))[0]
    assert run.status is ExecutionStatus.SUCCEEDED and rig.rollback.applied == 0 and not rig.runs(f"rca_{CAUSE}")


async def test_the_threshold_is_the_configured_one(rigs):
    rig = rigs(settings=RootCauseSettings(min_confidence=0.4))
    await _mid_first_rung(rig)
    rig.stream.publish([found(analysis(confidence=0.5))])
    assert (await eventually(lambda: rig.runs(f"rca_{CAUSE}")))[0].status is ExecutionStatus.SUCCEEDED


async def test_approvals_still_gate_the_causes_risky_action(rigs):
    rig = rigs(rollback_approval=True)
    await _mid_first_rung(rig)
    rig.stream.publish([found(analysis())])
    request = (await eventually(rig.engine.approvals.pending))[0]
    assert request.action is A.DEPLOYMENT_ROLLBACK and rig.rollback.applied == 0
    assert await eventually(lambda: any(e.request_id == request.request_id for e in rig.recorder.of(ApprovalRequested)))
    rig.engine.approvals.deny(request.request_id, "alice", "not now")
    new = (await eventually(lambda: rig.runs(f"rca_{CAUSE}")))[0]
    assert rig.rollback.applied == 0 and new.actions[0].outcome is ActionOutcome.DENIED and new.status is ExecutionStatus.FAILED


async def test_advisory_mode_records_the_switch_and_changes_nothing(rigs):
    rig = rigs(advisory=True)
    rig.raise_violation()
    await eventually(lambda: rig.runs("latency"))  # advisory walks the ladder at once
    rig.stream.publish([found(analysis())])
    new = (await eventually(lambda: rig.runs(f"rca_{CAUSE}")))[0]
    assert new.status is ExecutionStatus.ADVISORY and new.actions[0].outcome is ActionOutcome.ADVISORY
    assert rig.rollback.applied == 0 and rig.cache.applied == 0


async def test_a_cause_after_the_episode_resolved_does_nothing(rigs):
    rig = rigs()
    await _mid_first_rung(rig)
    rig.stream.publish([ViolationResolved(FP, EPISODE, T0 + 35, violation(), T0)])
    await eventually(lambda: EPISODE in rig.engine._resolved)
    rig.sleep.release(rig.engine)
    await eventually(lambda: rig.runs("latency"))
    rig.stream.publish([found(analysis())])
    decision = (await eventually(rig.hook.decisions))[0]
    assert not decision.acted and "resolved" in decision.reason
    assert rig.rollback.applied == 0 and not rig.runs(f"rca_{CAUSE}")


@pytest.mark.parametrize("kw, window, words", [({"settings": RootCauseSettings(enabled=False)}, False, "off"),
                                               ({}, True, "maintenance")], ids=["off", "maintenance"])
async def test_switched_off_or_in_maintenance_does_nothing(rigs, kw, window, words):
    rig = rigs(**kw)
    await _mid_first_rung(rig)
    rig.maintenance = window  # a window that opens while the violation's ladder runs
    rig.hook.on_root_cause(found(analysis()))
    assert words in rig.hook.decisions()[0].reason and not rig.hook.decisions()[0].acted
    assert rig.engine.active()[0].procedure_id == "latency"


async def test_a_cause_for_an_episode_recovery_never_saw_does_nothing(rigs):
    rig = rigs()
    rig.stream.publish([found(analysis(), episode="ep-unknown")])
    decision = (await eventually(rig.hook.decisions))[0]
    assert not decision.acted and "saw no violation" in decision.reason and rig.rollback.applied == 0


async def test_a_cause_whose_remedy_the_running_ladder_does_next_leaves_it_alone(rigs):
    rig = rigs()
    await _mid_first_rung(rig)
    rig.stream.publish([found(analysis(actions=("load_balancer_adjust",)))])
    decision = (await eventually(rig.hook.decisions))[0]
    assert not decision.acted and "runs load_balancer_adjust next" in decision.reason
    assert rig.engine.active()[0].procedure_id == "latency"


# -- the decision rule on its own -----------------------------------------------------------------
def _run(pid: str, actions: list[RecoveryAction], status: ExecutionStatus = ExecutionStatus.RUNNING,
         episode: str = EPISODE, sla: str = "request_latency_p95") -> RecoveryExecution:
    results = [ActionResult(a, ActionOutcome.UNVERIFIED, T0, 1.0) for a in actions]
    return RecoveryExecution(f"rec-{pid}", pid, sla, FP, episode, ViolationSeverity.MAJOR, status, T0, T0, actions=results)


def test_plan_switch_skips_what_was_tried_and_agrees_with_what_runs():
    ladder = (A.CACHE_INVALIDATION, A.LOAD_BALANCER_ADJUST, A.TRAFFIC_ROUTING)
    running = _run("latency", [A.CACHE_INVALIDATION])  # doing load_balancer_adjust now
    plan = plan_switch((A.MEMORY_CLEANUP, A.SERVICE_RESTART), [], running, ladder)
    assert plan.act and plan.actions == (A.MEMORY_CLEANUP, A.SERVICE_RESTART) and "instead of the rest of latency" in plan.reason
    assert not plan_switch((A.LOAD_BALANCER_ADJUST,), [], running, ladder).act  # doing it now
    assert "next" in plan_switch((A.CACHE_INVALIDATION, A.TRAFFIC_ROUTING), [], running, ladder).reason
    tried = plan_switch((A.CACHE_INVALIDATION, A.SERVICE_RESTART), [], running, ladder)
    assert tried.act and tried.actions == (A.SERVICE_RESTART,) and "cache_invalidation already tried" in tried.reason
    done = _run("other", [A.SERVICE_RESTART], ExecutionStatus.FAILED, episode="ep-0", sla="ttft_p95")
    assert not plan_switch((A.SERVICE_RESTART,), [done], None, ()).act  # another SLA's ladder restarted already
    won = _run("latency", [A.CACHE_INVALIDATION], ExecutionStatus.SUCCEEDED)
    assert "recovered already" in plan_switch((A.SERVICE_RESTART,), [won], None, (), episode=EPISODE).reason
    assert plan_switch((A.SERVICE_RESTART,), [], None, ()).actions == (A.SERVICE_RESTART,)


def test_unknown_recommendations_are_dropped_not_guessed():
    actions, unknown = recommended_actions(analysis(actions=("deployment_rollback", "reboot_the_datacenter", "rollback")))
    assert actions == (A.DEPLOYMENT_ROLLBACK,) and unknown == ["reboot_the_datacenter"]


def test_the_settings_are_validated_and_configurable():
    with pytest.raises(ValueError, match="min_confidence"):
        RootCauseSettings(min_confidence=float("nan"))
    with pytest.raises(ConfigError, match="recovery_root_cause_min_confidence"):
        SLAConfig(recovery_root_cause_min_confidence=1.5)
    with pytest.raises(ConfigError, match="recovery_use_root_cause"):
        SLAConfig(recovery_use_root_cause="yes")  # type: ignore[arg-type]
    from aphrodite_sla.config import load_config

    cfg = load_config({"APHRODITE_SLA_RECOVERY_USE_ROOT_CAUSE": "false", "APHRODITE_SLA_RECOVERY_ROOT_CAUSE_MIN_CONFIDENCE": "0.9"})
    assert cfg.recovery_use_root_cause is False and cfg.recovery_root_cause_min_confidence == 0.9


# -- wired into the monitor: configuration, the API, the console ----------------------------------
def test_the_recovery_system_wires_the_hook_from_the_configuration_and_serves_its_decisions():
    import json

    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.recovery.api_routing import ApiRequest

    ctx = MonitorContext.build(SLAConfig(system_sampler=False, recovery="act", recovery_root_cause_min_confidence=0.95),
                               clock=ManualClock(T0), with_rca=False)
    try:
        hook = ctx.recovery.root_cause
        assert hook.settings == RootCauseSettings(True, 0.95)
        ctx.events.publish([found(analysis(confidence=0.9))])
        assert ctx.events.drain(5.0)
        answer = ctx.recovery.api.handle(ApiRequest("GET", "/api/auto-recovery/root-cause", {"limit": "5"}))
        body = json.loads(answer.body)
        assert answer.status == 200 and body["min_confidence"] == 0.95
        assert body["decisions"][0]["cause"] == CAUSE and "below" in body["decisions"][0]["reason"]
        assert ctx.recovery.overview()["root_cause"]["enabled"] is True
        # exported: the view is rebuilt on every evaluation's SnapshotPublished; rebuilt here directly
        from prometheus_client import CollectorRegistry

        from aphrodite_sla.export.recovery_collector import RecoveryCollector

        ctx.recovery._publish_view()
        registry = CollectorRegistry()
        registry.register(RecoveryCollector(ctx.recovery.metrics_view, model_name="m"))
        labels = {"model_name": "m", "cause": CAUSE, "acted": "false"}
        assert registry.get_sample_value("recovery_root_cause_decisions_total", labels) == 1.0
        assert registry.get_sample_value("recovery_root_cause_decisions_total", {**labels, "acted": "true"}) is None
    finally:
        ctx.recovery.stop()
    off = MonitorContext.build(SLAConfig(system_sampler=False, recovery_use_root_cause=False), clock=ManualClock(T0), with_rca=False)
    try:
        assert off.recovery.root_cause.settings.enabled is False
    finally:
        off.recovery.stop()


def test_the_console_shows_why_a_root_cause_chose_the_procedure():
    from dataclasses import replace

    from aphrodite_sla.console.pages import executions_section
    from aphrodite_sla.recovery.root_cause import basis_of

    basis = replace(basis_of(found(analysis()), (A.DEPLOYMENT_ROLLBACK,)), decision="runs deployment_rollback")
    run = replace(_run(f"rca_{CAUSE}", [A.DEPLOYMENT_ROLLBACK], ExecutionStatus.SUCCEEDED), root_cause=basis)
    html = executions_section([run], True)
    assert f"chosen by root cause {CAUSE} (application, confidence 92%): runs deployment_rollback" in html
    assert "evidence: deployment 41 s before onset; step time 31 -&gt; 55 ms" in html
    assert "chosen by" not in executions_section([_run("latency", [A.CACHE_INVALIDATION])], True)


def test_an_advisory_walk_is_not_a_try():
    advised = _run("latency", [], ExecutionStatus.ADVISORY)
    advised.actions.append(ActionResult(A.CACHE_INVALIDATION, ActionOutcome.ADVISORY, T0, 0.0, "would apply"))
    assert plan_switch((A.CACHE_INVALIDATION,), [advised], None, ()).actions == (A.CACHE_INVALIDATION,)
