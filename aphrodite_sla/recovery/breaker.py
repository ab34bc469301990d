"""A circuit breaker: CLOSED / OPEN / HALF_OPEN plus FORCED_OPEN and DISABLED, over a count- or
time-based sliding window (policy in ``BreakerConfig``).

Why written here rather than taken from pybreaker, aiobreaker or purgatory: none of them has
sliding windows, rates, slow calls, minimum calls, N half-open permits, a half-open deadline or
the two explicit states, and none is both thread-safe and usable from an event loop without
holding a lock across the guarded call (see the README's "Circuit breakers").

Hot path: ``allow()`` runs on the engine's event loop for every request. In CLOSED (and DISABLED)
it is one attribute read, no lock. Every state change happens under the breaker's lock, so the
event loop, the recovery thread and the API thread may call it at once. Time-driven transitions
(OPEN past its timeout, a half-open trial past its deadline) are applied lazily, on the next
``allow``/``state``/``status``/``retry_after_s``, at the time they became due.

Reports are counted for the state they arrive in: in HALF_OPEN only as many as permits were
handed out (a late report of a call allowed while CLOSED is not a trial result), and none in OPEN,
FORCED_OPEN or DISABLED. The breaker cannot tell which call a report belongs to (``allow`` returns
a bool); a call that ends with no outcome (cancelled) should ``release()`` its permit.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.breaker_model import (
    BreakerConfig,
    BreakerListener,
    BreakerState,
    BreakerStatus,
    CircuitOpenError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED
_INF = math.inf


class _CountWindow:
    """The outcomes of the last ``size`` calls, with running totals (O(1) per call)."""

    __slots__ = ("_pos", "_ring", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.clear()

    def clear(self) -> None:
        self._ring = [-1] * self.size  # -1 empty, else bit 0 failed, bit 1 slow
        self._pos = 0
        self.calls = self.failures = self.slow = 0

    def advance(self, now: float) -> None:
        """A count window does not age."""

    def record(self, failed: bool, slow: bool, now: float) -> None:
        code = int(failed) | (int(slow) << 1)
        pos = self._pos
        old = self._ring[pos]
        if old < 0:
            self.calls += 1
        else:
            self.failures -= old & 1
            self.slow -= old >> 1
        self._ring[pos] = code
        self.failures += code & 1
        self.slow += code >> 1
        self._pos = pos + 1 if pos + 1 < self.size else 0


class _TimeWindow:
    """The calls of the last ``size`` whole seconds, one bucket per second, running totals; a bucket
    is emptied when its second leaves the window (amortised O(1) per call)."""

    __slots__ = ("_calls", "_failures", "_head", "_slow", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.clear()

    def clear(self) -> None:
        self._calls = [0] * self.size
        self._failures = [0] * self.size
        self._slow = [0] * self.size
        self._head: int | None = None  # the newest second the buckets describe
        self.calls = self.failures = self.slow = 0

    def advance(self, now: float) -> None:
        sec = math.floor(now)
        head = self._head
        if head is None:
            self._head = sec
            return
        if sec <= head:
            return
        size = self.size
        for s in range(head + 1, head + 1 + min(sec - head, size)):
            i = s % size
            self.calls -= self._calls[i]
            self.failures -= self._failures[i]
            self.slow -= self._slow[i]
            self._calls[i] = self._failures[i] = self._slow[i] = 0
        self._head = sec

    def record(self, failed: bool, slow: bool, now: float) -> None:
        self.advance(now)
        assert self._head is not None
        i = self._head % self.size  # a clock that stepped back lands in the newest bucket
        self._calls[i] += 1
        self.calls += 1
        if failed:
            self._failures[i] += 1
            self.failures += 1
        if slow:
            self._slow[i] += 1
            self.slow += 1


class CircuitBreaker:
    """One breaker (see the module docstring and ``BreakerConfig`` for the semantics)."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(config, BreakerConfig):
            raise ValueError(f"CircuitBreaker.config: a BreakerConfig is required, got {type(config).__name__}")
        if not callable(clock):
            raise ValueError("CircuitBreaker.clock: a callable returning seconds is required")
        self.config = config
        self.name = config.name
        self._clock = clock
        self._lock = threading.Lock()
        self._window: _CountWindow | _TimeWindow = (
            _CountWindow(config.window_size) if config.window_kind == "count" else _TimeWindow(config.window_size)
        )
        self._slow_s = _INF if config.slow_call_duration_s is None else float(config.slow_call_duration_s)
        self._state = _CLOSED
        self._reason = ""
        self._changed_at: float | None = None
        self._opened_at: float | None = None
        self._consecutive_failures = 0
        # the current half-open trial
        self._permitted = 0
        self._reported = 0
        self._successes = 0
        self._trial_slow = 0
        self._trial_started: float | None = None
        # counters that only grow
        self._rejected = 0
        self._dropped = 0
        self._listener_errors = 0
        self._listeners: tuple[BreakerListener, ...] = ()
        self._pending: list[tuple[BreakerState, BreakerState, str]] = []
        self._notify_lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # a lock held by another thread at fork() stays held in the child: new ones
        self._lock = threading.Lock()
        self._notify_lock = threading.Lock()

    # -- hot path ----------------------------------------------------------------------------------
    def allow(self) -> bool:
        """May a call go ahead? CLOSED and DISABLED: yes, without a lock. HALF_OPEN: while one of
        the ``success_threshold`` permits is left (this call takes it). Otherwise no (counted)."""
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return True
        return self._allow_locked()

    def _allow_locked(self) -> bool:
        with self._lock:
            now = self._clock()
            self._advance(now)
            state = self._state
            if state is _CLOSED or state is _DISABLED:
                allowed = True
            elif state is _HALF_OPEN and self._permitted < self.config.success_threshold:
                self._permitted += 1
                if self._trial_started is None:
                    self._trial_started = now
                allowed = True
            else:
                self._rejected += 1
                allowed = False
        if self._pending:
            self._notify()
        return allowed

    def on_success(self, duration_s: float) -> None:
        """An allowed call succeeded in ``duration_s`` seconds (slower than slow_call_duration_s: slow)."""
        if self._state is _DISABLED:
            return
        if type(duration_s) is not float or not 0.0 <= duration_s < _INF:
            duration_s = self._checked(duration_s)
            if duration_s < 0:
                return
        self._report(False, duration_s > self._slow_s)

    def on_failure(self, duration_s: float) -> None:
        """An allowed call failed after ``duration_s`` seconds."""
        if self._state is _DISABLED:
            return
        if (type(duration_s) is not float or not 0.0 <= duration_s < _INF) and self._checked(duration_s) < 0:
            return
        self._report(True, False)

    def release(self) -> None:
        """An allowed call ended with no outcome (cancelled by its client): in HALF_OPEN its permit
        goes back, so the trial is not left waiting for it; otherwise nothing happens."""
        with self._lock:
            self._advance(self._clock())
            if self._state is _HALF_OPEN and self._permitted > self._reported:
                self._permitted -= 1
                if self._permitted == 0:
                    self._trial_started = None
        if self._pending:
            self._notify()

    def _checked(self, duration_s: object) -> float:
        """A valid duration as float, or -1.0 after counting it as dropped (never raises)."""
        try:
            value = float(duration_s)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(duration_s, bool) or not 0.0 <= value < _INF:
            with self._lock:
                self._dropped += 1
            return -1.0
        return value

    def _report(self, failed: bool, slow: bool) -> None:
        with self._lock:
            now = self._clock()
            state = self._state
            if state is not _CLOSED:  # CLOSED has no time-driven transition
                self._advance(now)
                state = self._state
            if state is _CLOSED:
                window = self._window
                window.record(failed, slow, now)
                if failed:
                    self._consecutive_failures += 1
                else:
                    self._consecutive_failures = 0
                # checked after every call: a success can bring the window up to minimum_calls
                self._check_window(now)
            elif state is _HALF_OPEN and self._permitted > self._reported:
                self._reported += 1
                if failed:
                    self._transition(_OPEN, now, "half-open: a permitted call failed")
                else:
                    self._successes += 1
                    self._trial_slow += slow
                    n = self.config.success_threshold
                    if self._successes >= n:
                        slow_rate = 100.0 * self._trial_slow / n
                        if self._slow_s < _INF and slow_rate >= self.config.slow_call_rate_threshold:
                            self._transition(_OPEN, now, f"half-open: {self._trial_slow} of {n} permitted calls were slow "
                                                         f"({slow_rate:.1f}% >= {self.config.slow_call_rate_threshold}%)")
                        else:
                            self._transition(_CLOSED, now, f"half-open: {n} permitted calls succeeded")
            # OPEN, FORCED_OPEN, or a half-open report with no permit out: a late report, not counted
        if self._pending:
            self._notify()

    def _check_window(self, now: float) -> None:
        cfg = self.config
        win = self._window
        if win.failures >= cfg.failure_threshold:
            self._transition(_OPEN, now, f"{win.failures} failures in the window >= failure_threshold {cfg.failure_threshold}")
            return
        calls = win.calls
        if calls < cfg.minimum_calls:
            return
        failure_rate = 100.0 * win.failures / calls
        if failure_rate >= cfg.failure_rate_threshold:
            self._transition(_OPEN, now, f"failure rate {failure_rate:.1f}% >= {cfg.failure_rate_threshold}% over {calls} calls")
            return
        if self._slow_s < _INF:
            slow_rate = 100.0 * win.slow / calls
            if slow_rate >= cfg.slow_call_rate_threshold:
                self._transition(_OPEN, now, f"slow-call rate {slow_rate:.1f}% >= {cfg.slow_call_rate_threshold}% over {calls} calls")

    # -- time-driven transitions and the transition itself (under the lock) ------------------------
    def _advance(self, now: float) -> None:
        """Apply the transitions that became due by ``now``, each at the time it became due."""
        while True:
            state = self._state
            if state is _OPEN:
                assert self._opened_at is not None
                due = self._opened_at + self.config.open_timeout_s
                if now < due:
                    return
                self._transition(_HALF_OPEN, due, f"open_timeout_s {self.config.open_timeout_s:g} elapsed")
            elif state is _HALF_OPEN and self._trial_started is not None and self._permitted > self._reported:
                due = self._trial_started + self.config.half_open_max_wait_s
                if now < due:
                    return
                self._transition(_OPEN, due, f"half-open: {self._permitted - self._reported} permitted calls did not report "
                                              f"within half_open_max_wait_s {self.config.half_open_max_wait_s:g}")
            else:
                return

    def _transition(self, new: BreakerState, at: float, reason: str) -> None:
        old = self._state
        self._state = new
        self._reason = reason
        self._changed_at = at
        self._permitted = self._reported = self._successes = self._trial_slow = 0
        self._trial_started = None
        if new is _OPEN or new is _FORCED_OPEN:
            self._opened_at = at
        elif new is _CLOSED or new is _DISABLED:
            self._opened_at = None
        if new is _CLOSED:
            self._window.clear()
            self._consecutive_failures = 0
        if old is not new and self._listeners:
            self._pending.append((old, new, reason))

    # -- operator controls ----------------------------------------------------------------------------
    def reset(self, reason: str = "reset") -> None:
        """Back to CLOSED from any state, with an empty window (counters that only grow stay)."""
        self._set(_CLOSED, reason)

    def force_open(self, reason: str = "") -> None:
        """Deny every call until ``reset()`` (a recovery action, an operator)."""
        self._set(_FORCED_OPEN, f"forced open: {reason}" if reason else "forced open")

    def disable(self, reason: str = "") -> None:
        """Allow every call and record nothing until ``reset()``."""
        self._set(_DISABLED, f"disabled: {reason}" if reason else "disabled")

    def _set(self, new: BreakerState, reason: str) -> None:
        with self._lock:
            self._transition(new, self._clock(), reason)
        if self._pending:
            self._notify()

    # -- listeners -----------------------------------------------------------------------------------
    def add_listener(self, callback: BreakerListener) -> None:
        """Call ``callback(name, old_state, new_state, reason)`` on every state change, in order, on
        the thread that caused it, outside the breaker's lock (a listener may read or reset the
        breaker). A listener that raises is logged and counted, never raised into the caller."""
        if not callable(callback):
            raise ValueError(f"CircuitBreaker.add_listener: callback must be callable, got {callback!r}")
        with self._lock:
            self._listeners = (*self._listeners, callback)

    def _notify(self) -> None:
        # One thread delivers at a time, in order. A thread that finds another delivering leaves its
        # transitions to it; the deliverer looks again after letting go, so none is left behind.
        while self._pending:
            if not self._notify_lock.acquire(blocking=False):
                return
            try:
                while True:
                    with self._lock:
                        batch, self._pending = self._pending, []
                        listeners = self._listeners
                    if not batch:
                        break
                    for old, new, reason in batch:
                        for listener in listeners:
                            try:
                                listener(self.name, old, new, reason)
                            except Exception:
                                with self._lock:
                                    self._listener_errors += 1
                                log.exception("circuit breaker %r: listener %r raised", self.name, listener)
            finally:
                self._notify_lock.release()

    # -- reading -------------------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        state = self._state
        if state is _CLOSED or state is _DISABLED or state is _FORCED_OPEN:
            return state
        with self._lock:
            self._advance(self._clock())
            state = self._state
        if self._pending:
            self._notify()
        return state

    def retry_after_s(self) -> float:
        """Seconds until a call may pass: the open time left in OPEN; in HALF_OPEN 0 while a permit is
        left, else the time left to the trial's deadline; in FORCED_OPEN (no timeout) open_timeout_s
        as a hint; 0 in CLOSED and DISABLED."""
        if self._state is _CLOSED or self._state is _DISABLED:
            return 0.0
        with self._lock:
            now = self._clock()
            self._advance(now)
            value = self._retry_after(now)
        if self._pending:
            self._notify()
        return value

    def _retry_after(self, now: float) -> float:
        state = self._state
        if state is _OPEN:
            assert self._opened_at is not None
            return max(0.0, self._opened_at + self.config.open_timeout_s - now)
        if state is _HALF_OPEN:
            if self._permitted < self.config.success_threshold or self._trial_started is None:
                return 0.0
            return max(0.0, self._trial_started + self.config.half_open_max_wait_s - now)
        if state is _FORCED_OPEN:
            return float(self.config.open_timeout_s)
        return 0.0

    def status(self) -> BreakerStatus:
        """A consistent copy of the state, window and counters."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            win = self._window
            if self._state is _CLOSED:
                win.advance(now)
            calls = win.calls
            status = BreakerStatus(
                name=self.name,
                state=self._state,
                failure_rate=100.0 * win.failures / calls if calls else None,
                slow_call_rate=100.0 * win.slow / calls if calls else None,
                calls_in_window=calls,
                failures_in_window=win.failures,
                slow_calls_in_window=win.slow,
                consecutive_failures=self._consecutive_failures,
                half_open_permitted=self._permitted,
                half_open_successes=self._successes,
                half_open_in_flight=self._permitted - self._reported,
                opened_at=self._opened_at,
                changed_at=self._changed_at,
                retry_after_s=self._retry_after(now),
                rejected_total=self._rejected,
                dropped_total=self._dropped,
                listener_errors=self._listener_errors,
                reason=self._reason,
                config=self.config,
            )
        if self._pending:
            self._notify()
        return status

    # -- guarded calls -------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` if allowed (else ``CircuitOpenError``); an exception it raises is a failure."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.state, self.retry_after_s())
        clock = self._clock
        t0 = clock()
        try:
            result = fn(*args, **kwargs)
        except Exception:
            self.on_failure(max(0.0, clock() - t0))
            raise
        except BaseException:
            self.release()
            raise
        self.on_success(max(0.0, clock() - t0))
        return result

    async def acall(self, coro_fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``call`` for a coroutine function; a cancelled call releases its permit and counts as nothing."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.state, self.retry_after_s())
        clock = self._clock
        t0 = clock()
        try:
            result = await coro_fn(*args, **kwargs)
        except Exception:
            self.on_failure(max(0.0, clock() - t0))
            raise
        except BaseException:  # CancelledError: the client went away, not the service's fault
            self.release()
            raise
        self.on_success(max(0.0, clock() - t0))
        return result

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"


__all__ = ["BreakerConfig", "BreakerState", "BreakerStatus", "CircuitBreaker", "CircuitOpenError"]
