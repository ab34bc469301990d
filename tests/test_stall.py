"""StallDetector with a ManualClock: no tokens while running, no steps while in flight, idle engine,
resolution, stale running counts, gauges, callback isolation, bad inputs, the timer thread."""
from __future__ import annotations

import threading

import pytest

from aphrodite_sla import Direction, ManualClock, SLAManager, Statistic, ViolationSeverity
from aphrodite_sla.integrations.stall import (
    NO_PROGRESS_SERIES,
    STALLED_SERIES,
    StallDetector,
    StallReason,
    StallState,
)
from aphrodite_sla.self_metrics import Component
from aphrodite_sla.sla.threshold import ViolationRule


class Events:
    def __init__(self, det: StallDetector) -> None:
        self.stalls: list = []
        self.resolved: list = []
        det.register_callback(self.stalls.append)
        det.register_resolution_callback(lambda name, at: self.resolved.append((name, at)))


def make(**kw):
    clock = ManualClock()
    det = StallDetector(clock=clock, **kw)
    return det, clock, Events(det)


def run(det: StallDetector, clock: ManualClock, seconds: int, *, running: int | None = None, tokens: int = 0) -> list[StallState]:
    """Advance one second at a time; feed a record each second when ``running`` is given; check."""
    states = []
    for _ in range(seconds):
        clock.advance(1.0)
        if running is not None:
            det.on_record(None, running, tokens)
        states.append(det.check().state)
    return states


def values(manager: SLAManager, name: str) -> list[float]:
    return manager.store.buffer(name).window(0.0, 1e12)[1].tolist()


def test_running_without_tokens_stalls_after_30s_not_before():
    det, clock, ev = make()
    start = clock()
    det.on_record(None, 2, 0)
    clock.advance(29.9)
    det.on_record(None, 2, 0)  # steps keep coming, but nothing is generated
    assert det.check().state is StallState.OK and ev.stalls == []
    clock.advance(0.1)
    status = det.check()
    assert status.state is StallState.STALLED and status.reason is StallReason.NO_TOKENS
    assert len(ev.stalls) == 1
    v = ev.stalls[0]
    assert v.metric_name == "engine_stalled" and v.severity is ViolationSeverity.CRITICAL
    assert v.statistic is Statistic.MAX and v.direction is Direction.UPPER and v.rule is ViolationRule.STALL
    assert v.source_metric == NO_PROGRESS_SERIES and "no engine progress for 30s" in v.message
    assert v.observed_value == pytest.approx(30.0) and v.bound == 30.0
    assert v.detected_at == clock() and v.first_breach_time == pytest.approx(start + 30.0)
    clock.advance(5.0)
    assert det.stalled_for_s == pytest.approx(35.0)
    run(det, clock, 20, running=2, tokens=0)
    assert len(ev.stalls) == 1  # one violation per stall, not one per check


def test_tokens_flowing_never_stall():
    det, clock, ev = make()
    states = run(det, clock, 300, running=8, tokens=16)
    assert set(states) == {StallState.OK} and ev.stalls == []
    assert det.stalled_for_s == 0.0


def test_prompt_tokens_count_as_progress():
    """A long chunked prefill generates nothing for a while, yet it is progress."""
    det, clock, ev = make()
    for _ in range(60):
        clock.advance(1.0)
        det.on_record(None, 1, 0, num_prompt_tokens=2048)
        det.check()
    assert ev.stalls == []


def test_no_records_with_running_requests_stalls_no_steps():
    det, clock, ev = make()
    det.on_record(None, 3, 12)
    assert run(det, clock, 29)[-1] is StallState.OK
    status = det.check(clock.advance(1.0))
    assert status.state is StallState.STALLED and status.reason is StallReason.NO_STEPS
    assert len(ev.stalls) == 1


def test_no_records_with_http_requests_in_flight_stalls():
    in_flight = [0]
    det, clock, ev = make(in_flight=lambda: in_flight[0])
    det.on_record(None, 0, 0)
    run(det, clock, 3600)  # an hour idle
    assert ev.stalls == []
    in_flight[0] = 2  # requests arrive; the engine never steps
    states = run(det, clock, 31)
    assert states[28] is StallState.OK and states[30] is StallState.STALLED  # 30 s after arrival
    assert det.status.reason is StallReason.NO_STEPS and det.status.in_flight_requests == 2


def test_pushed_in_flight_count_works_too():
    det, clock, ev = make()
    det.on_requests_in_flight(1)
    det.check()
    clock.advance(30.0)
    assert det.check().state is StallState.STALLED


def test_idle_engine_never_stalls():
    det, clock, ev = make(in_flight=lambda: 0)
    det.on_record(None, 0, 0)
    assert set(run(det, clock, 7200)) == {StallState.OK}
    det2, clock2, ev2 = make()  # nothing ever recorded, no in-flight source
    assert set(run(det2, clock2, 600)) == {StallState.OK}
    assert ev.stalls == [] and ev2.stalls == []


