"""Graceful degradation: levels and their measures, transitions, history, events, the admission
policy it sets (and how it combines with recovery's shedding), thread safety."""
from __future__ import annotations

import itertools
import json
import random
import threading

import pytest

from aphrodite_sla import ManualClock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import DEGRADATION_ALERT, DegradationChanged, fingerprint
from aphrodite_sla.integrations.admission import AdmissionController, AdmissionLimits, AdmissionState
from aphrodite_sla.integrations.asgi import ServerState, SLAMiddleware
from aphrodite_sla.recovery.degradation import (
    ADMISSION_SOURCE,
    DegradationController,
    DegradationDisabled,
    DegradationLevel,
    DegradationLevels,
)
from aphrodite_sla.sla.threshold import ViolationSeverity

L = DegradationLevel


@pytest.fixture
def stream():
    events = EventStream()
    seen: list[DegradationChanged] = []
    events.subscribe(seen.append, DegradationChanged, name="test")
    yield events, seen
    events.close()


def controller(events=None, **kwargs):
    clock = ManualClock(1000.0)
    return DegradationController(AdmissionController(), events=events, clock=clock, **kwargs), clock


# -- levels ---------------------------------------------------------------------------------------
def test_levels_rank_and_default_measures_escalate():
    assert [lv.rank for lv in L] == [0, 1, 2, 3, 4]
    levels = DegradationLevels()
    steps = [levels.measures(lv) for lv in (L.MINIMAL, L.MODERATE, L.SEVERE, L.EMERGENCY)]
    for looser, stricter in itertools.pairwise(steps):
        assert looser.stricter(stricter) == stricter  # each level is at least as strict as the one below
        assert looser != stricter
    assert levels.measures(L.NONE) == AdmissionLimits.none()
    assert steps[0].max_tokens_cap == 2048 and steps[3].concurrency_limit == 64 and steps[2].shed_fraction == 0.25


def test_levels_configurable_and_validated():
    levels = DegradationLevels.from_dict({"minimal": {"max_tokens_cap": 4096}})
    assert levels.minimal == AdmissionLimits(max_tokens_cap=4096) and levels.severe == DegradationLevels().severe
    with pytest.raises(ValueError, match="catastrophic"):
        DegradationLevels.from_dict({"catastrophic": {"max_tokens_cap": 1}})
    with pytest.raises(ValueError, match=r"emergency.*close"):
        DegradationLevels(emergency=AdmissionLimits(closed=True))
    with pytest.raises(ValueError, match=r"minimal.*measure"):
        DegradationLevels(minimal=AdmissionLimits.none())
    with pytest.raises(ValueError, match="moderate"):
        DegradationLevels(moderate={"max_tokens_cap": 1})  # type: ignore[arg-type]
    ctrl, _ = controller(levels={"severe": {"shed_fraction": 0.1}})
    ctrl.activate(L.SEVERE, "test")
    assert ctrl.admission.limits == AdmissionLimits(shed_fraction=0.1)


# -- transitions -------------------------------------------------------------------------------------
def test_activate_sets_the_admission_policy_and_revert_lifts_it(stream):
    events, seen = stream
    ctrl, clock = controller(events)
    assert ctrl.activate("moderate", "ttft p95 3x bound", by="alice")
    assert ctrl.level is L.MODERATE and ctrl.admission.state is AdmissionState.LIMITED
    assert ctrl.admission.limits == DegradationLevels().moderate
    assert ctrl.admission.policy.reason == "degradation moderate: ttft p95 3x bound"
    assert ctrl.active() == {"max_tokens_cap": 1024, "max_prompt_tokens": 16384, "max_priority": 0, "retry_after_s": 10.0}
    assert not ctrl.activate(L.MODERATE, "again")  # no change, no record
    clock.advance(30)
    assert ctrl.activate(L.EMERGENCY, "kv cache exhausted")
    clock.advance(60)
    assert ctrl.revert("healthy again")
    assert not ctrl.revert("still healthy")
    assert ctrl.level is L.NONE and ctrl.admission.state is AdmissionState.OPEN and ctrl.active() == {}
    history = ctrl.history()
    assert [(h.old_level, h.new_level, h.changed_by, h.at) for h in history] == [
        (L.NONE, L.MODERATE, "alice", 1000.0), (L.MODERATE, L.EMERGENCY, "auto", 1030.0), (L.EMERGENCY, L.NONE, "auto", 1090.0)]
    assert [h.reason for h in ctrl.history(1)] == ["healthy again"] and ctrl.history(0) == []
    assert events.drain(5.0)
    assert [(e.old_level, e.new_level, e.reason, e.changed_by) for e in seen] == [
        ("none", "moderate", "ttft p95 3x bound", "alice"), ("moderate", "emergency", "kv cache exhausted", "auto"),
        ("emergency", "none", "healthy again", "auto")]
    assert {e.fingerprint for e in seen} == {fingerprint(DEGRADATION_ALERT)}
    assert len({e.episode for e in seen}) == 1 and seen[0].episode.endswith("-1000000")  # one episode: raise to revert
    ctrl.activate(L.MINIMAL, "again")
    assert events.drain(5.0) and seen[-1].episode != seen[0].episode  # a new episode


