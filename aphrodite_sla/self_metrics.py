"""The monitor's own failures, counted where they happen and logged at a bounded rate.

Why: a monitor that fails quietly is worse than none — operators trust a green dashboard. Every
component (evaluator, hooks, subscribers, recorder, stall detector, system sampler, multiprocess
mirror, collector, endpoints, middleware) reports its failures here; the evaluator copies the
counts into each snapshot, the collector exports them as ``sla_monitor_errors_total{component}``
and the ``SLAMonitorErrors`` rule alerts on their ``increase()``. Logging is rate-limited per
component (a traceback the first time, then one line a minute with the count), so a fault that
repeats every evaluation cannot flood the engine's log.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from enum import Enum

from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.snapshot import DurationHistogram

logger = logging.getLogger("aphrodite_sla")

# Upper bounds (seconds) of the evaluation-duration histogram: an evaluation normally takes well
# under 5 ms; the upper buckets catch a starved or overloaded evaluator.
DURATION_BUCKETS_S: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf)
LOG_INTERVAL_S = 60.0


class Component(str, Enum):
    """Where a failure happened (the ``component`` label)."""

    EVALUATOR = "evaluator"  # an evaluation raised
    HOOK = "pre_evaluation_hook"  # a pre-evaluation hook (the recorder's flush) raised
    SUBSCRIBER = "subscriber"  # an event subscriber (a seed callback included) raised
    RECORDER = "recorder"  # an engine step's stats could not be read
    STALL_DETECTOR = "stall_detector"
    SAMPLER = "system_sampler"
    MIRROR = "multiprocess_mirror"
    COLLECTOR = "collector"
    ENDPOINT = "endpoint"
    MIDDLEWARE = "middleware"


class SelfMetrics:
    """Thread-safe failure counters by component and the evaluation-duration histogram."""

    def __init__(self, log_clock: Callable[[], float] = time.monotonic) -> None:
        self.log_clock = log_clock  # paces the rate-limited log (monotonic: immune to clock steps)
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}
        self.version = 0  # changes whenever a failure is counted (readers cache their copies)
        self._last_error: str | None = None
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._bucket_counts = [0] * len(DURATION_BUCKETS_S)
        self._duration_total = 0.0
        self._durations = 0
        reset_in_child(self)

    def error(self, component: Component, message: str, n: int = 1, *, exc_info: bool = False) -> None:
        """Count ``n`` failures of ``component``; log the first with its traceback (when
        ``exc_info``), later ones at most once per ``LOG_INTERVAL_S`` with the count since."""
        key = component.value
        now = self.log_clock()
        with self._lock:
            self._errors[key] = self._errors.get(key, 0) + n
            self._last_error = f"{key}: {message}"
            self.version += 1
            last = self._last_log.get(key)
            if last is not None and now - last < LOG_INTERVAL_S:
                self._unlogged[key] = self._unlogged.get(key, 0) + n
                return
            first = last is None
            self._last_log[key] = now
            suppressed = self._unlogged.pop(key, 0)
        if first:
            logger.error("aphrodite-sla: %s failed: %s", key, message, exc_info=exc_info)
        else:
            logger.error("aphrodite-sla: %s failed: %s (%d more since the last report)", key, message, suppressed)

    def observe_evaluation(self, seconds: float) -> None:
        with self._lock:
            for i, bound in enumerate(DURATION_BUCKETS_S):
                if seconds <= bound:
                    self._bucket_counts[i] += 1
                    break
            self._duration_total += seconds
            self._durations += 1

    def errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._errors)

    def errors_of(self, component: Component) -> int:
        with self._lock:
            return self._errors.get(component.value, 0)

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def durations(self) -> DurationHistogram:
        with self._lock:
            cumulative, buckets = 0, []
            for bound, n in zip(DURATION_BUCKETS_S, self._bucket_counts):
                cumulative += n
                buckets.append((bound, cumulative))
            return DurationHistogram(tuple(buckets), self._duration_total, self._durations)

    def _reset_after_fork(self) -> None:
        """A lock held by another thread at ``fork()`` would stay held in the child forever."""
        self._lock = threading.Lock()
