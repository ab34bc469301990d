"""From a change statistic to a score: standardising it by its own running spread, and the curve
that maps "this many thresholds" to [0, 1].

Every statistic the detector computes is a difference of running means or a log ratio of running
scales. Its spread under ordinary behaviour is not known in advance (residuals of real metrics
are autocorrelated and heavy-tailed), so each is divided by a running estimate of its own spread
learned from ordinary samples only - the same idea as the "anomaly likelihood" of Numenta's HTM
detector, which judges a raw score against the recent distribution of raw scores. The estimate
never goes below the spread the statistic would have on white noise, and each squared value it
learns from is clipped, so that an anomaly which builds up slowly cannot teach it that the
anomaly is normal before it crosses the alert level.
"""

from __future__ import annotations

import math

__all__ = ["RunningSpread", "ew_pair_sd", "gauss_two_sided_tail", "score_of_ratio", "two_sided_z", "z_of_upper_tail",
           "z_to_score"]

_LN2 = math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)


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
    """Running root-mean-square of a statistic, learned from ordinary values (see module doc).

    A statistic is standardised by ``max(rms, floor)``, ``floor`` being its white-noise spread
    (which may change with the residual scale). ``learn(x, floor)`` folds in one value, its square
    clipped at ``(gate * max(rms, floor))^2``; the first values are averaged (weights 1/n) so that
    it settles fast.
    """

    __slots__ = ("alpha", "gate2", "ms", "n", "rms")

    def __init__(self, alpha: float, gate: float) -> None:
        self.alpha = alpha
        self.gate2 = gate * gate
        self.ms = 0.0
        self.rms = 0.0  # sqrt(ms), kept so that ``sd`` costs no square root
        self.n = 0

    def learn(self, x: float, floor: float) -> None:
        n = self.n + 1
        self.n = n
        a = 1.0 / n if n * self.alpha < 1.0 else self.alpha
        s2 = self.ms if self.ms > floor * floor else floor * floor
        sq = x * x
        lim = self.gate2 * s2
        self.ms += a * ((sq if sq < lim else lim) - self.ms)
        self.rms = math.sqrt(self.ms)

    def widen(self, x: float) -> None:
        """Take a value of size ``x`` as ordinary from now on (the spread relearns from there)."""
        sq = x * x
        if sq > self.ms:
            self.ms = sq
            self.rms = math.sqrt(sq)
