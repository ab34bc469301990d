"""The value transform and the resolution floor: what "a large change" is measured against.

* **Transform.** Noise should look the same at any level, or a detector tuned at night pages at
  noon. Positive, right-skewed, wide-ranging metrics (latencies, traffic, event volumes) are
  modelled in log space, where their noise is roughly symmetric and a x2 slowdown has the same
  size at any load. Small counts (errors per interval, queue lengths: a median under 20 of their
  own steps) stay linear, where a step from 1 to 0 is one step and not a collapse, and so does
  anything narrow or symmetric. The choice is made once, from the warm-up.
* **Resolution floor.** A change is judged against the residual scale, which must never be zero:
  a metric that has been exactly 3072.0 for hours has no spread, and 6 KB of growth is not an
  anomaly. The scale is floored (``baseline.py``) by the larger of half the metric's typical
  non-zero step (its resolution: integer counts, 0.01 % utilisation) and ``relative_floor`` of its
  level (a change of 0.1 % of the level is never alarming by size alone); ``relative_floor`` here
  converts that share to model units.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CLAMP", "Transform", "choose_transform"]

CLAMP = 1e100  # values are clamped to +-this, so that squares stay finite


class Transform:
    """``forward`` maps a metric value to model space (log or linear), ``inverse`` maps back."""

    __slots__ = ("log_space", "offset")

    def __init__(self, log_space: bool, offset: float = 0.0) -> None:
        self.log_space = log_space
        self.offset = offset

    def forward(self, x: float) -> float:
        if self.log_space:
            return math.log((x if x > 0.0 else 0.0) + self.offset) if x < CLAMP else math.log(CLAMP)
        return CLAMP if x > CLAMP else (-CLAMP if x < -CLAMP else x)

    def inverse(self, y: float) -> float:
        if self.log_space:
            return math.exp(y if y < 700.0 else 700.0) - self.offset
        return y

    def relative_floor(self, level: float, share: float) -> float:
        """``share`` of the metric's level, in model units at model level ``level``."""
        if self.log_space:
            return share  # d log x = dx / x
        return share * (level if level >= 0.0 else -level)


def _octile_skew(x: np.ndarray) -> float:
    """Robust skewness in [-1, 1] from the octiles; one outlier in the warm-up cannot swing it."""
    lo, mid, hi = np.quantile(x, [0.125, 0.5, 0.875])
    span = hi - lo
    return float((hi + lo - 2.0 * mid) / span) if span > 0.0 else 0.0


def choose_transform(values: np.ndarray, forced_log: bool | None) -> Transform:
    """The transform for a metric, from its warm-up ``values`` (see the module docstring).

    ``forced_log`` True / False forces log / linear. Auto: log space for non-negative values with
    a positive median that are not a small count (a median under 20 of their own steps) and span
    a ratio (x1.2 between their octiles) or are right-skewed over more than 10 % (a near-constant
    gauge that stepped once is not "skewed"). The offset (2 % of the median, at least one step,
    at least the smallest positive value when zeros occur) keeps a zero reading finite.
    """
    steps = np.abs(np.diff(values))
    steps = steps[steps > 0.0]
    quantum = float(steps.min()) if steps.size else 0.0
    pos = values[values > 0.0]
    med = float(np.median(values)) if values.size else 0.0
    if forced_log is None:
        if values.size == 0 or med <= 0.0 or not bool(np.all(values >= 0.0)) or med < 20.0 * quantum:
            return Transform(False)
        lo, hi = np.quantile(values, [0.125, 0.875])
        if not ((_octile_skew(values) > 0.15 and hi > 1.1 * lo) or hi > 1.2 * lo):
            return Transform(False)
    elif not forced_log:
        return Transform(False)
    offset = max(0.02 * med, quantum)
    if pos.size < values.size:
        offset = max(offset, float(pos.min()) if pos.size else 1.0)
    return Transform(True, offset if offset > 0.0 else 1e-9)