def test_severity_maps_to_a_level_and_never_lowers():
    ctrl, _ = controller()
    assert ctrl.activate_for_severity(ViolationSeverity.MINOR, "ttft minor")
    assert ctrl.level is L.MINIMAL
    assert ctrl.activate_for_severity("critical", "ttft critical")
    assert ctrl.level is L.SEVERE
    assert not ctrl.activate_for_severity(ViolationSeverity.MAJOR, "itl major")  # severe stays
    assert ctrl.level is L.SEVERE and len(ctrl.history()) == 2
    ctrl.activate(L.EMERGENCY, "by hand", by="bob")
    assert not ctrl.activate_for_severity("critical", "again") and ctrl.level is L.EMERGENCY
    with pytest.raises(ValueError, match="severity"):
        ctrl.activate_for_severity("fatal", "x")
    with pytest.raises(ValueError, match="level"):
        ctrl.activate("apocalypse", "x")
    with pytest.raises(ValueError, match="by"):
        ctrl.activate(L.MINIMAL, "x", by="")


def test_disabled_refuses_and_disabling_reverts():
    ctrl, _ = controller()
    ctrl.activate(L.SEVERE, "overload")
    ctrl.disable("maintenance", by="ops")
    assert not ctrl.enabled and ctrl.level is L.NONE and ctrl.admission.state is AdmissionState.OPEN
    assert ctrl.history()[-1].reason == "degradation disabled: maintenance" and ctrl.history()[-1].changed_by == "ops"
    with pytest.raises(DegradationDisabled, match="disabled"):
        ctrl.activate(L.MINIMAL, "by hand")
    assert not ctrl.activate_for_severity("critical", "auto")
    assert ctrl.level is L.NONE and len(ctrl.history()) == 2
    ctrl.enable()
    assert ctrl.activate(L.MINIMAL, "by hand")


def test_status_is_json_safe():
    ctrl, _ = controller()
    ctrl.activate(L.SEVERE, "overload", by="carol")
    status = json.loads(json.dumps(ctrl.status()))
    assert status["level"] == "severe" and status["rank"] == 3 and status["enabled"] is True
    assert status["changed_by"] == "carol" and status["measures"]["shed_fraction"] == 0.25
    assert status["levels"]["emergency"]["concurrency_limit"] == 64 and status["episode"]
    assert json.loads(json.dumps([h.to_dict() for h in ctrl.history()])) == [
        {"at": 1000.0, "old_level": "none", "new_level": "severe", "reason": "overload", "changed_by": "carol"}]


# -- with recovery's admission changes ---------------------------------------------------------------------
def test_the_stricter_of_degradation_and_recovery_is_enforced():
    ctrl, _ = controller()
    admission = ctrl.admission
    ctrl.activate(L.SEVERE, "overload")  # sheds 25%
    admission.shed(0.5, retry_after_s=20, reason="recovery: load balancer adjust")
    assert admission.limits.shed_fraction == 0.5 and admission.limits.max_tokens_cap == 512
    assert admission.limits.retry_after_s == 20
    admission.open()  # recovery's undo: degradation's measures stay
    assert admission.limits == DegradationLevels().severe
    admission.shed(0.1, reason="recovery")
    assert admission.limits.shed_fraction == 0.25  # degradation's is stricter
    ctrl.revert("healthy")  # recovery's shedding stays
    assert admission.limits == AdmissionLimits(shed_fraction=0.1) and set(admission.sources()) == {"admission"}
    assert ADMISSION_SOURCE == "degradation"


async def test_a_degraded_server_caps_max_tokens_on_the_way_in():
    seen: list[bytes] = []

    async def app(scope, receive, send):
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = ServerState()
    mw = SLAMiddleware(app, server=server)
    ctrl = DegradationController(server.admission)
    ctrl.activate(L.MODERATE, "test")  # no random shedding at this level
    messages = [{"type": "http.request", "body": b'{"prompt": "hi", "max_tokens": 4000}', "more_body": False}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        pass

    await mw({"type": "http", "path": "/v1/completions", "method": "POST", "headers": []}, receive, send)
    assert json.loads(seen[0]) == {"prompt": "hi", "max_tokens": 1024}


# -- thread safety -------------------------------------------------------------------------------------------
def test_changes_from_threads_keep_level_admission_history_and_events_consistent(stream):
    events, seen = stream
    ctrl, _ = controller(events)
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                choice = rng.random()
                if choice < 0.4:
                    ctrl.activate(rng.choice(list(L)), "t", by=f"thread{seed}")
                elif choice < 0.7:
                    ctrl.activate_for_severity(rng.choice(list(ViolationSeverity)), "sev")
                elif choice < 0.9:
                    ctrl.revert("r")
                else:
                    ctrl.admission.shed(rng.choice([0.0, 0.3]), reason="recovery")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sources = ctrl.admission.sources()
    assert sources.get(ADMISSION_SOURCE, (AdmissionLimits.none(), ""))[0] == ctrl.measures()
    history = ctrl.history()
    assert history[-1].new_level is ctrl.level
    assert all(a.new_level is b.old_level for a, b in itertools.pairwise(history))  # an unbroken chain
    assert events.drain(5.0)
    assert len(seen) >= len(history)  # bounded history; every change was published
    assert [e.new_level for e in seen[-len(history):]] == [h.new_level.value for h in history]
