"""Circuit breakers: configuration checks, each transition, the windows, listeners, the guarded-call
helpers, thread safety, the registry and its events, and a stateful test against a reference model."""
from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import BREAKER_ALERT, BreakerStateChanged, fingerprint
from aphrodite_sla.recovery.breaker import CircuitBreaker
from aphrodite_sla.recovery.breaker_model import BREAKER_STATE_CODE, BreakerConfig, BreakerState, CircuitOpenError
from aphrodite_sla.recovery.breaker_registry import MODEL_INFERENCE, BreakerRegistry

S = BreakerState


def make(clock: ManualClock | None = None, **overrides) -> tuple[CircuitBreaker, ManualClock]:
    clock = clock or ManualClock(1000.0)
    cfg = dict(name="svc", failure_threshold=3, success_threshold=2, open_timeout_s=10.0, minimum_calls=4, window_size=10)
    cfg.update(overrides)
    return CircuitBreaker(BreakerConfig(**cfg), clock=clock), clock


def fail(b: CircuitBreaker, n: int = 1, d: float = 0.1) -> None:
    for _ in range(n):
        assert b.allow()
        b.on_failure(d)


def succeed(b: CircuitBreaker, n: int = 1, d: float = 0.1) -> None:
    for _ in range(n):
        assert b.allow()
        b.on_success(d)


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("field_name", "value"), [
    ("name", ""), ("failure_threshold", 0), ("failure_threshold", 2.0), ("failure_threshold", True), ("success_threshold", 0),
    ("open_timeout_s", 0), ("open_timeout_s", math.inf), ("open_timeout_s", math.nan), ("window_kind", "sliding"),
    ("window_size", 0), ("window_size", 100_001), ("failure_rate_threshold", 0), ("failure_rate_threshold", 101),
    ("slow_call_duration_s", -1.0), ("slow_call_rate_threshold", math.nan), ("minimum_calls", 0), ("half_open_max_wait_s", -5),
])
def test_config_rejects_each_bad_field_by_name(field_name, value):
    cfg = dict(name="svc", failure_threshold=3, success_threshold=2, open_timeout_s=10.0)
    cfg[field_name] = value
    with pytest.raises(ValueError, match=field_name):
        BreakerConfig(**cfg)


def test_config_rejects_count_thresholds_a_count_window_cannot_reach():
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerConfig("svc", 11, 2, 10.0, window_size=10, minimum_calls=5)
    with pytest.raises(ValueError, match="minimum_calls"):
        BreakerConfig("svc", 3, 2, 10.0, window_size=10, minimum_calls=11)
    BreakerConfig("svc", 3, 2, 10.0, window_kind="time", window_size=5, minimum_calls=50)  # a time window can hold more


def test_state_codes_are_stable():
    assert {s.value: c for s, c in BREAKER_STATE_CODE.items()} == {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3, "disabled": 4}


# -- closed -> open ---------------------------------------------------------------------------------
def test_failures_in_window_open_it_and_successes_between_do_not_reset_the_count():
    b, _ = make(minimum_calls=10, failure_rate_threshold=100)
    fail(b)
    succeed(b)
    fail(b)
    succeed(b)
    assert b.state is S.CLOSED
    assert b.status().consecutive_failures == 0
    fail(b)
    assert b.state is S.OPEN
    assert "3 failures" in b.status().reason


def test_count_window_forgets_failures_pushed_out():
    b, _ = make(window_size=5, minimum_calls=5, failure_rate_threshold=100)
    fail(b, 2)
    succeed(b, 5)  # both failures leave the 5-call window
    st_ = b.status()
    assert (st_.calls_in_window, st_.failures_in_window) == (5, 0)
    fail(b, 2)
    assert b.state is S.CLOSED
    fail(b)
    assert b.state is S.OPEN


def test_failure_rate_needs_minimum_calls_and_a_success_can_complete_them():
    b, _ = make(failure_threshold=10, window_size=10, minimum_calls=6, failure_rate_threshold=50)
    fail(b, 3)
    succeed(b, 2)  # 3 of 5 failed: 60 %, but fewer than 6 calls
    assert b.state is S.CLOSED
    assert b.status().failure_rate == pytest.approx(60.0)
    succeed(b)  # 3 of 6: 50 %
    assert b.state is S.OPEN
    assert "failure rate 50.0%" in b.status().reason


