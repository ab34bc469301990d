"""Each SLA's statistic at every evaluation, kept for a day: the running monitor's own history, for
``aphrodite-sla calibrate --monitor URL`` (served as ``/metrics/history``).

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


class EvaluationHistory:
    """Per SLA: (evaluated_at, statistic) of the latest ``max_points`` evaluations; NaN where the
    window was not judged (no value). Thread-safe."""

    def __init__(self, max_points: int = DEFAULT_POINTS) -> None:
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"EvaluationHistory.max_points: must be an integer >= 1, got {max_points!r}")
        self.max_points = max_points
        self._points: dict[str, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def on_snapshot(self, event: SnapshotPublished) -> None:
        snap = event.snapshot
        at = snap.evaluated_at
        if at is None:
            return
        with self._lock:
            for name, status in snap.statuses.items():
                value = status.value
                points = self._points.get(name)
                if points is None:
                    points = self._points[name] = deque(maxlen=self.max_points)
                points.append((float(at), float(value) if value is not None and math.isfinite(value) else math.nan))

    def series(self, name: str) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._points.get(name, ()))

    def to_json(self) -> dict[str, Any]:
        """``{"slas": {name: {"ends": [...], "values": [...]}}}`` with null for NaN (JSON-safe)."""
        with self._lock:
            copies = {name: list(points) for name, points in self._points.items()}
        return {"slas": {name: {"ends": [t for t, _ in pts], "values": [None if math.isnan(v) else v for _, v in pts]}
                         for name, pts in copies.items()}}
