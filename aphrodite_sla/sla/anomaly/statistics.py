"""The change statistics: each looks for one kind of change and says how large it is as a
Gaussian-equivalent z, standardised by its own running spread (``scoring.RunningSpread``).

* ``LevelChange``: a fast EW level of the cleaned, deseasonalised value against a slow
  reference. With (0.1, 0.01) it sees level shifts within a few samples; with (0.02, 0.002) it
  sees slow drifts and ramps that a fast statistic follows without noticing. The reference stops
  learning while the detector alarms (an anomaly must not teach itself as normal) and restarts on
  the new level once that has persisted (``accept``): the score is an onset signal.
* ``ResidualRun``: an exponentially weighted sum of the clipped one-step residuals (a leaky
  CUSUM). A fast baseline follows a level shift within a few samples, so no single residual may
  be large, but they all have the same sign: the signature of a shift against a wandering metric
  whose slow levels are too noisy to see it.
* ``SpreadChange``: a short EW mean of ``|z|`` against a long one, as a log ratio: wider noise,
  a rising density of spikes, a pattern that no longer fits. It sees each residual
  ``persist - 1`` samples late, so the outliers of a level shift (which the baseline turns into a
  new level) count as ordinary, and only increases are scored.
* ``Flatline``: a run of identical values, as unlikely as the series' own rate of exact repeats
  says it is (a continuous metric that repeats its last value five times is stuck; a counter of
  rare errors repeating 0 is not), except at the most extreme values seen (utilisation pinned at
  its 100 % bound is saturation, for the level statistics to judge).

Each ``update`` folds in one sample and returns the statistic's z. Learning from a sample waits
until the detector knows whether it alarmed: ``update(..., learn)`` first learns from the
*previous* sample if ``learn`` (it did not alarm), then scores the new one. One call per sample
keeps the detector cheap; the arithmetic is the same as learning right after scoring.
"""

from __future__ import annotations

import math
from collections import deque

from aphrodite_sla.sla.anomaly.scoring import RunningSpread, ew_pair_sd, z_of_upper_tail

__all__ = ["Flatline", "LevelChange", "ResidualRun", "SpreadChange"]

GATE = 0.6  # spreads learn squares clipped at (GATE * threshold * spread)^2: ordinary values only
_CAP = 6.0  # |z| is capped here before it enters the spread statistic
_MIN_LONG = 0.4  # the spread statistic's reference mean |z| is at least half the Gaussian 0.8


class LevelChange:
    """Fast level against a slow reference (see the module docstring).

    After a (re)start both sides are running means of the same samples (weights ``1/n``) until
    the fast side's smoothing constant takes over, so a restart on one noisy sample does not
    leave the pair apart by that sample's noise."""

    __slots__ = ("a_fast", "a_ref", "diff", "fast", "floor", "k2_white", "k_white", "last", "n", "ref", "spread")

    def __init__(self, a_fast: float, a_ref: float, norm_alpha: float, threshold: float) -> None:
        self.a_fast = a_fast
        self.a_ref = a_ref
        self.k_white = ew_pair_sd(a_fast, a_ref)  # sd of fast - ref on white noise, in scales
        self.k2_white = self.k_white * self.k_white
        self.spread = RunningSpread(norm_alpha, GATE * threshold)
        self.fast = 0.0
        self.ref = 0.0
        self.n = 1  # samples since the pair was (re)started
        self.last = math.nan  # the previous sample's value, difference and floor (to learn from)
        self.diff = 0.0
        self.floor = 0.0

    def start(self, value: float) -> None:
        self.fast = self.ref = value
        self.n = 1

    def update(self, value: float, sigma: float, learn: bool) -> float:
        """Fold in a cleaned value (``sigma``: the residual scale); returns the signed z."""
        n = self.n
        sp = self.spread
        if learn and self.last == self.last and n * self.a_fast >= 1.0:
            a = self.a_ref
            self.ref += (1.0 / n if n * a < 1.0 else a) * (self.last - self.ref)
            sp.learn(self.diff, self.floor)
        n += 1
        self.n = n
        self.last = value
        a = self.a_fast
        if n * a < 1.0:  # still a running mean since the restart, and so is the reference
            self.fast += (value - self.fast) / n
            self.ref = self.fast
            self.diff = 0.0
            return 0.0
        self.fast += a * (value - self.fast)
        diff = self.fast - self.ref
        # a young reference is a running mean of n samples, with its own noise of 1 / sqrt(n)
        floor = sigma * (self.k_white if n * self.a_ref >= 1.0 else math.sqrt(self.k2_white + 1.0 / n))
        self.diff = diff
        self.floor = floor
        s = sp.rms
        return diff / (s if s > floor else floor)

    def accept(self) -> float:
        """The change has kept alarming: restart the pair on the new level, and take a change of
        that size as less news for a while (the running spread widens to a quarter of it, so the
        same change again is z = 4, and relearns from there): a ramp that goes on does not page
        again every few dozen samples. Returns the reference's move."""
        delta = self.fast - self.ref
        self.ref = self.fast
        self.n = 1
        self.last = math.nan
        self.spread.widen(0.25 * delta)
        return delta

    def jump(self, value: float, accept: bool) -> float:
        """The baseline jumped to a new level: the fast side follows at once; the pair restarts
        there when the jump is ``accept``-ed (already alarmed, or a familiar kind), else the
        change is still measured until it is accepted. Returns the reference's move."""
        self.fast = value
        if not accept:
            return 0.0
        delta = value - self.ref
        self.ref = value
        self.n = 1
        self.last = math.nan
        return delta