def test_busy_after_long_idle_counts_from_arrival():
    det, clock, ev = make()
    det.on_record(None, 1, 5)
    det.on_record(None, 0, 1)
    run(det, clock, 600)  # idle
    det.on_record(None, 1, 0)  # a new request starts (prefill not yet done)
    assert run(det, clock, 29)[-1] is StallState.OK
    assert run(det, clock, 1)[-1] is StallState.STALLED


def test_resolution_when_tokens_flow_again():
    det, clock, ev = make()
    det.on_record(None, 1, 0)
    run(det, clock, 40, running=1, tokens=0)
    assert det.state is StallState.STALLED and ev.resolved == []
    clock.advance(1.0)
    det.on_record(None, 1, 4)
    status = det.check()
    assert status.state is StallState.OK and det.stalled_for_s == 0.0
    assert ev.resolved == [("engine_stalled", clock())]
    run(det, clock, 10, running=1, tokens=4)
    assert len(ev.resolved) == 1 and status.stalls_total == 1


def test_resolution_when_engine_goes_idle():
    det, clock, ev = make()
    det.on_record(None, 1, 0)
    run(det, clock, 31)
    assert det.state is StallState.STALLED
    det.on_record(None, 0, 0)  # the stuck requests were aborted
    assert det.check(clock.advance(1.0)).state is StallState.OK
    assert len(ev.resolved) == 1


def test_stale_running_count_ignored_when_nothing_in_flight():
    """After aborts the last record may still say running > 0 while the engine is idle."""
    in_flight = [1]
    det, clock, ev = make(in_flight=lambda: in_flight[0])
    det.on_record(None, 1, 5)
    det.check()
    in_flight[0] = 0  # the client went away; no further engine record comes
    assert set(run(det, clock, 300)) == {StallState.OK} and ev.stalls == []
    # Records after that moment count again (work the middleware does not see).
    det.on_record(None, 2, 0)
    assert run(det, clock, 30, running=2, tokens=0)[-1] is StallState.STALLED


def test_gauges_recorded_into_manager():
    clock = ManualClock()
    manager = SLAManager(clock=clock)
    det = StallDetector(manager, clock=clock)
    det.on_record(None, 1, 0)
    run(det, clock, 31)
    stalled = values(manager, STALLED_SERIES)
    assert stalled[:29] == [0.0] * 29 and stalled[-1] == 1.0
    assert values(manager, NO_PROGRESS_SERIES)[-1] == pytest.approx(31.0)
    assert manager.store.spec(STALLED_SERIES).max_value == 1.0


def test_callback_errors_caught_and_counted():
    det, clock, ev = make()
    calls = []

    def bad(_):
        raise RuntimeError("pager down")

    det.register_callback(bad)
    det.register_callback(calls.append)
    det.on_record(None, 1, 0)
    run(det, clock, 31)
    assert len(calls) == 1 and len(ev.stalls) == 1
    det.check()
    assert det.self_metrics.errors_of(Component.SUBSCRIBER) == 1


def test_bad_inputs_are_counted_drops():
    det, clock, ev = make()
    det.on_record(None, "many", 1)  # type: ignore[arg-type]
    det.on_record(float("nan"), 1, 1)
    det.on_record(None, -1, 0)
    det.on_record(None, 1, "x")  # type: ignore[arg-type]
    det.on_requests_in_flight("x")  # type: ignore[arg-type]
    status = det.check()
    assert status.dropped_inputs == 5 and status.running_requests == 0 and status.last_record_at is None
    det.on_record(None, None, None)  # "not reported": a step with unknown counts is still a step
    assert det.check().last_record_at == clock()


def test_in_flight_source_unknown_falls_back_to_engine_view():
    det, clock, ev = make(in_flight=lambda: None)  # e.g. no SLAMiddleware installed
    det.on_record(None, 1, 5)
    states = run(det, clock, 30)  # the engine hangs: records stop
    assert states[28] is StallState.OK and states[29] is StallState.STALLED
    assert det.status.reason is StallReason.NO_STEPS


def test_in_flight_source_failure_is_contained():
    def broken():
        raise RuntimeError("gone")

    det, clock, ev = make(in_flight=broken)
    det.on_record(None, 1, 0)
    assert run(det, clock, 31)[-1] is StallState.STALLED  # falls back to the engine's view


def test_validation():
    for bad in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError):
            StallDetector(stall_after_s=bad)
        with pytest.raises(ValueError):
            StallDetector(interval_s=bad)


def test_thread_checks_and_stops_cleanly():
    clock = ManualClock()
    det = StallDetector(clock=clock, interval_s=0.01)
    fired = threading.Event()
    det.register_callback(lambda v: fired.set())
    det.on_record(None, 1, 0)
    clock.advance(60.0)
    det.start()
    det.start()  # idempotent
    assert [t.name for t in threading.enumerate()].count("aphrodite-sla-stall-detector") == 1 and det.is_running
    assert fired.wait(5.0), "the timer thread never checked"
    assert det.state is StallState.STALLED
    assert det.stop(timeout=5.0) is True and not det.is_running and det.stop() is True
    assert not [t for t in threading.enumerate() if t.name == "aphrodite-sla-stall-detector"]
