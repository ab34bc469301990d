"""The tail of a healthy history: how bad a window gets on a healthy day we have not seen yet.

Why: "the worst window of one day" is the largest of a sample, and the next day's largest is
above it about half the time (for two days alike, each is the worse one with probability 1/2).
A bound a little beyond that one maximum is broken by ordinary traffic within days. Extreme-value
theory says how far the maximum of a longer period reaches: the peaks of a stationary series over
a high threshold, once they are independent, have excesses that follow a generalised Pareto
distribution (Pickands–Balkema–de Haan), and the level exceeded once in ``N`` days follows from
its fit and the rate of peaks. The fit is scipy's (``scipy.stats.genpareto``); what is written
here is only the declustering and the return level.

How the history is used, and why:

* **Declustering.** Sliding windows overlap (a 5-minute window evaluated every 5 s shares 59 of
  60 intervals with its neighbour), so one burst lifts dozens of window values: they are one
  event, not dozens. Values beyond the threshold are grouped into runs, a run ending once the
  series has stayed at or below the threshold for one window length (no window then shares a
  sample with the run's), and only each run's maximum is kept.
* **Threshold.** The ``tail_share`` highest windows of the history (by default the top 10%). The
  daily curve makes hours unequal: the peaks beyond a high threshold come from the busy hours,
  which carry the tail, so the fit describes the busy hours (the quiet hours never reach that
  level and do not dilute it). The rate of peaks is counted per day of history, so a return level
  "once in N days" already includes that only a few hours a day can reach it.
* **Several days.** A history of a week is one longer series: more peaks, a steadier fit, the
  same rate per day. Nothing assumes the history is one day long.
* **Shape.** From a day or two of peaks the tail is taken as exponential (the Gumbel domain, where
  a queue's waiting times with light-tailed service belong): one parameter, an exact confidence
  interval. The shape is estimated (maximum likelihood) only from a long history (a week), where
  the data can tell a bounded or a heavy tail from an exponential one.
* **Uncertainty.** The bound is the upper confidence limit of the return level, not its estimate:
  a day of history says little about a month, and the bound pays for that (a week tightens it).
* **Too little history.** Fewer than ``min_peaks`` peaks and no fit is attempted; the caller falls
  back to the worst window plus the margin and says so.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class TailSettings:
    """How a healthy history's tail is fitted (defaults with the reason for each)."""

    # A month: healthy traffic should break a bound at most about once per SLO period (30 days, the
    # error-budget period the burn-rate rules use). A window beyond the bound alone pages nobody (the
    # sustained rule needs 80% of a window's points beyond), so this is a conservative horizon.
    return_period_days: float = 30.0
    # The bound is the upper end of a one-sided 90% confidence interval of that level, not the
    # estimate: from one day of history the estimate is below the true level about half the time,
    # and the bound should hold for the next month nine times in ten. More history narrows the
    # interval and brings the bound down toward the estimate.
    confidence: float = 0.90
    # The highest 10% of windows: a day's busy hours. Lower shares mix in the quiet hours' body,
    # which is not the tail; higher thresholds leave too few peaks in one day.
    tail_share: float = 0.10
    # Fewer independent peaks than this and a fit says nothing: fall back to worst + margin.
    min_peaks: int = 8
    # The shape is estimated from this many peaks or more (about a week of history); below it the
    # tail is taken as exponential (shape 0, the Gumbel domain): the waiting times of a queue with
    # light-tailed service have exponential tails, and from one day's 10-50 peaks the shape's
    # estimate is dominated by its small-sample bias toward a bounded tail (a ceiling that a burst
    # larger than the day's largest then breaks).
    shape_min_peaks: int = 150
    # With the shape estimated: its plausible range for a latency or load statistic (beyond 0.5 the
    # tail has no finite variance; below -0.5 the likelihood is irregular). Clipped, and said so.
    max_abs_shape: float = 0.5
    # With the shape estimated, the interval is a bootstrap of the peaks (seeded: one history, one bound).
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.return_period_days > 0 and math.isfinite(self.return_period_days)):
            raise ValueError(f"return_period_days must be a finite number > 0, got {self.return_period_days!r}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence!r}")
        if not 0.0 < self.tail_share < 1.0:
            raise ValueError(f"tail_share must be in (0, 1), got {self.tail_share!r}")
        if self.min_peaks < 3:
            raise ValueError(f"min_peaks must be at least 3, got {self.min_peaks!r}")
        if self.shape_min_peaks < self.min_peaks:
            raise ValueError(f"shape_min_peaks must be at least min_peaks ({self.min_peaks}), got {self.shape_min_peaks!r}")
        if self.bootstrap < 10:
            raise ValueError(f"bootstrap must be at least 10, got {self.bootstrap!r}")
        if not 0.0 <= self.max_abs_shape <= 1.0:
            raise ValueError(f"max_abs_shape must be in [0, 1], got {self.max_abs_shape!r}")