def test_slow_call_rate_opens_it_and_slowness_is_ignored_when_off():
    b, _ = make(failure_threshold=10, minimum_calls=4, slow_call_duration_s=1.0, slow_call_rate_threshold=75)
    succeed(b, 1, d=0.5)
    succeed(b, 2, d=2.0)
    assert b.state is S.CLOSED
    assert b.status().slow_call_rate == pytest.approx(200.0 / 3)
    succeed(b, 1, d=1.5)  # 3 of 4 slow
    assert b.state is S.OPEN
    assert "slow-call rate 75.0%" in b.status().reason
    off, _ = make(failure_threshold=10, minimum_calls=4)
    succeed(off, 10, d=100.0)
    assert off.state is S.CLOSED
    assert off.status().slow_calls_in_window == 0


def test_time_window_forgets_seconds_that_leave_it():
    b, clock = make(window_kind="time", window_size=10, failure_threshold=3, minimum_calls=100)
    fail(b, 2)
    clock.advance(9.0)  # still within the 10 s window
    assert b.status().failures_in_window == 2
    clock.advance(1.0)  # the first second has left
    assert b.status().failures_in_window == 0
    fail(b, 2)
    assert b.state is S.CLOSED
    clock.advance(500.0)  # far past the window: everything goes
    assert b.status().calls_in_window == 0
    fail(b, 3)
    assert b.state is S.OPEN


# -- open, half-open ------------------------------------------------------------------------------
def test_open_denies_counts_and_turns_half_open_lazily_after_its_timeout():
    b, clock = make()
    fail(b, 3)
    assert not b.allow()
    assert not b.allow()
    assert b.status().rejected_total == 2
    clock.advance(4.0)
    assert b.retry_after_s() == pytest.approx(6.0)
    clock.advance(6.0)
    assert b.state is S.HALF_OPEN
    assert b.retry_after_s() == 0.0
    assert b.status().changed_at == pytest.approx(1010.0)  # when it became due, not when read


def test_half_open_permits_exactly_n_calls_and_n_successes_close_it():
    b, clock = make(success_threshold=3)
    fail(b, 3)
    clock.advance(10.0)
    assert [b.allow() for _ in range(5)] == [True, True, True, False, False]
    assert b.status().half_open_in_flight == 3
    b.on_success(0.1)
    b.on_success(0.1)
    assert b.state is S.HALF_OPEN
    b.on_success(0.1)
    assert b.state is S.CLOSED
    assert b.status().calls_in_window == 0  # a fresh window after closing


def test_a_failed_permitted_call_reopens_it_for_a_full_timeout():
    b, clock = make()
    fail(b, 3)
    clock.advance(10.0)
    assert b.allow()
    clock.advance(2.0)
    b.on_failure(0.1)
    assert b.state is S.OPEN
    assert b.retry_after_s() == pytest.approx(10.0)


def test_half_open_trial_with_slow_calls_reopens_it():
    b, clock = make(success_threshold=2, slow_call_duration_s=1.0, slow_call_rate_threshold=50, failure_threshold=3)
    fail(b, 3)
    clock.advance(10.0)
    succeed(b, 1, d=0.2)
    succeed(b, 1, d=3.0)
    assert b.state is S.OPEN
    assert "slow" in b.status().reason


def test_half_open_reopens_when_permitted_calls_never_report_back():
    b, clock = make(half_open_max_wait_s=30.0)
    fail(b, 3)
    clock.advance(100.0)  # a half-open breaker with no traffic waits: the deadline starts at the first permit
    assert b.state is S.HALF_OPEN
    assert b.allow()
    assert b.allow()
    assert not b.allow()
    assert b.retry_after_s() == pytest.approx(30.0)
    clock.advance(29.0)
    assert b.state is S.HALF_OPEN
    clock.advance(1.0)
    assert b.state is S.OPEN
    assert "did not report" in b.status().reason
    b.on_success(0.1)  # the lost call reports at last: not a trial result any more
    assert b.state is S.OPEN


def test_release_gives_a_half_open_permit_back():
    b, clock = make()
    fail(b, 3)
    clock.advance(10.0)
    assert b.allow() and b.allow()
    assert not b.allow()
    b.release()
    assert b.allow()


