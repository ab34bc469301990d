"""``SeasonFit``: is the daily pattern still there? (a season gone flat, or hours early or late)

Why: when a metric's daily pattern goes flat (a holiday, a stuck load balancer) its level does
not change; in the deseasonalised series the level then follows the *negative* of the seasonal
offset ``s`` that is being subtracted, slowly, for hours. The level statistics see that only where
``|s|`` is large and of one sign, against a spread that the metric's own wander sets, and each
judges one sample's level at a time.

How: a regression of the level deviation ``r`` (the level statistic's fast level minus its
reference, deseasonalised) on the applied offset ``s``:
``T = EW(s * r) / sqrt(EW(s^2))``. Where the pattern holds, ``r`` is uncorrelated with ``s`` and
``T`` wanders around 0; where it is missing (``r ~ -s``), ``T ~ -rms(s)`` whichever the sign of
``s``, so the evidence adds up through the day; a pattern stronger than expected (``T > 0``) is
not scored (a busier day is a level question). Dividing by ``sqrt(EW(s^2))`` keeps ``T``'s noise
about constant through the day: near a zero crossing of ``s`` it neither explodes nor vanishes.
``T`` is judged against its own robust running spread (``scoring.RunningSpread``, learned from
ordinary samples while a profile applies), so a metric whose level wander happens to follow its
season needs a larger deficit to alarm.

When not: while no profile is applied (``s == 0``: a 24-hour-old metric, a metric without a daily
pattern) nothing is computed, so it cannot add false alarms there; and until the daily profile
has folded ``min_cycles`` days: a profile learned from its first two or three days carries their
noise, and its own error looks exactly like a deficit of the pattern (measured on the
development half: false alarms in the first days of seasonal series, from a third day on).

Onset: it accepts a missing pattern after ``persist`` alarming samples (not ``adapt_samples``:
a ~50-sample mean has built up for dozens of samples when it crosses), and the level statistic
accepts the level deviation with it, so the score decays.

Cost: ``T`` moves over ~50 samples, so it is updated on every other sample at twice the rate, and
its ratio is held in between (``detector.AnomalyDetector._step`` writes the lines out).
"""
from __future__ import annotations

import math

from aphrodite_sla.sla.anomaly.scoring import RunningSpread
from aphrodite_sla.sla.anomaly.statistics import SPREAD_CLIP, SPREAD_EVERY

__all__ = ["ACCEPT_WIDEN", "SeasonFit"]

ACCEPT_WIDEN = 1.0  # an accepted deficit of size D makes D one spread: the same missing pattern scores z = 1
# (below any threshold) until the spread relearns; with statistics.WIDEN (z = 4) it re-alarmed above its 3.5


class SeasonFit:
    """State of the season-fit statistic (see the module docstring): ``sr`` and ``ss`` the EW
    means of ``s * r`` and ``s^2`` (updated every ``SPREAD_EVERY`` samples at that multiple of
    ``alpha``), ``t`` the last ``T``, ``ratio`` its last ratio to the threshold (held between
    updates), ``spread`` its running spread; it scores once ``spread`` has ``min_learned``
    updates and the daily profile ``min_cycles`` folded days."""

    __slots__ = ("alpha", "floor_k", "min_cycles", "min_learned", "ratio", "spread", "sr", "ss", "t")

    def __init__(self, alpha: float, norm_alpha: float, min_samples: int, min_cycles: int) -> None:
        self.alpha = SPREAD_EVERY * alpha
        # sd of T for white residuals, as a share of the level statistic's white-noise floor:
        # an EW mean of (nearly independent) products over ~2 / alpha samples
        self.floor_k = math.sqrt(alpha / (2.0 - alpha))
        self.spread = RunningSpread(SPREAD_EVERY * norm_alpha, SPREAD_CLIP)
        self.min_learned = min_samples // SPREAD_EVERY
        self.min_cycles = min_cycles
        self.sr = 0.0
        self.ss = 0.0
        self.t = 0.0
        self.ratio = 0.0

    def accept(self) -> None:
        """The missing pattern has kept alarming: the evidence restarts (the profile relearns the
        new pattern) and a deficit of this size is no news for a while (``ACCEPT_WIDEN``)."""
        self.spread.widen(ACCEPT_WIDEN * self.t)
        self.sr = 0.0
        self.t = 0.0
        self.ratio = 0.0
