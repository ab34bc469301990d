"""The value transform and the resolution floor: what "a large change" is measured against.

* **Transform.** Noise should look the same at any level, or a detector tuned at night pages at
  noon. Positive, right-skewed, wide-ranging metrics (latencies, traffic, event volumes) are
  modelled in log space, where their noise is roughly symmetric and a x2 slowdown has the same
  size at any load. Small counts (errors per interval, queue lengths: a median under 20 of their
  own steps) stay linear, where a step from 1 to 0 is one step and not a collapse, and so does
  anything narrow or symmetric. The choice is made from the warm-up and checked once more after a
  few hundred samples (``recheck_transform``): a warm-up that happened to fall in a quiet night
  looks narrow, and a traffic curve modelled linearly pages at every peak and misses every dip.
  The check measures what the choice is about, how the noise scales with the level.
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

__all__ = ["CLAMP", "Transform", "choose_transform", "noise_elasticity", "recheck_transform"]

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


def noise_elasticity(values: np.ndarray, block: int = 10) -> float | None:
    """How the noise scales with the level: the slope of log(mean |step|) on log(mean) over
    blocks of ``block`` samples (1: multiplicative noise, log space; 0: additive, linear; about
    0.5: counts). None when the level varies too little to tell (under 10 % between blocks),
    or values are not all positive enough to take logs."""
    k = values.size // block
    if k < 8:
        return None
    x = values[:k * block].reshape(k, block)
    m = x.mean(axis=1)
    s = np.abs(np.diff(x, axis=1)).mean(axis=1)
    ok = (m > 0.0) & (s > 0.0)
    if ok.sum() < 8:
        return None
    lm = np.log(m[ok])
    ls = np.log(s[ok])
    v = float(np.var(lm))
    if v < 0.01:
        return None
    return float(np.mean((lm - lm.mean()) * (ls - ls.mean())) / v)


def recheck_transform(values: np.ndarray, log_space: bool) -> bool:
    """The transform for a metric after its first few hundred ``values``, given that the warm-up
    chose ``log_space``. A warm-up that happened to be quiet (a night, a weekend) cannot tell how
    the noise scales; a few hundred samples usually span enough of the level to measure it
    (``noise_elasticity``): log space when the noise grows about in proportion to the level
    (above 0.7), linear when it does not grow with it (below 0.3), else as before. Negative
    values and small counts (a median under 8 of their own steps) keep the warm-up's choice."""
    with np.errstate(all="ignore"):  # extreme values may overflow a difference: no change then
        steps = np.abs(np.diff(values))
        steps = steps[steps > 0.0]
        if not values.size or float(values.min()) < 0.0 or not bool(np.all(np.isfinite(steps))) or (
                steps.size and float(np.median(values)) < 8.0 * float(steps.min())):
            return log_space
        el = noise_elasticity(values)
    if el is None or not math.isfinite(el):
        return log_space
    return el >= 0.3 if log_space else el > 0.7
