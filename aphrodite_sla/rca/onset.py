"""When did the incident start? A change-point scan of the violated SLI (and the error series).

Why: a violation is detected late by construction (a window has to fill, a sustained ratio has to
be reached), so the window before the detection time is not a clean baseline. The scan finds the
split that best separates the series into two constant levels (least squares, as binary
segmentation does) and keeps it only if the later level is worse (the SLI's bad direction).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SEGMENT_BINS = 3


@dataclass(frozen=True)
class Onset:
    index: int  # first bin of the incident
    statistic: float  # the shift in pooled standard deviations (0 when none was found)
    series: str  # which series set it


def change_point(values: np.ndarray, bad: int, min_segment: int = MIN_SEGMENT_BINS, floor: float = 0.0) -> tuple[int, float]:
    """The best single split of ``values`` (NaNs ignored) into two levels with the later one
    worse; returns (index of the first later bin, standardized shift), or (-1, 0.0). The shift is
    in pooled standard deviations, at least ``floor`` (the metric's smallest meaningful change: a
    goodput of 100% that dips to 99.8% in one bin is not a change however flat it was)."""
    y = np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    pos = np.nonzero(ok)[0]
    y = y[ok]
    n = len(y)
    if n < 2 * min_segment:
        return -1, 0.0
    csum = np.cumsum(y)
    csq = np.cumsum(y * y)
    k = np.arange(min_segment, n - min_segment + 1)
    left_mean = csum[k - 1] / k
    right_mean = (csum[-1] - csum[k - 1]) / (n - k)
    shift = (right_mean - left_mean) * bad
    sse = (csq[k - 1] - k * left_mean**2) + ((csq[-1] - csq[k - 1]) - (n - k) * right_mean**2)
    sd = np.sqrt(np.maximum(sse, 0.0) / max(n - 2, 1))
    gain = k * (n - k) / n * (right_mean - left_mean) ** 2
    gain = np.where(shift > 0, gain, -np.inf)
    best = int(np.argmax(gain))
    if not np.isfinite(gain[best]):
        return -1, 0.0
    # the scale: the smaller of the pooled standard deviation and a robust one (1.4826 x the MAD
    # of the residuals around the two levels): a 2.8 s TTFT spike inside a segment must not make a
    # plateau at twice the baseline look like 0.6 standard deviations
    split = int(k[best])
    resid = np.concatenate([y[:split] - left_mean[best], y[split:] - right_mean[best]])
    mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    scale = max(min(float(sd[best]), mad), floor, 1e-9 * max(1.0, abs(float(left_mean[best]))))
    return int(pos[split]), float(shift[best] / scale)


def find_onset(series: dict[str, tuple[np.ndarray, int]], end_index: int, fallback: int,
               floors: dict[str, float] | None = None) -> Onset:
    """The onset among ``series`` (name -> (values, bad direction)), scanned up to ``end_index``
    (the detection bin): the one with the strongest shift; ``fallback`` if none shifted."""
    best = Onset(fallback, 0.0, "")
    for name, (values, bad) in series.items():
        idx, stat = change_point(values[: end_index + 1], bad, floor=(floors or {}).get(name, 0.0))
        if idx >= 0 and stat > best.statistic:
            best = Onset(idx, stat, name)
    return best
