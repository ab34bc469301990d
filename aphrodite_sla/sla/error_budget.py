"""Error budgets in process: each SLA with an objective classifies every sample against its bound
(good or bad, counted once), and the burn rate over a window is the bad fraction there divided by
the budget (1 - objective). Fleet-wide budgets are Prometheus rules over ``sla_events_total``."""
from __future__ import annotations

import bisect
import threading

from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.snapshot import ErrorBudget

# Windows of the in-process burn rates (per replica).
BURN_RATE_WINDOWS_S: tuple[float, ...] = (300.0, 600.0)


def window_label(window_s: float) -> str:
    return f"{window_s / 60:.0f}m"


_WINDOW_LABELS = tuple((window_label(w), w) for w in BURN_RATE_WINDOWS_S)


class ErrorBudgetTracker:
    """Monotonic good/bad counts of one SLA and their history, long enough for the longest burn
    window. Written by the evaluator; ``burn_rate`` may be read from any thread (a small lock)."""

    def __init__(self, sla: str, objective: float, evaluation_interval_s: float, horizon_s: float = 0.0) -> None:
        """``horizon_s``: keep history for windows this long too (the fast page rules read 1 h
        and 6 h burn rates)."""
        self.sla = sla
        self.objective = objective
        self.good = 0
        self.bad = 0
        self._horizon_s = max(*BURN_RATE_WINDOWS_S, horizon_s) + evaluation_interval_s
        # history of (time, good, bad) as parallel lists from index _start (bisect-able, compacted
        # when half is stale)
        self._times: list[float] = []
        self._counts: list[tuple[int, int]] = []
        self._start = 0
        self._lock = threading.Lock()
        reset_in_child(self)

    def add(self, now: float, good: int, bad: int) -> ErrorBudget:
        """Count an evaluation's newly classified samples; returns the budget's status after it."""
        with self._lock:
            self.good += good
            self.bad += bad
            self._times.append(now)
            self._counts.append((self.good, self.bad))
            # keep one point at or before the horizon, so the longest window has its start
            keep_from = bisect.bisect_right(self._times, now - self._horizon_s, self._start) - 1
            if keep_from > self._start:
                self._start = keep_from
                if self._start > len(self._times) // 2:
                    del self._times[: self._start]
                    del self._counts[: self._start]
                    self._start = 0
            rates = {label: self._burn_rate(w) for label, w in _WINDOW_LABELS}
            return ErrorBudget(self.sla, self.objective, self.good, self.bad, rates)

    def burn_rate(self, window_s: float) -> float | None:
        """Bad fraction over the last ``window_s`` (at most the longest burn window) / budget;
        None before any sample."""
        with self._lock:
            return self._burn_rate(window_s)

    def _burn_rate(self, window_s: float) -> float | None:
        total, bad = self._window_counts(window_s)
        if total <= 0:
            return None
        return (bad / total) / (1.0 - self.objective)

    def window_counts(self, window_s: float) -> tuple[int, int]:
        """(samples, bad samples) classified over the last ``window_s`` (at most the horizon)."""
        with self._lock:
            return self._window_counts(window_s)

    def _window_counts(self, window_s: float) -> tuple[int, int]:
        times = self._times
        if len(times) <= self._start:
            return 0, 0
        good, bad = self._counts[-1]
        # the last point before the window's start (or the oldest kept)
        i = bisect.bisect_left(times, times[-1] - window_s, self._start) - 1
        then_good, then_bad = self._counts[max(i, self._start)]
        return (good + bad) - (then_good + then_bad), bad - then_bad

    def status(self) -> ErrorBudget:
        with self._lock:
            rates = {label: self._burn_rate(w) for label, w in _WINDOW_LABELS}
            return ErrorBudget(self.sla, self.objective, self.good, self.bad, rates)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
