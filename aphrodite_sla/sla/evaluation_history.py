"""Each SLA's statistic at every evaluation, kept for a day: the running monitor's own history, for
``aphrodite-sla calibrate --monitor URL`` (served as ``/metrics/history``) and the incident
console's charts (which also draw the latency windows' p50/p95/p99, kept here as well under
``<series>:p50|p95|p99`` keys: one history per monitor, not one per reader).

Why a subscriber of its own: the evaluator publishes a snapshot per evaluation and must not grow
per-feature bookkeeping; this keeps one bounded array per SLA from ``SnapshotPublished`` events,
off the evaluator's thread (24 h at the default 5 s interval: 17,280 points, ~280 KB per SLA).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

from aphrodite_sla.events import SnapshotPublished
from aphrodite_sla.forking import reset_in_child

DEFAULT_POINTS = 17_280  # a day of evaluations at 5 s
QUANTILES = (0.5, 0.95, 0.99)
LATENCY_SERIES = ("request_latency_ms", "ttft_ms", "tpot_ms", "itl_ms", "queue_time_ms")


def quantile_key(series: str, q: float) -> str:
    """The history's key of a latency series' quantile (``ttft_ms:p95``)."""
    return f"{series}:p{q * 100:g}"


class EvaluationHistory:
    """Per SLA: (evaluated_at, statistic) of the latest ``max_points`` evaluations; NaN where the
    window was not judged (no value). Thread-safe."""

    def __init__(self, max_points: int = DEFAULT_POINTS) -> None:
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"EvaluationHistory.max_points: must be an integer >= 1, got {max_points!r}")
        self.max_points = max_points
        self._points: dict[str, deque[tuple[float, float]]] = {}
        self._slas: set[str] = set()  # the keys that are SLA statistics (the rest: latency quantiles)
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def on_snapshot(self, event: SnapshotPublished) -> None:
        snap = event.snapshot
        at = snap.evaluated_at
        if at is None or not math.isfinite(at):
            return
        values = {name: status.value for name, status in snap.statuses.items()}
        shortest: dict[str, Any] = {}  # per latency series, its shortest window with samples
        for (series, window_s), stats in snap.windows.items():
            if series in LATENCY_SERIES and stats.samples > 0 and (series not in shortest or window_s < shortest[series].window_s):
                shortest[series] = stats
        quantiles = {quantile_key(series, q): stats.quantiles.get(q) for series, stats in shortest.items() for q in QUANTILES}
        with self._lock:
            self._slas.update(values)
            for key, value in (*values.items(), *((k, v) for k, v in quantiles.items() if v is not None)):
                self._append(key, float(at), value)

    def put(self, key: str, at: float, value: float | None) -> None:
        """One point (the snapshot subscriber's path; also tools that draw a made-up history)."""
        with self._lock:
            self._append(key, at, value)

    def _append(self, key: str, at: float, value: float | None) -> None:
        points = self._points.get(key)
        if points is None:
            points = self._points[key] = deque(maxlen=self.max_points)
        points.append((at, float(value) if value is not None and math.isfinite(value) else math.nan))

    def series(self, name: str) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._points.get(name, ()))

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._points)

    def between(self, key: str, start: float, end: float) -> list[tuple[float, float]]:
        """The points of ``key`` (an SLA or a ``quantile_key``) evaluated in [start, end]."""
        return [(t, v) for t, v in self.series(key) if start <= t <= end]

    def last_at(self) -> float | None:
        """When the newest point was evaluated (None: nothing yet)."""
        with self._lock:
            ends = [p[-1][0] for p in self._points.values() if p]
        return max(ends) if ends else None

    def to_json(self) -> dict[str, Any]:
        """``{"slas": {name: {"ends": [...], "values": [...]}}}`` with null for NaN (JSON-safe)."""
        with self._lock:
            copies = {name: list(self._points[name]) for name in self._slas if name in self._points}
        return {"slas": {name: {"ends": [t for t, _ in pts], "values": [None if math.isnan(v) else v for _, v in pts]}
                         for name, pts in copies.items()}}
