"""Per-metric anomaly scores between the baseline (before onset) and the incident window.

* Robust signed deviation (BARO): (incident level - baseline median) / baseline IQR, signed by the
  metric's bad direction. Medians and IQRs because a few outliers in the baseline must not hide a
  change; signed because a metric that got better is not a cause. The incident level is the 75th
  percentile of the signed values (per node: ``Node.incident_quantile``), so an onset estimated up to half a window late or early still
  scores the change.
* Slope test for leaks and drifts (scipy.stats.linregress): a significant trend in the bad
  direction over the incident window, in baseline scales per window (a leak that has only just
  begun has a small level shift but a clear slope).
* Saturation for bounded resources: how far into the top 10% of its bound the incident level is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aphrodite_sla.rca.graph import Node

SLOPE_ALPHA = 0.001


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
    return _scale_of(*np.percentile(b, [25.0, 50.0, 75.0]), floor)


def _scale_of(q25: float, med: float, q75: float, floor: float) -> float:
    return max(float(q75 - q25), floor, 0.02 * abs(float(med)), 1e-12)


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
    slope_score = 0.0
    if node.trend:
        slope_score = trend_score(incident, node.bad, scale)
    sat = 0.0
    if node.bound is not None:
        level = x_q if node.bad > 0 else float(np.percentile(x, node.incident_quantile))
        sat = min(1.0, max(0.0, (level - 0.9 * node.bound) / (0.1 * node.bound)))
        sat = sat if score >= 1.0 else 0.0  # a resource that was as full before is not what changed
    return Deviation(score, med, x_med, scale, slope_score, sat)


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