def test_late_reports_do_not_count_in_half_open_or_open():
    b, clock = make()
    fail(b, 3)
    b.on_failure(0.1)  # allowed while closed, reports while open
    b.on_success(0.1)
    clock.advance(10.0)
    b.on_success(0.1)  # no permit out: not a trial success
    b.on_failure(0.1)
    assert b.state is S.HALF_OPEN
    assert b.status().half_open_successes == 0


# -- forced open, disabled, reset, bad input -----------------------------------------------------
def test_forced_open_stays_until_reset_and_disabled_allows_and_records_nothing():
    b, clock = make()
    b.force_open("recovery action")
    clock.advance(1e6)
    assert b.state is S.FORCED_OPEN
    assert not b.allow()
    assert b.retry_after_s() == 10.0  # the open timeout as a hint: there is no deadline
    assert b.status().reason == "forced open: recovery action"
    b.disable()
    fail(b, 50)
    assert b.state is S.DISABLED
    assert b.status().calls_in_window == 0
    b.reset()
    assert b.state is S.CLOSED
    fail(b, 3)
    assert b.state is S.OPEN
    rejected = b.status().rejected_total
    b.reset()
    assert b.allow()
    assert b.status().rejected_total == rejected  # a counter that only grows


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, -math.inf, "fast", None, True])
def test_bad_durations_are_dropped_not_raised(bad):
    b, _ = make(failure_threshold=1)
    b.allow()
    b.on_success(bad)
    b.on_failure(bad)
    status = b.status()
    assert status.state is S.CLOSED
    assert (status.dropped_total, status.calls_in_window) == (2, 0)
    b.on_failure(2)  # an int is a fine duration
    assert b.state is S.OPEN


def test_status_to_dict_is_json_safe():
    b, _ = make()
    fail(b, 3)
    b.force_open()
    out = json.loads(json.dumps(b.status().to_dict(), allow_nan=False))
    assert out["state"] == "forced_open"
    assert out["state_code"] == 3
    assert out["config"]["failure_threshold"] == 3
    assert out["failure_rate"] == 100.0


# -- listeners -------------------------------------------------------------------------------------
def test_listeners_see_each_change_in_order_and_their_errors_are_counted():
    b, clock = make()
    seen: list[tuple[str, str, str]] = []
    b.add_listener(lambda name, old, new, reason: seen.append((name, old.value, new.value)))

    def broken(*_args):
        raise RuntimeError("listener bug")

    b.add_listener(broken)
    fail(b, 3)
    clock.advance(10.0)
    succeed(b, 2)
    b.reset()  # already closed: no change, no call
    assert seen == [("svc", "closed", "open"), ("svc", "open", "half_open"), ("svc", "half_open", "closed")]
    assert b.status().listener_errors == 3
    with pytest.raises(ValueError, match="callable"):
        b.add_listener("not callable")  # type: ignore[arg-type]


def test_a_listener_may_act_on_its_breaker():
    b, _ = make()
    seen: list[str] = []

    def reset_when_opened(name, old, new, reason):
        seen.append(new.value)
        if new is S.OPEN:
            b.reset("listener")

    b.add_listener(reset_when_opened)
    fail(b, 3)
    assert seen == ["open", "closed"]
    assert b.state is S.CLOSED


# -- guarded calls ---------------------------------------------------------------------------------
def test_call_counts_exceptions_as_failures_and_raises_circuit_open_error():
    b, clock = make()

    def boom():
        clock.advance(0.5)
        raise OSError("down")

    for _ in range(3):
        with pytest.raises(OSError):
            b.call(boom)
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: 1)
    assert info.value.retry_after_s == pytest.approx(10.0)
    assert info.value.state is S.OPEN
    clock.advance(10.0)
    assert b.call(lambda x: x * 2, 21) == 42


async def test_acall_succeeds_fails_and_releases_a_cancelled_permit():
    b, clock = make(success_threshold=1)

    async def ok(x):
        return x

    async def bad():
        raise RuntimeError("engine error")

    assert await b.acall(ok, 5) == 5
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await b.acall(bad)
    with pytest.raises(CircuitOpenError):
        await b.acall(ok, 1)
    clock.advance(10.0)
    started = asyncio.Event()

    async def hang():
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(b.acall(hang))
    await started.wait()
    assert not b.allow()  # the one permit is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.acall(ok, 7) == 7  # the permit came back; this trial call closes it
    assert b.state is S.CLOSED


