"""``SliSeries``: the SLIs the incident page draws, kept per evaluation from the monitor's
snapshots (latency quantiles of the windows, every SLA's evaluated statistic).

Why a subscriber of its own: the charts need the series around an incident (minutes before the
onset to after the resolution) from inside the process, with no Prometheus; subscribing to
``SnapshotPublished`` keeps the copying off the evaluator's thread, and each series is a bounded
deque (a day at the default 5 s interval)."""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

from aphrodite_sla.events import SnapshotPublished
from aphrodite_sla.forking import reset_in_child

DEFAULT_POINTS = 17_280
QUANTILES = (0.5, 0.95, 0.99)
LATENCY_SERIES = ("request_latency_ms", "ttft_ms", "tpot_ms", "itl_ms", "queue_time_ms")


def quantile_key(series: str, q: float) -> str:
    return f"{series}:p{q * 100:g}"


class SliSeries:
    """Per key: (evaluated_at, value) points; keys are ``<series>:p50|p95|p99`` for latency
    windows and the SLA names for their statistic. Thread-safe."""

    def __init__(self, max_points: int = DEFAULT_POINTS) -> None:
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"SliSeries.max_points: must be an integer >= 2, got {max_points!r}")
        self.max_points = max_points
        self._points: dict[str, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def attach(self, manager: Any) -> SliSeries:
        manager.subscribe(self.on_snapshot, SnapshotPublished, name="console_series")
        return self

    def on_snapshot(self, event: SnapshotPublished) -> None:
        snap = event.snapshot
        at = snap.evaluated_at
        if at is None or not math.isfinite(at):
            return
        values: dict[str, float] = {}
        shortest: dict[str, Any] = {}
        for (series, window_s), stats in snap.windows.items():
            if series in LATENCY_SERIES and stats.samples > 0 and (series not in shortest or window_s < shortest[series].window_s):
                shortest[series] = stats
        for series, stats in shortest.items():
            for q in QUANTILES:
                v = stats.quantiles.get(q)
                if v is not None:
                    values[quantile_key(series, q)] = float(v)
        for name, status in snap.statuses.items():
            if status.value is not None:
                values[name] = float(status.value)
        with self._lock:
            for key, value in values.items():
                points = self._points.get(key)
                if points is None:
                    points = self._points[key] = deque(maxlen=self.max_points)
                points.append((float(at), value if math.isfinite(value) else math.nan))

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._points)

    def between(self, key: str, start: float, end: float) -> list[tuple[float, float]]:
        with self._lock:
            points = list(self._points.get(key, ()))
        return [(t, v) for t, v in points if start <= t <= end]

    def last_at(self) -> float | None:
        with self._lock:
            ends = [p[-1][0] for p in self._points.values() if p]
        return max(ends) if ends else None
