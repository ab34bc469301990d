"""From a change statistic to a score: standardising it by its own running spread, and the curve
that maps "this many thresholds" to [0, 1].

Every statistic the detector computes is a difference of running means or a log ratio of running
scales. Its spread under ordinary behaviour is not known in advance (residuals of real metrics
are autocorrelated and heavy-tailed), so each is divided by a running estimate of its own spread
learned from ordinary samples only - the same idea as the "anomaly likelihood" of Numenta's HTM
detector, which judges a raw score against the recent distribution of raw scores. The estimate
never goes below the spread the statistic would have on white noise, and it is robust: a mean
absolute value with each value clipped at twice the current spread, so that neither an outlier
nor an anomaly which builds up slowly (or a long one that was learned in part before it was
accepted) can teach it that large values are normal. A mean of squares clipped at three spreads,
as before, let a sub-threshold change widen the spread by a third within a few dozen samples.
"""

from __future__ import annotations

import math

__all__ = ["MAD_TO_SD", "RunningSpread", "ew_pair_sd", "gauss_two_sided_tail", "log_two_sided_tail", "score_of_ratio",
           "two_sided_z", "z_of_upper_tail", "z_to_score"]

_LN2 = math.log(2.0)
MAD_TO_SD = math.sqrt(math.pi / 2.0)  # Gaussian sd / mean absolute deviation
_SQRT1_2 = math.sqrt(0.5)
_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)


def z_to_score(z: float, threshold_z: float) -> float:
    """Map ``|z|`` to [0, 1]: 0.5 at ``threshold_z``, smooth and monotone; NaN maps to 0."""
    if math.isnan(z):
        return 0.0
    return score_of_ratio(abs(z) / threshold_z)


def score_of_ratio(r: float) -> float:
    """``1 - 2 ** -(r ** 2)`` for ``r`` = |z| / threshold: 0 without evidence, 0.5 at the
    threshold, 0.94 at twice it."""
    if r > 8.0:
        return 1.0
    return 1.0 - math.exp(-_LN2 * r * r)


def gauss_two_sided_tail(z: float) -> float:
    """P(|Z| >= z) for a standard Gaussian Z."""
    return math.erfc(abs(z) * _SQRT1_2)


def log_two_sided_tail(z: float) -> float:
    """log P(|Z| >= z) for ``z`` >= 0, also where the tail underflows (the Mills-ratio asymptote
    beyond 30, where erfc is below 1e-197)."""
    if z < 30.0:
        return math.log(math.erfc(z * _SQRT1_2))
    return -0.5 * z * z - math.log(z) + _LOG_SQRT_2_OVER_PI


def z_of_upper_tail(p: float) -> float:
    """z with upper-tail probability ``p`` under a standard Gaussian (Abramowitz-Stegun 26.2.23,
    |error| < 5e-4); 0 for p >= 0.5. Two-sided: ``z_of_upper_tail(p / 2)``."""
    if p >= 0.5:
        return 0.0
    if p < 1e-300:
        p = 1e-300
    t = math.sqrt(-2.0 * math.log(p))
    num = 2.515517 + 0.802853 * t + 0.010328 * t * t
    return t - num / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)


def two_sided_z(p: float) -> float:
    """|z| whose two-sided Gaussian tail probability is ``p``, to full precision (bisection on
    erfc: for setting constants up, not per sample)."""
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.erfc(mid * _SQRT1_2) > p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ew_pair_sd(a1: float, a2: float) -> float:
    """Standard deviation, in white-noise sd units, of the difference of two EW means with
    smoothing constants ``a1`` and ``a2`` fed the same white noise."""
    v = a1 / (2.0 - a1) + a2 / (2.0 - a2) - 2.0 * a1 * a2 / (a1 + a2 - a1 * a2)
    return math.sqrt(max(v, 0.0))


class RunningSpread:
    """Robust running spread of a statistic, learned from ordinary values (see module doc).

    A statistic is standardised by ``max(sd, floor)``, ``floor`` being its white-noise spread
    (which may change with the residual scale). ``sd`` is a running mean absolute value times
    sqrt(pi / 2) (a Gaussian sd), each absolute value clipped at ``clip`` times the current
    ``max(sd, floor)``: a value far out moves it by a bounded step, so neither an outlier nor an anomaly
    that builds up below the alert level for a while can widen it much (a mean of squares,
    which an outlier moves by its square, could). The first values are averaged (weights 1/n) so
    that it settles fast.
    """

    __slots__ = ("alpha", "clip", "n", "sd")

    def __init__(self, alpha: float, clip: float) -> None:
        self.alpha = alpha
        self.clip = clip
        self.sd = 0.0
        self.n = 0

    def learn(self, x: float, floor: float) -> None:
        n = self.n + 1
        self.n = n
        s = self.sd if self.sd > floor else floor
        ax = x if x >= 0.0 else -x
        lim = self.clip * s
        self.sd += (1.0 / n if n * self.alpha < 1.0 else self.alpha) * ((ax if ax < lim else lim) * MAD_TO_SD - self.sd)

    def widen(self, x: float) -> None:
        """Take a value of size ``x`` as ordinary from now on (the spread relearns from there)."""
        ax = x if x >= 0.0 else -x
        if ax > self.sd:
            self.sd = ax