# -- threads ---------------------------------------------------------------------------------------
def test_threads_never_get_more_than_n_half_open_permits():
    n_threads, rounds = 8, 200
    b, clock = make(success_threshold=3, failure_threshold=1)
    granted_in_trial: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    for _ in range(rounds):
        b.reset()
        fail(b)
        clock.advance(10.0)
        grants = []

        def worker():
            barrier.wait()
            ok = b.allow()
            with lock:
                grants.append(ok)

        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        granted_in_trial.append(sum(grants))
        assert b.status().half_open_in_flight == 3
    assert set(granted_in_trial) == {3}


def test_concurrent_reports_keep_the_window_totals_consistent():
    b, _ = make(window_size=1000, failure_threshold=1000, minimum_calls=1000, failure_rate_threshold=100)

    def worker(failing: bool):
        for _ in range(250):
            b.allow()
            (b.on_failure if failing else b.on_success)(0.01)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = b.status()
    assert (status.calls_in_window, status.failures_in_window) == (1000, 500)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_can_use_a_breaker_whose_lock_another_thread_held():
    b, _ = make()
    held, release = threading.Event(), threading.Event()

    def hold():
        with b._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        pid = os.fork()
        if pid == 0:  # child: the holder thread does not exist here
            signal.alarm(10)  # a deadlocked child dies (SIGALRM) instead of hanging the test
            try:
                b.force_open("child")
                os._exit(0 if b.status().state is S.FORCED_OPEN else 1)
            finally:
                os._exit(2)
        _, code = os.waitpid(pid, 0)
    finally:
        release.set()
        t.join()
    assert os.waitstatus_to_exitcode(code) == 0


# -- registry --------------------------------------------------------------------------------------
def test_registry_defaults_are_the_seeds_four():
    reg = BreakerRegistry.with_defaults(clock=ManualClock())
    got = {n: (s.config.failure_threshold, s.config.success_threshold, s.config.open_timeout_s) for n, s in reg.statuses().items()}
    assert got == {"aphrodite_engine": (5, 3, 60.0), "model_inference": (3, 2, 30.0), "kv_cache": (7, 4, 45.0), "deep_tree_echo": (4, 3, 90.0)}
    assert MODEL_INFERENCE in reg.names()


def test_registry_add_get_reset_force_open():
    clock = ManualClock()
    reg = BreakerRegistry.with_defaults(clock=clock)
    with pytest.raises(ValueError, match="kv_cache"):
        reg.add(BreakerConfig("kv_cache", 1, 1, 1.0, minimum_calls=1))
    with pytest.raises(KeyError, match="known: aphrodite_engine, deep_tree_echo, kv_cache, model_inference"):
        reg.get("nope")
    extra = reg.add(BreakerConfig("extra", 1, 1, 1.0, minimum_calls=1))
    assert reg.get("extra") is extra
    reg.force_open(MODEL_INFERENCE, "test")
    fail(reg.get("kv_cache"), 7)
    assert reg.get(MODEL_INFERENCE).state is S.FORCED_OPEN
    assert reg.get("kv_cache").state is S.OPEN
    reg.reset(MODEL_INFERENCE)
    assert reg.get(MODEL_INFERENCE).state is S.CLOSED
    reg.force_open("deep_tree_echo", "x")
    reg.reset_all()
    assert {s.state for s in reg.statuses().values()} == {S.CLOSED}


def test_registry_publishes_state_changes_with_one_episode_per_opening():
    clock = ManualClock(2000.0)
    reg = BreakerRegistry.with_defaults(clock=clock)
    stream = EventStream()
    events: list[BreakerStateChanged] = []
    stream.subscribe(events.append, BreakerStateChanged, name="test")
    reg.publish_to(stream, clock)
    late = reg.add(BreakerConfig("late", 1, 1, 5.0, minimum_calls=1))  # added after publish_to: published too
    mi = reg.get(MODEL_INFERENCE)
    fail(mi, 3)
    clock.advance(30.0)
    succeed(mi, 2)
    clock.advance(1.0)
    fail(mi, 3)
    fail(late)
    assert stream.drain(5.0)
    stream.close()
    mi_events = [e for e in events if e.service == MODEL_INFERENCE]
    assert [(e.old_state, e.new_state) for e in mi_events] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed"),
                                                                ("closed", "open")]
    assert {e.fingerprint for e in mi_events} == {fingerprint(BREAKER_ALERT, service=MODEL_INFERENCE)}
    assert len({e.episode for e in mi_events[:3]}) == 1
    assert mi_events[3].episode != mi_events[0].episode
    assert mi_events[0].occurred_at == 2000.0
    assert [e.service for e in events if e.service == "late"] == ["late"]


