"""Engine stall detection: requests are waiting but the engine makes no progress.

Why a timer of its own: an engine that hangs stops calling its stat loggers, so nothing driven by
``record()`` can notice. A daemon thread calls ``check()`` every ``interval_s``; before each check
it pulls the engine steps staged since the last one from its ``step_source`` (the stats recorder:
nothing runs on the engine's thread for us) and applies them in order through ``on_record``,
which other feeders may also call directly (O(1), no locks, no allocation).

A stall is, with ``stall_after_s`` (default 30 s):

* NO_TOKENS: the last record reported running requests, and no tokens (generated or, with chunked
  prefill, prompt tokens) have been processed for ``stall_after_s``;
* NO_STEPS: requests are in flight (last known running > 0, or HTTP requests in flight) and no
  ``record()`` has come for ``stall_after_s``.

Time is counted from the start of the busy period at the earliest, so a request arriving after an
hour of idleness is not "stalled for an hour". When an HTTP in-flight count is known and reads 0,
a running count reported before it fell to 0 is treated as stale (aborted requests do not always
produce a final engine record). Wire the HTTP count as
``StallDetector(in_flight=aphrodite_sla.integrations.asgi.get_in_flight_requests)``: it reads None
(unknown) while no ``SLAMiddleware`` is installed, and the detector then relies on the engine's
view alone. Entering a stall publishes one ``StallDetected`` event (a CRITICAL violation of
``engine_stalled``, so violation subscribers receive it too) on the monitor's event stream and
puts the stall into the published snapshot within one check; progress (or the engine going idle)
publishes one ``StallCleared``.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.event_stream import EventStream, Subscription
from aphrodite_sla.events import STALL_ALERT, MonitorEvent, StallCleared, StallDetected, episode_id, fingerprint
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.self_metrics import Component
from aphrodite_sla.sla.threshold import Direction, SLAViolation, Statistic, ViolationRule, ViolationSeverity
from aphrodite_sla.snapshot import StallReason, StallState, StallStatus
from aphrodite_sla.snapshot_board import SnapshotBoard

logger = logging.getLogger(__name__)

STALL_SLA = "engine_stalled"  # the violation's SLA name (and the gauge's: sla_engine_stalled)
STALLED_SERIES = "engine_stalled"  # gauge 0/1, one sample per check
NO_PROGRESS_SERIES = "engine_seconds_without_progress"  # 0 when idle, one sample per check
SERIES_WINDOW_S = 600.0

StallCallback = Callable[[SLAViolation], Any]
ResolutionCallback = Callable[[str, float], Any]

__all__ = [
    "NO_PROGRESS_SERIES", "STALLED_SERIES", "STALL_SLA", "StallDetector", "StallReason", "StallState", "StallStatus",
    "stall_violation",
]


def stall_violation(now: float, seconds_without_progress: float, stall_after_s: float, checks: int) -> SLAViolation:
    """A stall as a violation of ``engine_stalled``: the observed value is the seconds without
    progress, the bound ``stall_after_s``, the breach started when the engine had gone
    ``stall_after_s`` without progress, and every check since is an evaluation point beyond it."""
    return SLAViolation(
        metric_name=STALL_SLA, source_metric=NO_PROGRESS_SERIES, statistic=Statistic.MAX, direction=Direction.UPPER,
        observed_value=seconds_without_progress, bound=stall_after_s, target_value=stall_after_s,
        severity=ViolationSeverity.CRITICAL, window_seconds=stall_after_s,
        first_breach_time=now - seconds_without_progress + stall_after_s, detected_at=now, sustained_ratio=1.0,
        evaluation_points=checks, sample_count=checks, peak_severity=ViolationSeverity.CRITICAL, rule=ViolationRule.STALL,
    )


# -- behaviour -------------------------------------------------------------------------------------
class StallDetector:
    """Feeds: ``on_record`` (engine steps), ``on_requests_in_flight`` or an ``in_flight`` callable
    (HTTP requests). Output: callbacks, ``state``/``stalled_for_s``/``status``, gauge series."""

    def __init__(
        self,
        manager: Any = None,
        *,
        stall_after_s: float = 30.0,
        interval_s: float = 1.0,
        clock: Clock = system_clock,
        in_flight: Callable[[], int | None] | None = None,
        events: EventStream | None = None,
        board: SnapshotBoard | None = None,
    ) -> None:
        for name, value in (("stall_after_s", stall_after_s), ("interval_s", interval_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"StallDetector.{name}: must be a finite number > 0, got {value!r}")
        self.manager = manager
        self.stall_after_s = float(stall_after_s)
        self.interval_s = float(interval_s)
        self.clock = clock
        self._in_flight_source = in_flight
        # Called before every check to apply the steps recorded since (see the module docstring).
        self.step_source: Callable[[], None] | None = None
        # Published to the manager's stream and snapshot when given one, else to its own.
        self.events = events or getattr(manager, "events", None) or EventStream()
        self.board = board or getattr(manager, "board", None) or SnapshotBoard()
        self.self_metrics = self.events.self_metrics
        self.fingerprint = fingerprint(STALL_ALERT)

        # Written by on_record (the step source, on the timer or flush thread), read by check: single
        # attribute stores.
        self._last_record: float | None = None
        self._last_progress: float | None = None
        self._running = 0
        self._engine_busy_since: float | None = None
        self._pushed_in_flight: int | None = None
        self._dropped = 0

        # Owned by check() under _check_lock.
        self._check_lock = threading.Lock()
        self._http_busy_since: float | None = None
        self._http_idle_since: float | None = None
        self._state = StallState.OK
        self._reason: StallReason | None = None
        self._stalled_since: float | None = None
        self._stall_reference: float | None = None
        self._stall_checks = 0
        self._violation: SLAViolation | None = None
        self._stalls = 0
        self._status: StallStatus | None = None

        self._worker = PeriodicThread(
            "aphrodite-sla-stall-detector", self._tick, self.interval_s, run_first=False,
            on_error=lambda exc: self.self_metrics.error(Component.STALL_DETECTOR, f"{type(exc).__name__}: {exc}", exc_info=True),
        )
        if manager is not None:
            try:
                rate = 1.0 / self.interval_s
                manager.register_metric(STALLED_SERIES, SERIES_WINDOW_S, rate, max_value=1.0)
                manager.register_metric(NO_PROGRESS_SERIES, SERIES_WINDOW_S, rate, unit="s")
            except Exception as exc:
                self.self_metrics.error(Component.STALL_DETECTOR, f"cannot register the stall series: {exc}", exc_info=True)
        reset_in_child(self)

    # -- inputs (hot path) -------------------------------------------------------------------
    def on_record(
        self, now: float | None, num_running_reqs: int | None, num_generation_tokens: int | None,
        num_prompt_tokens: int | None = 0,
    ) -> None:
        """One engine step. ``now`` on this detector's clock (None: read it). A None count means
        "not reported" (running: keep the last; tokens: 0). Bad values are counted and dropped."""
        try:
            t = self.clock() if now is None else float(now)
            progressed = (num_generation_tokens or 0) > 0 or (num_prompt_tokens or 0) > 0
            running = self._running if num_running_reqs is None else int(num_running_reqs)
        except (TypeError, ValueError, OverflowError):
            self._dropped += 1
            return
        if t != t or running < 0:  # NaN time or a negative count
            self._dropped += 1
            return
        if running > 0 and (self._running <= 0 or self._engine_busy_since is None):
            self._engine_busy_since = t
        elif running == 0:
            self._engine_busy_since = None
        self._running = running
        if progressed:
            self._last_progress = t
        self._last_record = t

    def on_requests_in_flight(self, n: int) -> None:
        """The number of requests the HTTP server holds now (pushed by the middleware)."""
        try:
            self._pushed_in_flight = max(0, int(n))
        except (TypeError, ValueError, OverflowError):
            self._dropped += 1

    # -- callbacks (subscriptions on the event stream) ----------------------------------------
    def register_callback(self, callback: StallCallback) -> Subscription:
        """``callback(violation)`` once when a stall starts (on the subscription's own thread)."""
        return self.events.subscribe(lambda e: callback(e.violation), StallDetected, name="stall_callback")

    def register_resolution_callback(self, callback: ResolutionCallback) -> Subscription:
        """``callback("engine_stalled", resolved_at)`` once when it ends (progress or idle)."""
        return self.events.subscribe(lambda e: callback(e.sla, e.occurred_at), StallCleared, name="stall_resolution_callback")

    # -- evaluation --------------------------------------------------------------------------
    def check(self, now: float | None = None) -> StallStatus:
        """Decide the state at ``now`` (default: the clock) and publish it; returns once the
        subscribers have received the events of a transition (a synchronous tool and test API;
        the timer thread does not wait)."""
        status = self._check(now)
        self.events.drain(5.0)
        return status

    def _tick(self) -> None:
        self._check(None)

    def _check(self, now: float | None) -> StallStatus:
        events: list[MonitorEvent] = []
        source = self.step_source
        if source is not None:
            try:
                source()  # the steps since the last check, through on_record
            except Exception as exc:  # the check itself must still run (a hung engine sends nothing)
                self.self_metrics.error(Component.STALL_DETECTOR, f"reading the engine steps: {type(exc).__name__}: {exc}", exc_info=True)
        with self._check_lock:
            now = self.clock() if now is None else float(now)
            in_flight, known = self._read_in_flight()
            if known:
                if in_flight > 0:
                    self._http_idle_since = None
                    if self._http_busy_since is None:
                        self._http_busy_since = now
                else:
                    self._http_busy_since = None
                    if self._http_idle_since is None:
                        self._http_idle_since = now
            running, last_record, last_progress = self._running, self._last_record, self._last_progress
            engine_busy = running > 0 and (
                not known or in_flight > 0
                or (last_record is not None and self._http_idle_since is not None and last_record >= self._http_idle_since)
            )
            reference: float | None = None
            reason: StallReason | None = None
            if engine_busy:
                reference = _latest(last_progress, self._engine_busy_since, self._http_busy_since)
                no_steps = last_record is None or now - last_record >= self.stall_after_s
                reason = StallReason.NO_STEPS if no_steps else StallReason.NO_TOKENS
            elif known and in_flight > 0:
                reference = _latest(last_record, last_progress, self._http_busy_since)
                reason = StallReason.NO_STEPS
            without = max(0.0, now - reference) if reference is not None else 0.0
            stalled = reference is not None and without >= self.stall_after_s

            if stalled and self._state is StallState.OK:
                self._state, self._reason = StallState.STALLED, reason
                self._stalled_since, self._stall_reference = now, reference
                self._stalls += 1
                self._stall_checks = 1
                self._violation = stall_violation(now, without, self.stall_after_s, 1)
                events.append(StallDetected(self.fingerprint, self._episode(), now, self._violation, self._status_now(
                    now, without, running, in_flight, last_record, last_progress)))
                logger.error(
                    "aphrodite-sla: engine stalled (%s): no progress for %.1f s with %d running, %d in flight",
                    reason.value if reason else "?", without, running, in_flight,
                )
            elif not stalled and self._state is StallState.STALLED:
                ended = self._violation
                episode, started = self._episode(), self._stalled_since
                self._state, self._reason = StallState.OK, None
                self._stalled_since = self._stall_reference = None
                self._violation = None
                status = self._status_now(now, without, running, in_flight, last_record, last_progress)
                if ended is not None and started is not None:
                    events.append(StallCleared(self.fingerprint, episode, now, ended, started, status))
                logger.warning("aphrodite-sla: engine stall resolved (%s)", "progress" if reference else "idle")
            elif stalled:
                self._reason = reason
                self._stall_checks += 1
                self._violation = stall_violation(now, without, self.stall_after_s, self._stall_checks)
            status = self._status_now(now, without, running, in_flight, last_record, last_progress)
            self._status = status
            self.board.publish_stall(status, self._violation)
        self._record(status)
        self.events.publish(events)
        return status

    def _episode(self) -> str:
        return episode_id(self.fingerprint, self._stalled_since or 0.0)

    def _status_now(self, now: float, without: float, running: int, in_flight: int, last_record: float | None,
                    last_progress: float | None) -> StallStatus:
        return StallStatus(
            state=self._state, reason=self._reason, checked_at=now, seconds_without_progress=without,
            stalled_since=self._stalled_since, last_record_at=last_record, last_progress_at=last_progress,
            running_requests=running, in_flight_requests=in_flight, stalls_total=self._stalls,
            dropped_inputs=self._dropped,
        )

    def _read_in_flight(self) -> tuple[int, bool]:
        source = self._in_flight_source
        if source is not None:
            try:
                value = source()
                if value is not None:  # None: the source does not know (e.g. no middleware yet)
                    return max(0, int(value)), True
            except Exception as exc:
                self.self_metrics.error(Component.STALL_DETECTOR, f"the in-flight source failed: {exc}", exc_info=True)
        pushed = self._pushed_in_flight
        return (pushed, True) if pushed is not None else (0, False)

    def _record(self, status: StallStatus) -> None:
        manager = self.manager
        if manager is None:
            return
        try:
            manager.record_measurement(STALLED_SERIES, 1.0 if status.state is StallState.STALLED else 0.0)
            manager.record_measurement(NO_PROGRESS_SERIES, status.seconds_without_progress)
        except Exception as exc:
            self.self_metrics.error(Component.STALL_DETECTOR, f"recording the stall gauges failed: {exc}", exc_info=True)

    # -- reading -----------------------------------------------------------------------------
    @property
    def state(self) -> StallState:
        return self._state

    @property
    def stalled_for_s(self) -> float:
        """Seconds since the last progress while STALLED; 0.0 when OK."""
        reference = self._stall_reference
        if self._state is not StallState.STALLED or reference is None:
            return 0.0
        return max(0.0, self.clock() - reference)

    @property
    def status(self) -> StallStatus | None:
        """The result of the latest ``check()`` (None before the first)."""
        return self._status

    def _reset_after_fork(self) -> None:
        self._check_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._worker.is_running

    def start(self) -> None:
        """Start checking every ``interval_s`` on a daemon thread (idempotent)."""
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and wait up to ``timeout`` s (idempotent); True once the thread has ended."""
        return self._worker.stop(timeout)


def _latest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None
