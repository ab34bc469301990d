"""Scheduled regression checks and named baselines (the comparison itself is ``regression``).

Every ``interval_s`` each SLA's last window is compared with the window before it; a
``RegressionDetected`` event is raised when a check finds a regression after one that did not
(once per regression episode). ``capture`` keeps a thinned copy of a window under a name (e.g. the
version before a deployment) for ``detect(..., baseline_name=...)``.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from aphrodite_sla.events import REGRESSION_ALERT, RegressionDetected, episode_id, fingerprint
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.sla.regression import MAX_TEST_SAMPLES, RegressionResult, detect_regression
from aphrodite_sla.sla.threshold import SLAThreshold
from aphrodite_sla.store.metric_store import MetricStore


class RegressionWatch:
    """Owned by the evaluator (scheduled checks); ``detect``/``capture`` may run on any thread."""

    def __init__(self, store: MetricStore, *, interval_s: float, min_effect_percent: float, alpha: float) -> None:
        self.store = store
        self.interval_s = float(interval_s)
        self.min_effect_percent = float(min_effect_percent)
        self.alpha = float(alpha)
        self._baselines: dict[tuple[str, str], np.ndarray] = {}
        self._last_check: dict[str, float] = {}
        self._results: dict[str, RegressionResult] = {}
        self._lock = threading.Lock()
        reset_in_child(self)

    def result(self, sla: str) -> RegressionResult | None:
        return self._results.get(sla)

    def forget(self, sla: str) -> None:
        self._last_check.pop(sla, None)
        self._results.pop(sla, None)

    def scheduled(self, thresholds: list[SLAThreshold], now: float) -> tuple[list[str], list[RegressionDetected]]:
        """Run the checks that are due (the first one interval after an SLA's first evaluation);
        returns the SLAs checked and the regression episodes that started."""
        if not math.isfinite(self.interval_s):
            return [], []
        checked: list[str] = []
        events = []
        for th in thresholds:
            last = self._last_check.setdefault(th.metric_name, now)
            if now - last < self.interval_s:
                continue
            self._last_check[th.metric_name] = now
            checked.append(th.metric_name)
            previous = self._results.get(th.metric_name)
            result = self.detect(th, now)
            self._results[th.metric_name] = result
            if result.regressed and (previous is None or not previous.regressed):
                fp = fingerprint(REGRESSION_ALERT, sla=th.metric_name)
                events.append(RegressionDetected(fp, episode_id(fp, now), now, th.metric_name, result))
        return checked, events

    def detect(self, th: SLAThreshold, now: float, baseline_name: str | None = None) -> RegressionResult:
        """Compare the SLA's last window with the window before it, or with a named baseline."""
        buf = self.store.buffer(th.source)
        window = th.window_seconds
        _, recent = buf.window(now - window, now) if buf is not None else (None, np.empty(0))
        if baseline_name is not None:
            with self._lock:
                baseline = self._baselines.get((th.source, baseline_name))
            if baseline is None:
                raise KeyError(f"no baseline named {baseline_name!r} for {th.source!r}; capture_baseline() first")
        else:
            _, baseline = buf.window(now - 2 * window, now - window) if buf is not None else (None, np.empty(0))
        return detect_regression(
            baseline, recent, metric=th.metric_name, direction=th.direction,
            min_effect_percent=self.min_effect_percent, alpha=self.alpha, baseline_name=baseline_name,
        )

    def capture(self, baseline_name: str, th: SLAThreshold, now: float) -> int:
        """Keep a copy (thinned to at most MAX_TEST_SAMPLES) of the SLA's current window."""
        buf = self.store.buffer(th.source)
        values = buf.window(now - th.window_seconds, now)[1] if buf is not None else np.empty(0)
        if values.size > MAX_TEST_SAMPLES:
            values = values[np.linspace(0, values.size - 1, MAX_TEST_SAMPLES).astype(np.int64)]
        with self._lock:
            self._baselines[(th.source, baseline_name)] = values
        return int(values.size)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