# -- stateful: the breaker against a plain reference model ------------------------------------------
@dataclass
class Model:
    """The breaker's rules written out plainly: a list of (time, failed, slow) for the window."""

    cfg: BreakerConfig
    state: S = S.CLOSED
    records: list[tuple[float, bool, bool]] = field(default_factory=list)
    opened_at: float = 0.0
    permitted: int = 0
    reported: int = 0
    successes: int = 0
    slow_successes: int = 0
    trial_started: float | None = None
    rejected: int = 0
    dropped: int = 0

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.cfg.window_kind == "count":
            return self.records[-self.cfg.window_size:]
        return [r for r in self.records if math.floor(r[0]) > math.floor(now) - self.cfg.window_size]

    def go(self, state: S, at: float) -> None:
        self.state = state
        self.permitted = self.reported = self.successes = self.slow_successes = 0
        self.trial_started = None
        if state in (S.OPEN, S.FORCED_OPEN):
            self.opened_at = at
        if state is S.CLOSED:
            self.records = []

    def tick(self, now: float) -> None:
        while True:
            if self.state is S.OPEN and now >= self.opened_at + self.cfg.open_timeout_s:
                self.go(S.HALF_OPEN, self.opened_at + self.cfg.open_timeout_s)
            elif (self.state is S.HALF_OPEN and self.trial_started is not None and self.permitted > self.reported
                  and now >= self.trial_started + self.cfg.half_open_max_wait_s):
                self.go(S.OPEN, self.trial_started + self.cfg.half_open_max_wait_s)
            else:
                return

    def allow(self, now: float) -> bool:
        self.tick(now)
        if self.state in (S.CLOSED, S.DISABLED):
            return True
        if self.state is S.HALF_OPEN and self.permitted < self.cfg.success_threshold:
            self.permitted += 1
            if self.trial_started is None:
                self.trial_started = now
            return True
        self.rejected += 1
        return False

    def report(self, now: float, failed: bool, duration: float) -> None:
        if self.state is S.DISABLED:
            return
        if not 0 <= duration < math.inf:
            self.dropped += 1
            return
        self.tick(now)
        cfg = self.cfg
        slow = not failed and cfg.slow_call_duration_s is not None and duration > cfg.slow_call_duration_s
        if self.state is S.CLOSED:
            self.records.append((now, failed, slow))
            win = self.window(now)
            n_fail = sum(r[1] for r in win)
            n_slow = sum(r[2] for r in win)
            if n_fail >= cfg.failure_threshold or (len(win) >= cfg.minimum_calls and (
                    100.0 * n_fail / len(win) >= cfg.failure_rate_threshold
                    or (cfg.slow_call_duration_s is not None and 100.0 * n_slow / len(win) >= cfg.slow_call_rate_threshold))):
                self.go(S.OPEN, now)
        elif self.state is S.HALF_OPEN and self.permitted > self.reported:
            self.reported += 1
            if failed:
                self.go(S.OPEN, now)
                return
            self.successes += 1
            self.slow_successes += slow
            n = cfg.success_threshold
            if self.successes == n:
                too_slow = cfg.slow_call_duration_s is not None and 100.0 * self.slow_successes / n >= cfg.slow_call_rate_threshold
                self.go(S.OPEN if too_slow else S.CLOSED, now)

    def release(self, now: float) -> None:
        self.tick(now)
        if self.state is S.HALF_OPEN and self.permitted > self.reported:
            self.permitted -= 1
            if self.permitted == 0:
                self.trial_started = None

    def retry_after(self, now: float) -> float:
        self.tick(now)
        if self.state is S.OPEN:
            return max(0.0, self.opened_at + self.cfg.open_timeout_s - now)
        if self.state is S.HALF_OPEN and self.permitted >= self.cfg.success_threshold and self.trial_started is not None:
            return max(0.0, self.trial_started + self.cfg.half_open_max_wait_s - now)
        if self.state is S.FORCED_OPEN:
            return self.cfg.open_timeout_s
        return 0.0


