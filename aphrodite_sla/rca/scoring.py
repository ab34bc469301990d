"""Per-metric anomaly scores between the baseline (before onset) and the incident window.

* Robust signed deviation (BARO): (incident level - baseline median) / baseline IQR, signed by the
  metric's bad direction. Medians and IQRs because a few outliers in the baseline must not hide a
  change; signed because a metric that got better is not a cause. The incident level is the 75th
  percentile of the signed values (per node: ``Node.incident_quantile``), so an onset estimated up to half a window late or early still
  scores the change.
* Slope test for leaks and drifts (scipy.stats.linregress): a significant trend in the bad
  direction over the incident window, in baseline scales per window (a leak that has only just
  begun has a small level shift but a clear slope).
* Exceedance for a metric that sits at one level in the baseline (its IQR is zero: a queue that
  is empty, an error or preemption count that is zero in most bins): the IQR says nothing there
  and the node's floor is a guess, so the score is also how unlikely it is that so many incident
  bins are worse than that level, given how often baseline bins were (a binomial tail, as a
  normal quantile). A queue that was empty in all 60 baseline bins and holds a request or two in
  8 of 15 incident bins is a change, however small the requests' number.
* Saturation for bounded resources: how far into the top 10% of its bound the incident level is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aphrodite_sla.rca.graph import Node

SLOPE_ALPHA = 0.001
EXCEEDANCE_MAX = 10.0  # the exceedance score's cap (a p-value of ~1e-23)


@dataclass(frozen=True)
class Deviation:
    score: float  # signed robust deviation (positive: worse)
    baseline: float  # baseline median
    incident: float  # incident level (median)
    scale: float  # the scale used (IQR or the node's floor)
    slope_score: float = 0.0
    saturation: float = 0.0

    @property
    def total(self) -> float:
        return max(self.score, self.slope_score) + 3.0 * self.saturation


def robust_scale(baseline: np.ndarray, floor: float) -> float:
    b = baseline[np.isfinite(baseline)]
    if len(b) == 0:
        return max(floor, 1e-12)
    q25, med, q75 = (float(q) for q in np.percentile(b, [25.0, 50.0, 75.0]))
    return _scale_of(q25, med, q75, floor)


def _scale_of(q25: float, med: float, q75: float, floor: float) -> float:
    """IQR, at least 2% of the level and the node's floor. The floor (metric units) is the scale of
    a metric near zero (an error percentage, a rare count); a metric whose level is far above it
    (a 16 ms TTFT against a 5 ms floor) gets floor * floor / level, so a 40% rise is not lost in a
    floor meant for another engine's scale."""
    level = abs(float(med))
    eff_floor = floor * min(1.0, floor / level) if level > 0 else floor
    return max(float(q75 - q25), eff_floor, 0.02 * level, 1e-12)


def deviation(node: Node, baseline: np.ndarray, incident: np.ndarray) -> Deviation | None:
    """None when either side has too few finite values to say anything."""
    b = baseline[np.isfinite(baseline)]
    x = incident[np.isfinite(incident)]
    if len(b) < 3 or len(x) < 2:
        return None
    q25, med, q75 = (float(q) for q in np.percentile(b, [25.0, 50.0, 75.0]))
    scale = _scale_of(q25, med, q75, node.floor)
    x_q, x_med = (float(q) for q in np.percentile(x, [node.incident_quantile, 50.0] if node.bad > 0
                                                      else [100.0 - node.incident_quantile, 50.0]))
    score = node.bad * (x_q - med) / scale  # the signed values' quantile (a monotone map of x)
    if q75 == q25:
        score = max(score, exceedance_score(b, x, med, node.bad))
    slope_score = 0.0
    if node.trend:
        slope_score = trend_score(incident, node.bad, scale)
    sat = 0.0
    if node.bound is not None:
        level = x_q if node.bad > 0 else float(np.percentile(x, node.incident_quantile))
        sat = min(1.0, max(0.0, (level - 0.9 * node.bound) / (0.1 * node.bound)))
        sat = sat if score >= 1.0 else 0.0  # a resource that was as full before is not what changed
    return Deviation(score, med, x_med, scale, slope_score, sat)


def exceedance_score(baseline: np.ndarray, incident: np.ndarray, level: float, bad: int) -> float:
    """How many incident values are worse than ``level`` against the baseline's share of such
    values (add-one smoothed), as the normal quantile of the binomial tail; 0 when not more."""
    worse_base = int(np.count_nonzero(bad * (baseline - level) > 0))
    worse = int(np.count_nonzero(bad * (incident - level) > 0))
    m = len(incident)
    p0 = (worse_base + 1.0) / (len(baseline) + 2.0)
    if worse <= p0 * m:
        return 0.0
    from scipy import stats  # loaded on the first analysis, never by building a monitor

    p = float(stats.binom.sf(worse - 1, m, p0))
    return float(min(EXCEEDANCE_MAX, stats.norm.isf(max(p, 1e-300))))


def trend_score(window: np.ndarray, bad: int, scale: float) -> float:
    """The window's linear trend in the bad direction, in scales per window, if significant."""
    y = np.asarray(window, dtype=float)
    ok = np.isfinite(y)
    if ok.sum() < 6 or np.ptp(y[ok]) == 0:
        return 0.0
    from scipy import stats  # loaded on the first analysis, never by building a monitor

    x = np.nonzero(ok)[0].astype(float)
    fit = stats.linregress(x, y[ok])
    if not (math.isfinite(fit.pvalue) and fit.pvalue < SLOPE_ALPHA) or fit.slope * bad <= 0:
        return 0.0
    return float(abs(fit.slope) * len(y) / scale)