@dataclass(frozen=True)
class TailFit:
    """A generalised Pareto fit of a history's declustered peaks and its return level.

    ``estimate``: the value healthy traffic exceeds on average once in ``return_period_days``;
    ``limit``: the upper end of its one-sided ``confidence`` interval (what a bound uses);
    ``threshold``: where the peaks start; ``peaks``: independent peaks beyond it; ``peaks_per_day``:
    their rate; ``shape``/``scale``: the fit (``shape_fitted`` False: fixed at 0, exponential;
    ``clipped``: the estimate was outside ±``max_abs_shape``)."""

    estimate: float
    limit: float
    confidence: float
    threshold: float
    peaks: int
    peaks_per_day: float
    shape: float
    scale: float
    return_period_days: float
    shape_fitted: bool = False
    clipped: bool = False

    def describe(self, upper: bool = True) -> str:
        """One line for the report (``upper`` False: a lower-bound SLA's fit, in its own sign)."""
        if not self.shape_fitted:
            shape = "exponential tail"
        else:
            shape = f"shape {self.shape:+.2f}{' clipped' if self.clipped else ''}"
        return (f"once-in-{self.return_period_days:g}-days level {self.estimate:.4g}, {self.confidence:.0%} limit "
                f"{self.limit:.4g}, from {self.peaks} peaks {'over' if upper else 'under'} {self.threshold:.4g} "
                f"({self.peaks_per_day:.3g}/day, {shape})")

    def mirrored(self) -> TailFit:
        """A fit made on negated values (a lower-bound SLA's) in the statistic's own sign."""
        return replace(self, estimate=-self.estimate, limit=-self.limit, threshold=-self.threshold)


def declustered_peaks(ends: np.ndarray, values: np.ndarray, threshold: float, run_gap_s: float) -> np.ndarray:
    """The maximum of each run of values above ``threshold``; a run ends when no value above it came
    for ``run_gap_s`` (NaN values are below). ``ends`` ascending."""
    idx, starts = _runs(ends, values, np.isfinite(values) & (values > threshold), run_gap_s)
    if len(idx) == 0:
        return np.empty(0)
    return np.maximum.reduceat(values[idx], starts)


