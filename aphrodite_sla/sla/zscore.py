"""The seed's z-score: the newest interval's value against the last N evaluation points, in O(1)."""
from __future__ import annotations

import math
from collections import deque

# Per-SLA history of per-interval values kept as the z-score baseline (evaluation points).
ZSCORE_BASELINE_POINTS = 120
# The seed's anomaly rule: |z| above this against the baseline is anomalous.
ZSCORE_ANOMALY = 2.5


class RollingZScore:
    """The last ``size`` values with running sums (of value - first value, for numerical stability)."""

    __slots__ = ("shift", "total", "total_sq", "values")

    def __init__(self, size: int = ZSCORE_BASELINE_POINTS) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0
        self.total_sq = 0.0
        self.shift: float | None = None

    def zscore(self, value: float) -> float | None:
        """``value`` against the values held (before it is appended); None with fewer than two."""
        n = len(self.values)
        if n < 2 or self.shift is None:
            return None
        mean = self.total / n
        var = self.total_sq / n - mean * mean
        if var <= 1e-12 * (mean * mean + 1e-300):
            return 0.0
        return (value - self.shift - mean) / math.sqrt(var)

    def append(self, value: float) -> None:
        if self.shift is None:
            self.shift = value
        d = value - self.shift
        if len(self.values) == self.values.maxlen:
            old = self.values[0] - self.shift
            self.total -= old
            self.total_sq -= old * old
        self.values.append(value)
        self.total += d
        self.total_sq += d * d
