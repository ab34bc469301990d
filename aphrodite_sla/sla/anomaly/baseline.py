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
  a millionth is still no anomaly. A metric whose measured scale is below that step floor stands
  still between steps of its resolution (a configured size, a pool that grows by one): its level
  moves by whole steps, and the level statistics are measured in a scale of at least
  ``step_floor`` typical steps (in ``detector._step``), so that one step is its ordinary change
  and three steps still page. Without it a one-quantum step of a near-constant gauge was a 10-sd
  level shift (22 of the development half's false alarms were such steps on healthy stretches).
  Not so for a sparse count (errors a minute, mostly 0): its steps are blips that undo
  themselves at the next sample, and a rate that rises from 0.05 to 1 a minute is a level shift
  of one step; ``stepped`` learns which of the two a still metric is.
* **Tail matching.** Real residuals are heavier-tailed than Gaussian. A running estimate of the
  ``tail_quantile`` (99 %) of ``|z|`` rescales z so that this quantile maps to the Gaussian one
  (never upwards): "5 sd" comes to mean "as rare as 5 sd would be for Gaussian noise". It is
  learned from isolated deviations only (a run of outliers counts once), so a metric that often
  jumps between levels does not teach it that every sample may be far out.
"""

from __future__ import annotations

import math

from aphrodite_sla.sla.anomaly.scoring import MAD_TO_SD, two_sided_z
from aphrodite_sla.sla.anomaly.transform import Transform

__all__ = ["ABS_FLOOR", "MAD_TO_SD", "TAIL_STEP", "UNDONE", "RobustBaseline"]

ABS_FLOOR = 1e-12  # below any real metric's resolution; only keeps divisions finite
TAIL_STEP = 0.05  # log-step of the stochastic-approximation quantile tracker
UNDONE = 0.2  # share of a still metric's steps that undo the previous sample's: above it, its steps are blips
# (a sparse count's 0 -> 1 -> 0: about half of its steps), not a gauge's moves (almost none), and it gets no step floor
_UNDO_MEMORY = 20  # steps over which that share is learned (a running mean of the first ones)


class RobustBaseline:
    """One-step level, residual scale and tail matching (see the module docstring): the state,
    seeded by ``start``; the per-sample arithmetic is in ``detector.AnomalyDetector._step``.

    ``z`` is the last residual in scales (``e`` in model units) and ``sigma`` the floored scale it
    was measured in (both to learn from once the sample is known to be normal); ``run`` and
    ``run_sign`` count same-sign outliers in a row; ``jump`` is the mean of non-zero
    ``|y_t - y_(t-1)|`` (the metric's typical step, its resolution: a running mean over the
    first ``n_jumps`` <= 20 steps, then an EW mean)."""

    __slots__ = (
        "alpha",
        "c",
        "e",
        "jump",
        "last_y",
        "level",
        "log_space",
        "mad",
        "n_jumps",
        "persist",
        "q_gauss",
        "rel_floor",
        "run",
        "run_sign",
        "scale_alpha",
        "sigma",
        "step_at",
        "step_last",
        "steps",
        "tail_down",
        "tail_q",
        "tail_up",
        "undo",
        "z",
    )

    def __init__(self, alpha: float, scale_alpha: float, huber_c: float, persist: int, rel_floor: float,
                 tail_quantile: float, transform: Transform) -> None:
        self.alpha = alpha
        self.scale_alpha = scale_alpha
        self.c = huber_c
        self.persist = persist
        self.rel_floor = rel_floor
        self.log_space = transform.log_space
        self.q_gauss = two_sided_z(1.0 - tail_quantile)
        # quantile tracker: log q += step * (1{|z| > q} - (1 - p)), at equilibrium P(|z| > q) = 1 - p
        self.tail_up = math.exp(TAIL_STEP * tail_quantile)
        self.tail_down = math.exp(-TAIL_STEP * (1.0 - tail_quantile))
        self.level = 0.0
        self.mad = 0.0
        self.jump = 0.0
        self.n_jumps = 0
        self.last_y = math.nan
        self.tail_q = self.q_gauss
        self.run = 0
        self.run_sign = 0
        self.e = 0.0
        self.z = 0.0
        self.sigma = 0.0
        self.undo = 0.0  # share of a still metric's steps that undo the previous sample's step
        self.steps = 0  # steps counted in it (up to _UNDO_MEMORY)
        self.step_at = -2  # sample number and size of the last step counted
        self.step_last = 0.0

    def start(self, level: float, sd: float, jump: float, n_jumps: int, last_y: float) -> None:
        """Seed from the warm-up: level, residual sd, typical step and its count, last value."""
        self.level = level
        self.mad = sd / MAD_TO_SD
        self.jump = jump
        self.n_jumps = n_jumps
        self.last_y = last_y

    def stepped(self, step: float, n: int) -> None:
        """A metric that stands still (its scale at the step floor) moved by ``step`` at sample
        ``n``: learn how often a step of about its resolution undoes the one just before it. A
        gauge's steps persist (its level moved); a sparse count's 0 -> 1 -> 0 undo themselves, and
        its level is the rate of such blips, for the level statistics to judge in its own scale.
        Called only on such steps (rare), so it may be a call."""
        a = step if step >= 0.0 else -step
        if a <= 2.0 * self.jump:  # larger steps are spikes or shifts, not the metric's resolution
            k = self.steps + 1 if self.steps < _UNDO_MEMORY else _UNDO_MEMORY
            self.steps = k
            undo = 1.0 if self.step_at == n - 1 and step * self.step_last < 0.0 else 0.0
            self.undo += (undo - self.undo) / k
        self.step_at = n
        self.step_last = step

    def rescale(self, factor: float) -> None:
        """Accept a new spread: the residual scale becomes ``factor`` times what it was."""
        self.mad *= factor