def _runs(ends: np.ndarray, values: np.ndarray, above: np.ndarray, run_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the windows marked ``above``, and where in them each run starts (a run ends
    when no marked window came for ``run_gap_s``)."""
    idx = np.flatnonzero(above)
    if len(idx) == 0:
        return idx, idx
    return idx, np.concatenate(([0], np.flatnonzero(np.diff(ends[idx]) > run_gap_s) + 1))


def return_level(threshold: float, shape: float, scale: float, peaks_per_day: float, days: float) -> float:
    """The level exceeded on average once in ``days`` by peaks arriving at ``peaks_per_day`` whose
    excesses over ``threshold`` are generalised Pareto (``shape``, ``scale``)."""
    m = peaks_per_day * days  # peaks expected in the period
    if m <= 1.0:
        return threshold
    if abs(shape) < 1e-9:
        return threshold + scale * math.log(m)
    return threshold + scale / shape * (m**shape - 1.0)


def _fit_shape(excesses: np.ndarray, max_abs_shape: float, start: tuple[float, float] | None = None) -> tuple[float, float, bool]:
    """(shape, scale, clipped): the maximum-likelihood generalised Pareto fit at location 0
    (``start``: a first guess, the full sample's fit for a bootstrap resample). A shape outside
    ``±max_abs_shape`` is clipped and the scale refitted for that shape, within the support (for a
    negative shape every excess must lie below scale / -shape)."""
    from scipy.optimize import minimize_scalar
    from scipy.stats import genpareto

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the optimiser's RuntimeWarnings on degenerate resamples
        if start is None:
            shape, _loc, scale = genpareto.fit(excesses, floc=0.0)
        else:
            shape, _loc, scale = genpareto.fit(excesses, start[0], floc=0.0, scale=start[1])
        if abs(shape) <= max_abs_shape and scale > 0:
            return float(shape), float(scale), False
        shape = math.copysign(max_abs_shape, shape)
        top = float(excesses.max())
        low = top * max(-shape, 0.0) * (1.0 + 1e-9) + 1e-12
        found = minimize_scalar(lambda c: -float(genpareto.logpdf(excesses, shape, 0.0, c).sum()), bounds=(low, 10.0 * top + low),
                                method="bounded")
    return float(shape), float(found.x), True


def fit_tail(ends: np.ndarray, values: np.ndarray, run_gap_s: float, span_s: float,
             settings: TailSettings = TailSettings()) -> TailFit | None:
    """The tail fit of a window series (larger is worse: negate a lower-bound SLA's values), or
    None when the history has fewer than ``settings.min_peaks`` independent peaks (or no spread:
    all peaks equal). ``run_gap_s``: the SLA's window length; ``span_s``: the time the history covers.

    With fewer than ``shape_min_peaks`` peaks the excesses are exponential: the scale's estimate is
    their mean (``scipy.stats.expon.fit``) and its confidence limit is exact (2n·mean/scale is
    chi-square with 2n degrees of freedom). With more, the shape is estimated too and the limit is
    a bootstrap percentile. The rate of peaks is taken as known (it enters through a logarithm)."""
    from scipy.stats import chi2, expon

    finite = values[np.isfinite(values)]
    if len(finite) == 0 or not span_s > 0:
        return None
    threshold = float(np.quantile(finite, 1.0 - settings.tail_share))
    peaks = declustered_peaks(ends, values, threshold, run_gap_s)
    excesses = peaks - threshold
    n = len(peaks)
    if n < settings.min_peaks or not np.ptp(excesses) > 0:
        return None
    rate = n * SECONDS_PER_DAY / span_s
    days = settings.return_period_days
    if n < settings.shape_min_peaks:
        _loc, scale = expon.fit(excesses, floc=0.0)
        limit_scale = 2.0 * n * scale / float(chi2.ppf(1.0 - settings.confidence, 2 * n))
        return TailFit(return_level(threshold, 0.0, scale, rate, days), return_level(threshold, 0.0, limit_scale, rate, days),
                       settings.confidence, threshold, n, rate, 0.0, float(scale), days)
    shape, scale, clipped = _fit_shape(excesses, settings.max_abs_shape)
    rng = np.random.default_rng(settings.seed)
    levels = []
    for _ in range(settings.bootstrap):
        sample = rng.choice(excesses, size=n, replace=True)
        if np.ptp(sample) > 0:
            s, c, _ = _fit_shape(sample, settings.max_abs_shape, (shape, scale))
            levels.append(return_level(threshold, s, c, rate, days))
    estimate = return_level(threshold, shape, scale, rate, days)
    limit = max(float(np.quantile(levels, settings.confidence)), estimate) if levels else estimate
    return TailFit(estimate, limit, settings.confidence, threshold, n, rate, shape, scale, days, True, clipped)


def incident_windows(ends: np.ndarray, values: np.ndarray, run_gap_s: float, span_s: float,
                     settings: TailSettings = TailSettings(), histories: float = 100.0, most: int = 5) -> np.ndarray:
    """Which windows of a "healthy" history belong to an overload or incident: the runs (as
    ``declustered_peaks`` forms them) whose peak lies beyond the level the *rest* of the history's
    tail reaches once in ``histories`` histories of this length, largest first, at most ``most``.
    The rest's tail has a shape of at least 0 (exponential): a fit's small-sample bias toward a
    bounded tail must not make an ordinary largest peak look impossible. Larger is worse (negate a
    lower-bound SLA's values). Returns a mask over ``values``; none when the history has too few
    peaks to judge."""
    out = np.zeros(len(values), dtype=bool)
    finite = np.isfinite(values)
    for _ in range(most):
        kept = finite & ~out
        if not kept.any():
            break
        threshold = float(np.quantile(values[kept], 1.0 - settings.tail_share))
        idx, starts = _runs(ends, values, kept & (values > threshold), run_gap_s)
        if len(starts) <= settings.min_peaks:  # the rest needs as many peaks as a fit does
            break
        peaks = np.maximum.reduceat(values[idx], starts)
        top = int(np.argmax(peaks))
        rest = np.delete(peaks, top) - threshold
        if not np.ptp(rest) > 0:
            break
        if len(rest) < settings.shape_min_peaks:
            shape, scale = 0.0, float(rest.mean())
        else:
            shape, scale, _ = _fit_shape(rest, settings.max_abs_shape)
            if shape < 0.0:
                shape, scale = 0.0, float(rest.mean())
        rate = len(peaks) * SECONDS_PER_DAY / span_s
        if peaks[top] <= return_level(threshold, shape, scale, rate, histories * span_s / SECONDS_PER_DAY):
            break
        end = starts[top + 1] if top + 1 < len(starts) else len(idx)
        out[idx[starts[top]:end]] = True
    return out


__all__ = ["TailFit", "TailSettings", "declustered_peaks", "fit_tail", "incident_windows", "return_level"]
