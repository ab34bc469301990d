"""Performance regression: is a recent window worse than a baseline (the window before it, or a named
baseline such as the previous deployment)?

Why Mann–Whitney U: latencies are skewed and heavy-tailed, so a rank test is valid where a t-test
is not; it needs no distribution assumption and is robust to outliers. A p-value alone flags
trivial shifts on large samples, so a minimum effect size (percent change of the median) is
required too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aphrodite_sla.sla.threshold import Direction

# Larger samples add little power and cost O(n log n): both sides are thinned to at most this many
# evenly spaced samples (deterministic, keeps the time spread).
MAX_TEST_SAMPLES = 5000


@dataclass(frozen=True)
class RegressionResult:
    """Outcome of one comparison. ``percent_change`` is of the median, recent vs baseline."""

    metric: str
    regressed: bool
    percent_change: float
    p_value: float
    baseline_median: float
    recent_median: float
    baseline_count: int
    recent_count: int
    effect_size: float  # probability that a recent sample is worse than a baseline one (0.5 = none)
    direction: Direction
    baseline_name: str | None = None
    reason: str = ""

    @property
    def message(self) -> str:
        if not self.regressed:
            return f"{self.metric}: no regression ({self.reason or f'{self.percent_change:+.1f}%, p={self.p_value:.3g}'})"
        return (
            f"{self.metric}: regression {self.percent_change:+.1f}% (median {self.baseline_median:.4g} -> "
            f"{self.recent_median:.4g}), p={self.p_value:.3g}, P(worse)={self.effect_size:.2f}"
        )


def _thin(x: np.ndarray) -> np.ndarray:
    if x.size <= MAX_TEST_SAMPLES:
        return x
    idx = np.linspace(0, x.size - 1, MAX_TEST_SAMPLES).astype(np.int64)
    return x[idx]


def detect_regression(
    baseline: np.ndarray,
    recent: np.ndarray,
    *,
    metric: str = "",
    direction: Direction = Direction.UPPER,
    min_effect_percent: float = 10.0,
    alpha: float = 0.01,
    min_samples: int = 20,
    baseline_name: str | None = None,
) -> RegressionResult:
    """Compare ``recent`` against ``baseline``. UPPER direction: an increase is a regression
    (latency); LOWER: a decrease is (throughput). Never raises on short or empty samples; the result
    then says why nothing was concluded."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"detect_regression: alpha must be in (0, 1), got {alpha!r}")
    if not math.isfinite(min_effect_percent) or min_effect_percent < 0:
        raise ValueError(f"detect_regression: min_effect_percent must be >= 0, got {min_effect_percent!r}")
    direction = Direction(direction)
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    r = np.asarray(recent, dtype=np.float64).reshape(-1)
    b = b[np.isfinite(b)]
    r = r[np.isfinite(r)]
    b_med = float(np.median(b)) if b.size else math.nan
    r_med = float(np.median(r)) if r.size else math.nan
    if b.size < min_samples or r.size < min_samples:
        return RegressionResult(
            metric, False, math.nan, math.nan, b_med, r_med, int(b.size), int(r.size), math.nan, direction,
            baseline_name, reason=f"too few samples (baseline {b.size}, recent {r.size}, need {min_samples})",
        )
    if b_med != 0.0:
        pct = (r_med - b_med) / abs(b_med) * 100.0
    else:
        pct = 0.0 if r_med == 0.0 else math.copysign(math.inf, r_med)
    from scipy.stats import mannwhitneyu  # imported only once there is something to compare

    worse = "greater" if direction is Direction.UPPER else "less"
    bt, rt = _thin(b), _thin(r)
    if np.ptp(np.concatenate((bt, rt))) == 0.0:
        p_value, effect = 1.0, 0.5
    else:
        res = mannwhitneyu(rt, bt, alternative=worse, method="asymptotic")
        p_value = float(res.pvalue)
        u = float(res.statistic) / (rt.size * bt.size)  # P(recent > baseline) + ties/2
        effect = u if direction is Direction.UPPER else 1.0 - u
    bad_change = pct if direction is Direction.UPPER else -pct
    regressed = p_value < alpha and bad_change >= min_effect_percent
    reason = ""
    if not regressed:
        if p_value >= alpha:
            reason = f"not significant (p={p_value:.3g} >= {alpha})"
        else:
            reason = f"effect {bad_change:+.1f}% below the minimum {min_effect_percent}%"
    return RegressionResult(
        metric, regressed, pct, p_value, b_med, r_med, int(b.size), int(r.size), effect, direction, baseline_name, reason
    )