class ResidualRun:
    """Leaky sum of clipped residuals (see the module docstring)."""

    __slots__ = ("clip", "decay", "g", "k_white", "spread")

    def __init__(self, decay: float, clip: float, norm_alpha: float, threshold: float) -> None:
        self.decay = decay
        self.clip = clip
        self.k_white = 1.0 / math.sqrt(1.0 - decay * decay)  # sd of g on white N(0, 1) residuals
        self.spread = RunningSpread(norm_alpha, GATE * threshold)
        self.g = 0.0

    def update(self, z: float, learn: bool) -> float:
        """Fold in the residual z; returns the signed z of the run."""
        sp = self.spread
        floor = self.k_white
        if learn:
            sp.learn(self.g, floor)
        c = self.clip
        g = self.g * self.decay + (c if z > c else (-c if z < -c else z))
        self.g = g
        s = sp.rms
        return g / (s if s > floor else floor)

    def accept(self) -> None:
        self.g = 0.0


class SpreadChange:
    """Short against long mean ``|z|`` (see the module docstring)."""

    __slots__ = ("a_long", "a_short", "fed", "k_white", "log_ratio", "long", "n", "queue", "short", "spread")

    def __init__(self, a_short: float, a_long: float, norm_alpha: float, threshold: float, delay: int) -> None:
        self.a_short = a_short
        self.a_long = a_long
        # sd of log(EW mean |z| / E|z|) for Gaussian z: sqrt(var|z| / E|z|^2 * a / (2 - a))
        self.k_white = math.sqrt((math.pi / 2.0 - 1.0) * a_short / (2.0 - a_short))
        self.spread = RunningSpread(norm_alpha, GATE * threshold)
        self.short = math.sqrt(2.0 / math.pi)
        self.long = self.short
        self.n = 0
        self.queue: deque[float] = deque([self.short] * delay, maxlen=delay) if delay > 0 else deque()
        self.fed = math.nan  # the previous sample's (delayed) |z| and log ratio, to learn from
        self.log_ratio = 0.0

    def update(self, az: float, recentred: bool, run: int, learn: bool) -> float:
        """Fold in ``|z|`` (capped); ``recentred``: the baseline just jumped to a new level, so
        the last ``run`` queued residuals were a level shift, not spread. Returns z (>= 0)."""
        sp = self.spread
        floor = self.k_white
        if learn and self.fed == self.fed:
            n = self.n + 1
            self.n = n
            self.long += (1.0 / n if n * self.a_long < 1.0 else self.a_long) * (self.fed - self.long)
            lr = self.log_ratio
            sp.learn(lr if lr > 0.0 else 0.0, floor)  # only increases are scored
        q = self.queue
        if recentred:  # the queued outliers of the run were a level shift: count them as ordinary
            k = len(q)
            for i in range(max(0, k - run), k):
                q[i] = self.long
        a = az if az < _CAP else _CAP
        if q.maxlen:
            old = q[0]
            q.append(a)  # maxlen drops the oldest
            a = old
        self.fed = a
        self.short += self.a_short * (a - self.short)
        # against at least half the Gaussian mean |z|: where the scale sits at its floor (a
        # near-constant metric) |z| is ~0, and 0.001 -> 0.01 is no change of spread
        lo = self.long if self.long > _MIN_LONG else _MIN_LONG
        r = self.short / lo if self.short > _MIN_LONG else 1.0
        lr = math.log(r) if r > 1e-300 else -690.0
        self.log_ratio = lr
        s = sp.rms
        z = lr / (s if s > floor else floor)
        return z if z > 0.0 else 0.0

    def accept(self) -> float:
        """The new spread has persisted: returns the factor by which it grew, and adopts it."""
        lo = self.long if self.long > _MIN_LONG else _MIN_LONG
        factor = self.short / lo if self.short > lo else 1.0
        self.long = self.short
        return factor


class Flatline:
    """A run of identical values against the series' own repeat rate (see the module docstring)."""

    __slots__ = ("hi", "last", "lo", "min_run", "n", "p_repeat", "run", "stuck_at")

    def __init__(self, min_run: int) -> None:
        self.min_run = min_run
        self.p_repeat = 0.0
        self.n = 0
        self.last = math.nan
        self.run = 0  # repeats of ``last`` so far
        self.stuck_at = math.nan  # a stuck value that was accepted (no second alarm on it)
        self.hi = -math.inf  # the extremes seen: a metric clipped at 100 % or 0 repeats its bound
        self.lo = math.inf

    def update(self, x: float, learn: bool) -> float:
        """Fold in the raw value; returns z of the current run (0 when short or accepted)."""
        if learn and self.last == self.last:
            n = self.n + 1
            self.n = n
            self.p_repeat += (1.0 / n if n < 500 else 0.002) * ((1.0 if self.run else 0.0) - self.p_repeat)
        if x == self.last:
            run = self.run + 1
        else:
            run = 0
            self.stuck_at = math.nan
            if x > self.hi:
                self.hi = x
            if x < self.lo:
                self.lo = x
        self.run = run
        self.last = x
        if run < self.min_run or x in (self.stuck_at, self.hi, self.lo):
            return 0.0
        p = self.p_repeat
        floor = 1.0 / (self.n + 2)
        if p < floor:
            p = floor
        if p < 0.01:
            p = 0.01
        if p >= 1.0:
            return 0.0
        return z_of_upper_tail(math.exp(run * math.log(p)))

    def accept(self) -> None:
        self.stuck_at = self.last
