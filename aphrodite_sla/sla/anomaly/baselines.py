"""The classic detectors ``AnomalyDetector`` is measured against (``benchmarks/bench_anomaly.py``).

* ``WindowedZScoreDetector``: ``|z| > 2.5`` against the mean and sample sd of the last 100 values,
  the project's original rule.
* ``WindowedGaussianDetector``: the tail probability of each value under a Gaussian fitted to a
  long sliding window (6,400 values), the "windowed Gaussian" baseline of the Numenta Anomaly
  Benchmark; O(1) per update with running sums.

Both map ``|z|`` with ``z_to_score``, so that score 0.5 is exactly their alert rule, and never
raise: non-numeric or non-finite input returns the previous score and changes nothing.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from aphrodite_sla.sla.anomaly.scoring import two_sided_z, z_to_score

__all__ = ["WindowedGaussianDetector", "WindowedZScoreDetector", "zscore"]


def zscore(value: float, baseline: np.ndarray) -> float:
    """Classic z of ``value`` against a baseline window (mean and sample std, ddof=1).

    0.0 when the baseline has fewer than 2 finite points or no spread, or the value is not finite.
    """
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if not math.isfinite(v):
        return 0.0
    b = np.asarray(baseline, dtype=np.float64).ravel()
    if b.size < 2:
        return 0.0
    with np.errstate(all="ignore"):
        finite = np.isfinite(b)
        if not finite.all():
            b = b[finite]
            if b.size < 2:
                return 0.0
        mean = float(b.mean())
        sd = float(b.std(ddof=1))
        z = (v - mean) / sd if sd > 0.0 else 0.0
    return z if math.isfinite(z) else 0.0


_CLAMP = 1e150  # the Gaussian baseline clamps values so that sums of squares stay finite


def _valid(value: object, timestamp: object) -> float | None:
    """``value`` as a finite float when both inputs are finite numbers, else None."""
    try:
        x = float(value)  # type: ignore[arg-type]
        t = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) and math.isfinite(t) else None


class WindowedZScoreDetector:
    """``|z| > threshold_z`` (2.5) against the previous ``window`` (100) values; O(window)."""

    def __init__(self, window: int = 100, threshold_z: float = 2.5) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = int(window)
        self.threshold_z = float(threshold_z)
        self._buf: deque[float] = deque(maxlen=self.window)
        self._last_score = 0.0

    def reset(self) -> None:
        """Forget the window."""
        self._buf.clear()
        self._last_score = 0.0

    def update(self, value: float, timestamp: float) -> float:
        """Score ``value`` against the window, then add it; invalid input returns the last score."""
        x = _valid(value, timestamp)
        if x is None:
            return self._last_score
        buf = self._buf
        z = zscore(x, np.fromiter(buf, dtype=np.float64, count=len(buf))) if len(buf) >= 2 else 0.0
        buf.append(x)
        self._last_score = z_to_score(z, self.threshold_z)
        return self._last_score


class WindowedGaussianDetector:
    """Two-sided Gaussian tail probability of each value against the last ``window`` values.

    Score 0.5 where the tail probability is ``alert_tail`` (1e-4 by default, ``|z|`` = 3.89).
    Running sums are kept relative to a reference value and recomputed exactly once per window,
    so they neither lose precision on large metrics nor drift.
    """

    def __init__(self, window: int = 6400, alert_tail: float = 1e-4, min_samples: int = 10) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if not 0.0 < alert_tail < 1.0:
            raise ValueError(f"alert_tail must be in (0, 1), got {alert_tail}")
        self.window = int(window)
        self.min_samples = max(2, int(min_samples))
        self.threshold_z = two_sided_z(alert_tail)
        self._buf: deque[float] = deque()
        self._ref = 0.0
        self._sum = 0.0
        self._sq = 0.0
        self._since_exact = 0
        self._last_score = 0.0

    def reset(self) -> None:
        """Forget the window."""
        self._buf.clear()
        self._sum = self._sq = 0.0
        self._since_exact = 0
        self._last_score = 0.0

    def update(self, value: float, timestamp: float) -> float:
        """Score ``value`` against the window, then add it; invalid input returns the last score."""
        x = _valid(value, timestamp)
        if x is None:
            return self._last_score
        x = min(max(x, -_CLAMP), _CLAMP)
        buf = self._buf
        n = len(buf)
        z = 0.0
        if n >= self.min_samples:
            mean = self._sum / n
            var = max(self._sq / n - mean * mean, 0.0) * n / (n - 1)
            if var > 0.0:
                z = (x - self._ref - mean) / math.sqrt(var)
        if not buf:
            self._ref = x
        buf.append(x)
        d = x - self._ref
        self._sum += d
        self._sq += d * d
        if len(buf) > self.window:
            old = buf.popleft() - self._ref
            self._sum -= old
            self._sq -= old * old
        self._since_exact += 1
        if self._since_exact >= self.window:  # amortised O(1): re-centre and resum exactly
            self._ref = math.fsum(buf) / len(buf)
            self._sum = math.fsum(v - self._ref for v in buf)
            self._sq = math.fsum((v - self._ref) * (v - self._ref) for v in buf)
            self._since_exact = 0
        self._last_score = z_to_score(z, self.threshold_z) if math.isfinite(z) else 1.0
        return self._last_score