@st.composite
def configs(draw) -> BreakerConfig:
    kind = draw(st.sampled_from(["count", "time"]))
    size = draw(st.integers(1, 8))
    return BreakerConfig(
        name="model",
        failure_threshold=draw(st.integers(1, size if kind == "count" else 10)),
        success_threshold=draw(st.integers(1, 4)),
        open_timeout_s=draw(st.sampled_from([1.0, 2.5, 10.0])),
        window_kind=kind,
        window_size=size,
        failure_rate_threshold=draw(st.sampled_from([25.0, 50.0, 100.0])),
        slow_call_duration_s=draw(st.sampled_from([None, 0.5, 2.0])),
        slow_call_rate_threshold=draw(st.sampled_from([34.0, 50.0, 100.0])),
        minimum_calls=draw(st.integers(1, size if kind == "count" else 10)),
        half_open_max_wait_s=draw(st.sampled_from([0.5, 3.0, 20.0])),
    )


durations = st.one_of(st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]), st.sampled_from([math.nan, math.inf, -1.0]))


class BreakerMachine(RuleBasedStateMachine):
    @initialize(cfg=configs())
    def start(self, cfg: BreakerConfig) -> None:
        self.clock = ManualClock(500.0)
        self.breaker = CircuitBreaker(cfg, clock=self.clock)
        self.model = Model(cfg)
        self.changes: list[tuple[S, S]] = []
        self.breaker.add_listener(lambda _n, old, new, _r: self.changes.append((old, new)))

    @rule(failed=st.booleans(), d=durations)
    def call(self, failed: bool, d: float) -> None:
        """A request: allowed or not, and if allowed its outcome."""
        now = self.clock()
        allowed = self.breaker.allow()
        assert allowed == self.model.allow(now)
        if allowed:
            (self.breaker.on_failure if failed else self.breaker.on_success)(d)
            self.model.report(now, failed, d)

    @rule()
    def allow_only(self) -> None:
        """A request that is allowed and has not reported yet (or never will)."""
        assert self.breaker.allow() == self.model.allow(self.clock())

    @rule(failed=st.booleans(), d=durations)
    def late_report(self, failed: bool, d: float) -> None:
        """A report from an earlier allow_only (or a stale one the breaker must not count)."""
        (self.breaker.on_failure if failed else self.breaker.on_success)(d)
        self.model.report(self.clock(), failed, d)

    @rule(dt=st.sampled_from([0.1, 0.4, 0.9, 1.0, 2.5, 10.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    # reset and release weighted up: forced-open and disabled are left only by a reset
    @rule(op=st.sampled_from(["force_open", "disable", "reset", "reset", "reset", "release", "release"]))
    def operator(self, op: str) -> None:
        now = self.clock()
        if op == "force_open":
            self.breaker.force_open("test")
            self.model.go(S.FORCED_OPEN, now)
        elif op == "disable":
            self.breaker.disable()
            self.model.go(S.DISABLED, now)
        elif op == "reset":
            self.breaker.reset()
            self.model.go(S.CLOSED, now)
        else:
            self.breaker.release()
            self.model.release(now)

    @invariant()
    def agrees_with_the_model(self) -> None:
        now = self.clock()
        status = self.breaker.status()
        model = self.model
        assert status.retry_after_s == pytest.approx(model.retry_after(now))
        assert status.state is model.state
        assert status.rejected_total == model.rejected
        assert status.dropped_total == model.dropped
        assert status.half_open_permitted == model.permitted
        assert status.half_open_successes == model.successes
        if model.state is S.CLOSED:
            win = model.window(now)
            assert (status.calls_in_window, status.failures_in_window, status.slow_calls_in_window) == (
                len(win), sum(r[1] for r in win), sum(r[2] for r in win))
        assert status.half_open_permitted <= model.cfg.success_threshold
        # the listener saw a chain of changes ending in the current state
        if self.changes:
            assert self.changes[-1][1] is status.state
            assert all(a[1] is b[0] for a, b in zip(self.changes, self.changes[1:]))


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_breaker_matches_reference_model = BreakerMachine.TestCase
