"""The robust one-step baseline: what the next (deseasonalised) value should be, and how far off
it may normally be.

* **Level.** An exponentially weighted level predicts the next value. Its updates are
  Huber-clipped at ``huber_c`` residual scales, so a spike barely moves it; ``persist`` outliers
  of the same sign in a row mean the metric has moved, and the level jumps to the new value
  instead of crawling after it (which would keep the score up for many samples).
* **Scale.** An exponentially weighted mean absolute residual (Huber-clipped, times
  sqrt(pi / 2) to a Gaussian sd), floored by the larger of half the metric's typical non-zero step
  (its resolution: integer counts, 0.01 % utilisation) and ``relative_floor`` of its level (see
  ``transform.py``). A metric that has been exactly 3072.0 for hours has no spread; a change of
  a millionth is still no anomaly.
* **Tail matching.** Real residuals are heavier-tailed than Gaussian. A running estimate of the
  ``tail_quantile`` (99 %) of ``|z|`` rescales z so that this quantile maps to the Gaussian one
  (never upwards): "5.5 sd" comes to mean "as rare as 5.5 sd would be for Gaussian noise". It is
  learned from isolated deviations only (a run of outliers counts once), so a metric that often
  jumps between levels does not teach it that every sample may be far out.
"""

from __future__ import annotations

import math

from aphrodite_sla.sla.anomaly.scoring import two_sided_z
from aphrodite_sla.sla.anomaly.transform import Transform

__all__ = ["MAD_TO_SD", "RobustBaseline"]

MAD_TO_SD = math.sqrt(math.pi / 2.0)  # Gaussian sd / mean absolute deviation
_ABS_FLOOR = 1e-12  # below any real metric's resolution; only keeps divisions finite
_TAIL_STEP = 0.05  # log-step of the stochastic-approximation quantile tracker


class RobustBaseline:
    """One-step level, residual scale and tail matching (see the module docstring).

    Per sample: ``observe(d, y, learn)`` (first learns from the previous sample if ``learn``)
    computes the residual of the deseasonalised value ``d`` and sets ``z`` (signed, in scales),
    ``tail_z`` (``|z|`` after tail matching) and ``sigma``; ``y`` is the model-space value before
    deseasonalising, whose steps measure the resolution. ``advance(d)`` then moves the level and
    sets ``cleaned`` (the value with its residual clipped: what slower statistics see) and
    ``recentred`` (the level jumped to a new value).
    """

    __slots__ = (
        "alpha",
        "c",
        "cleaned",
        "e",
        "jump",
        "last_y",
        "level",
        "mad",
        "n_jumps",
        "persist",
        "q_gauss",
        "recentred",
        "rel_floor",
        "run",
        "run_sign",
        "scale_alpha",
        "sigma",
        "tail_down",
        "tail_q",
        "tail_up",
        "tail_z",
        "transform",
        "z",
    )

    def __init__(self, alpha: float, scale_alpha: float, huber_c: float, persist: int, rel_floor: float,
                 tail_quantile: float, transform: Transform) -> None:
        self.alpha = alpha
        self.scale_alpha = scale_alpha
        self.c = huber_c
        self.persist = persist
        self.rel_floor = rel_floor
        self.transform = transform
        self.q_gauss = two_sided_z(1.0 - tail_quantile)
        # quantile tracker: log q += step * (1{|z| > q} - (1 - p)), at equilibrium P(|z| > q) = 1 - p
        self.tail_up = math.exp(_TAIL_STEP * tail_quantile)
        self.tail_down = math.exp(-_TAIL_STEP * (1.0 - tail_quantile))
        self.level = 0.0
        self.mad = 0.0
        self.jump = 0.0  # EW mean of non-zero |y_t - y_(t-1)|: the metric's typical step
        self.n_jumps = 0
        self.last_y = math.nan
        self.tail_q = self.q_gauss
        self.run = 0  # same-sign outliers in a row ...
        self.run_sign = 0  # ... and their sign
        self.e = 0.0
        self.z = 0.0
        self.tail_z = 0.0
        self.sigma = 0.0
        self.cleaned = 0.0
        self.recentred = False

    def start(self, level: float, sd: float, jump: float, n_jumps: int, last_y: float) -> None:
        """Seed from the warm-up: level, residual sd, typical step and its count, last value."""
        self.level = level
        self.mad = sd / MAD_TO_SD
        self.jump = jump
        self.n_jumps = n_jumps
        self.last_y = last_y

    def observe(self, d: float, y: float, learn: bool) -> None:
        if learn and self.sigma > 0.0:  # the previous sample did not alarm: learn from it first
            self._learn()
        sigma = MAD_TO_SD * self.mad
        f = 0.5 * self.jump
        if f > sigma:
            sigma = f
        f = self.transform.relative_floor(self.level, self.rel_floor)
        if f > sigma:
            sigma = f
        if sigma < _ABS_FLOOR:
            sigma = _ABS_FLOOR
        e = d - self.level
        z = e / sigma
        self.e = e
        self.z = z
        self.sigma = sigma
        az = z if z >= 0.0 else -z
        q = self.tail_q
        self.tail_z = az * self.q_gauss / q if q > self.q_gauss else az
        # the metric's typical step (its resolution), from the model value before deseasonalising
        dy = y - self.last_y
        if dy < 0.0:
            dy = -dy
        if dy > 0.0:
            n = self.n_jumps + 1
            self.n_jumps = n
            if n > 10 and dy > 10.0 * self.jump:
                dy = 10.0 * self.jump
            self.jump += (1.0 / n if n < 20 else 0.05) * (dy - self.jump)
        self.last_y = y

    def advance(self, d: float, news: float) -> None:
        """Move the level after ``observe``: a Huber step, or a jump after a persistent run.
        ``news`` (0..1) scales an outlier's step: one that is old news (it lands on a familiar
        level) neither moves the level nor shows in ``cleaned``."""
        z = self.z
        c = self.c
        self.recentred = False
        if z > c or z < -c:
            sign = 1 if z > 0.0 else -1
            if sign == self.run_sign:
                self.run += 1
            else:
                self.run = 1
                self.run_sign = sign
            if self.run >= self.persist:  # a new level: follow it rather than clip it
                self.level = d
                self.cleaned = d
                self.recentred = True
                self.run = 0
                self.run_sign = 0
                return
            ec = sign * c * self.sigma * news
        else:
            self.run = 0
            self.run_sign = 0
            ec = self.e
        self.cleaned = self.level + ec
        self.level += self.alpha * ec

    def _learn(self) -> None:
        """Update the scale and the tail quantile from the last (normal) sample."""
        ae = self.e if self.e >= 0.0 else -self.e
        lim = self.c * self.sigma
        self.mad += self.scale_alpha * ((ae if ae < lim else lim) - self.mad)
        if self.run > 1:
            return  # the tail is learned from isolated deviations: a run counts once
        az = self.z if self.z >= 0.0 else -self.z
        self.tail_q *= self.tail_up if az > self.tail_q else self.tail_down
        if self.tail_q < self.q_gauss:
            self.tail_q = self.q_gauss

    def rescale(self, factor: float) -> None:
        """Accept a new spread: the residual scale becomes ``factor`` times what it was."""
        self.mad *= factor
