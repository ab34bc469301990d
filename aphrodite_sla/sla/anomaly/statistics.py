"""The change statistics: each looks for one kind of change and says how large it is as a
Gaussian-equivalent z, standardised by its own robust running spread (``scoring.RunningSpread``).

* ``LevelChange``: a fast EW level of the cleaned, deseasonalised value against a slow
  reference. With (0.1, 0.01) it sees level shifts within a few samples; with (0.02, 0.002) it
  sees slow drifts and ramps that a fast statistic follows without noticing. The reference stops
  learning while the detector alarms (an anomaly must not teach itself as normal) and restarts on
  the new level once that has persisted (``accept``): the score is an onset signal. The level
  statistic's reference learns from values ``delay`` samples old (a two-window test): a shift
  that has not alarmed yet is compared with the level before it for that long, instead of being
  absorbed by the reference while its own evidence builds up.
* ``ResidualRun``: an exponentially weighted sum of the clipped one-step residuals (a leaky
  CUSUM). A fast baseline follows a level shift within a few samples, so no single residual may
  be large, but they all have the same sign: the signature of a shift against a wandering metric
  whose slow levels are too noisy to see it.
* ``SpreadChange``: a short EW mean of ``|z|`` against a long one, as a log ratio: wider noise,
  a rising density of spikes, a pattern that no longer fits. It sees each residual
  ``persist - 1`` samples late, so the outliers of a level shift (which the baseline turns into a
  new level) count as ordinary, and only increases are scored.
* ``ExceedanceRate``: a rising density of outliers. Each spike is judged by its size (and
  discounted once its kind recurs), so moderate outliers that come ever faster page nowhere else;
  a Bernoulli CUSUM on "a new outlier run starts here" against the series' own long-run rate of
  them sees the rate, not the size, and a metric that is spiky by nature has a high learned rate.
  It is one-sided: an episode adds up the outliers of one sign against that sign's learned rate.
* ``Flatline``: a run of identical values, as unlikely as the series' own rate of exact repeats
  says it is (a continuous metric that repeats its last value five times is stuck; a counter of
  rare errors repeating 0 is not), except at the most extreme values seen (utilisation pinned at
  its 100 % bound is saturation, for the level statistics to judge).
* ``PersistentEvidence``: sub-threshold evidence that persists. A slow ramp, a season that goes
  flat or a spread that widens by half often holds the strongest statistic at 0.5-0.9 of its
  threshold for dozens of samples without ever crossing it; on a healthy metric such values
  come and go. It adds up the fast statistics (spike, level shift and residual run, variance
  change) and the combination of all four, not the drift statistic alone, whose 50-sample level is correlated
  for that long: a wandering metric holds it near its threshold for as long, as one piece of
  evidence. A leaky CUSUM of the strongest ratio above a floor adds that up (the idea of NAB's
  "anomaly likelihood": a short run of raw scores judged together, not one at a time). It fires
  once per episode: after any alarm it waits until the strongest ratio has fallen below the floor.

Each class holds its statistic's state and operations; ``LevelChange.step`` is its per-sample
step, the other statistics' few lines are written out in ``detector.AnomalyDetector._step`` (a call
costs more than their arithmetic); ``PersistentEvidence.step`` is called, and only while there is
evidence or a ratio above its floor. Learning from a sample waits until the detector knows whether it alarmed: the level
statistics learn from the *previous* sample, if that did not alarm, before scoring this one; the
outlier rate, spread and flatline statistics learn from this sample at the end of its step, once
it is known not to have alarmed (the same arithmetic either way, without keeping the previous
sample's values). The spreads learn from every other sample at twice the rate
(``SPREAD_EVERY``): a memory of hundreds of samples of a smooth input loses nothing by it.
"""

from __future__ import annotations

import math
from collections import deque

from aphrodite_sla.sla.anomaly.scoring import MAD_TO_SD, RunningSpread, ew_pair_sd

__all__ = ["CAP", "MIN_LONG", "SPREAD_CLIP", "SPREAD_EVERY", "WIDEN", "ExceedanceRate", "Flatline", "LevelChange",
           "PersistentEvidence", "ResidualRun", "SpreadChange"]

SPREAD_CLIP = 2.0  # spreads learn |values| clipped at this many spreads: ordinary values only
WIDEN = 0.25  # an accepted change of size D makes D * WIDEN an ordinary value of its statistic
CAP = 3.0  # |z| is capped here before it enters the spread statistic: one heavy-tailed residual moves
# its 20-sample mean by at most 0.15 (a widening of 3-5x still shows in every residual); with 6,
# chance clusters of t(4)-tailed latency residuals paged as variance changes
MIN_LONG = 0.4  # the spread statistic's reference mean |z| is at least half the Gaussian 0.8
SPREAD_EVERY = 2  # the statistics' spreads learn from every other sample (at twice the rate)
EXCESS_MEMORY = 500.0  # samples over which an accepted denser outlier regime fades back to the long-run
# rate: longer than a dense episode lasts (150-500 samples), shorter than the ~2,500 samples p0 would take to
# come down from one
SHARE_MEMORY = 50.0  # ordinary outliers over which the upward share of them is learned (tens of hours of a
# healthy metric at its ~1 % outlier rate and 5 s samples: the share is a property of the metric, not of the hour)
SHARE_MIN = 0.1  # each sign keeps at least this share of the base rate: a metric whose outliers have all been
# upward is not held to a downward rate near 0 (one dip would weigh like several)
_EVIDENCE_GONE = 1e-3  # persistent evidence below this (of an alarm level of several units) is none


class LevelChange:
    """Fast level against a slow reference (see the module docstring).

    After a (re)start both sides are running means of the same samples (weights ``1/n``) until
    the fast side's smoothing constant takes over, so a restart on one noisy sample does not
    leave the pair apart by that sample's noise. With ``delay`` None the reference then learns
    each value as it comes. With a ``delay`` it learns each value once it is ``delay`` samples old:
    ``ring`` holds the newer ones (``filled`` of them since the restart, the oldest at ``pos``);
    ``m`` counts the values it has learned since the restart. With ``every`` > 1 it is stepped on
    the mean of each ``every`` samples (the drift statistic: a 50-sample level loses nothing by it,
    and one call every other sample pays for the season fit); its spread's learning is
    ``RunningSpread.learn`` written out (two statistics run it on every other sample)."""

    __slots__ = ("a_fast", "a_ref", "delay", "diff", "fast", "filled", "floor", "inv_every", "k2_white", "k_white", "last", "m",
                 "n", "pos", "ref", "ring", "spread")

    def __init__(self, a_fast: float, a_ref: float, norm_alpha: float, delay: int | None = None,
                 every: int = 1) -> None:
        # stepped on the mean of every ``every`` samples: the same memory in samples, and white
        # noise averaged over ``every`` samples has 1 / sqrt(every) of its sd
        self.a_fast = a_fast = every * a_fast
        self.a_ref = a_ref = every * a_ref
        self.delay = delay
        self.k_white = ew_pair_sd(a_fast, a_ref) / math.sqrt(every)  # sd of fast - ref on white noise, in scales
        self.inv_every = 1.0 / every
        self.k2_white = self.k_white * self.k_white
        self.spread = RunningSpread(SPREAD_EVERY * norm_alpha, SPREAD_CLIP)
        self.fast = 0.0
        self.ref = 0.0
        self.n = 1  # samples since the pair was (re)started
        self.m = 0
        self.ring = [0.0] * (delay or 0)
        self.pos = 0
        self.filled = 0
        self.last = math.nan  # the previous sample's value, difference and floor (to learn from)
        self.diff = 0.0
        self.floor = 0.0

    def start(self, value: float) -> None:
        self._restart(value)

    def step(self, cleaned: float, learn: bool, odd: int, sigma: float) -> float:
        """One sample: learn from the previous one (``learn``: it did not alarm; its spread on
        ``odd`` samples only), then the z of ``cleaned`` (the baseline's value) in ``sigma``."""
        n = self.n
        a_fast = self.a_fast
        sp = self.spread
        if learn and n * a_fast >= 1.0:
            last = self.last
            if last == last:
                a = self.a_ref
                delay = self.delay
                if delay is None:
                    self.ref += (1.0 / n if n * a < 1.0 else a) * (last - self.ref)
                else:
                    if delay:  # the value ``delay`` samples old goes to the reference, ``last`` into the ring
                        i = self.pos
                        v = self.ring[i]
                        self.ring[i] = last
                        self.pos = i + 1 if i + 1 < delay else 0
                        if self.filled < delay:
                            self.filled += 1
                            v = math.nan
                    else:
                        v = last
                    if v == v:
                        k = self.m + 1
                        self.m = k
                        k += 10  # the restart's running mean counts as about 1 / a_fast samples
                        self.ref += (1.0 / k if k * a < 1.0 else a) * (v - self.ref)
                if odd:  # sp.learn(self.diff, self.floor), written out (two statistics call it every other sample)
                    k = sp.n + 1
                    sp.n = k
                    s = sp.sd
                    f = self.floor
                    if s < f:
                        s = f
                    v = self.diff
                    if v < 0.0:
                        v = -v
                    f = sp.clip * s
                    s = sp.sd
                    a = sp.alpha
                    sp.sd = s + (1.0 / k if k * a < 1.0 else a) * ((v if v < f else f) * MAD_TO_SD - s)
        n += 1
        self.n = n
        self.last = cleaned
        if n * a_fast < 1.0:  # still a running mean since the restart, and so is the reference
            self.fast += (cleaned - self.fast) / n
            self.ref = self.fast
            self.diff = 0.0
            return 0.0
        v = self.fast
        v += a_fast * (cleaned - v)
        self.fast = v
        diff = v - self.ref
        # a young reference is a running mean of n samples, with its own noise of 1 / sqrt(n)
        floor = sigma * (self.k_white if n * self.a_ref >= 1.0 else math.sqrt(self.k2_white + self.inv_every / n))
        self.diff = diff
        self.floor = floor
        s = sp.sd
        return diff / (s if s > floor else floor)

    def _restart(self, value: float) -> None:
        self.fast = self.ref = value
        self.n = 1
        self.m = 0
        self.pos = self.filled = 0
        self.last = math.nan

    def accept(self) -> float:
        """The change has kept alarming: restart the pair on the new level, and take a change of
        that size as less news for a while (the running spread widens to a quarter of it, so the
        same change again is z = 4, and relearns from there): a ramp that goes on does not page
        again every few dozen samples. Returns the reference's move."""
        delta = self.fast - self.ref
        self._restart(self.fast)
        self.spread.widen(WIDEN * delta)
        return delta

    def jump(self, value: float, accept: bool) -> float:
        """The baseline jumped to a new level: the fast side follows at once; the pair restarts
        there when the jump is ``accept``-ed (already alarmed, or a familiar kind), else the
        change is still measured until it is accepted. Returns the reference's move."""
        self.fast = value
        if not accept:
            return 0.0
        delta = value - self.ref
        self._restart(value)
        return delta


class ResidualRun:
    """Leaky sum of clipped residuals (see the module docstring)."""

    __slots__ = ("clip", "decay", "g", "k_white", "spread")

    def __init__(self, decay: float, clip: float, norm_alpha: float) -> None:
        self.decay = decay
        self.clip = clip
        self.k_white = 1.0 / math.sqrt(1.0 - decay * decay)  # sd of g on white N(0, 1) residuals
        self.spread = RunningSpread(SPREAD_EVERY * norm_alpha, SPREAD_CLIP)
        self.g = 0.0

    def accept(self) -> None:
        self.g = 0.0


class SpreadChange:
    """Short against long mean ``|z|`` (see the module docstring). ``ring`` delays each ``|z|`` by
    ``delay`` samples (a full deque of that length, the oldest first: empty for no delay)."""

    __slots__ = ("a_long", "a_short", "delay", "k_white", "long", "n", "ring", "short", "spread")

    def __init__(self, a_short: float, a_long: float, norm_alpha: float, delay: int) -> None:
        self.a_short = a_short
        self.a_long = a_long
        # sd of log(EW mean |z| / E|z|) for Gaussian z: sqrt(var|z| / E|z|^2 * a / (2 - a))
        self.k_white = math.sqrt((math.pi / 2.0 - 1.0) * a_short / (2.0 - a_short))
        self.spread = RunningSpread(SPREAD_EVERY * norm_alpha, SPREAD_CLIP)
        self.short = math.sqrt(2.0 / math.pi)
        self.long = self.short
        self.n = 0
        self.delay = delay
        self.ring = deque([self.short] * delay, maxlen=delay)

    def recentred(self, run: int) -> None:
        """The baseline just jumped to a new level: the last ``run`` queued residuals were a
        level shift, not spread; they count as ordinary."""
        q = self.ring
        k = self.delay
        for j in range(1, (run if run < k else k) + 1):
            q[-j] = self.long

    def accept(self) -> float:
        """The new spread has persisted: returns the factor by which it grew, and adopts it."""
        lo = self.long if self.long > MIN_LONG else MIN_LONG
        factor = self.short / lo if self.short > lo else 1.0
        self.long = self.short
        return factor


class Flatline:
    """A run of identical values against the series' own repeat rate (see the module docstring).
    ``p_repeat`` is the share of samples that repeat the previous one (learned from ordinary
    samples); ``hi`` and ``lo`` the extremes seen; ``stuck_at`` a stuck value already accepted
    (its further repeats are skipped by every part's learning, as alarming samples are: a frozen
    exporter says nothing about the metric's noise; development half 70.4 -> 70.7, alerts within
    60 samples after a freeze ended 25 -> 3)."""

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

    def accept(self) -> None:
        self.stuck_at = self.last


class ExceedanceRate:
    """A rising density of outliers: a Bernoulli CUSUM on "this sample starts an outlier" against
    the series' own long-run rate ``p0`` of them (see the module docstring).

    Each sample adds the log-likelihood ratio of a rate ``p1 = max(gain * p0, p_min)`` against
    ``p0``: ``log(p1 / p0)`` for an outlier, ``log((1 - p1) / (1 - p0))`` (< 0) otherwise; the
    sum is floored at 0, so it climbs only while outliers come faster than usual. Single spikes,
    however large, add one step each (the spike statistic judges their size); a cluster of
    moderate ones that no other statistic sees adds up. ``p0`` is learned from ordinary samples
    only, in blocks of 16 samples (``learn_block``: an EW mean of ~1,000 samples loses nothing by
    it, and an ordinary sample costs nothing unless it is an outlier). On ``accept`` the base rate rises to the recent rate
    ``p_recent`` (an EW mean of ~50 samples, decayed lazily: it moves only on outliers), so a
    metric that has become spikier stops paging for it; that excess fades over ``excess_memory``
    samples, so a denser regime that has ended (the outliers of a widened noise, of a level shift)
    does not hide a later rise in density for the thousands of samples ``p0`` itself would take
    to come back down.

    The CUSUM is one-sided in the outliers' sign: a storm of retries, a failing disk, a noisy
    neighbour push a metric one way, so an episode adds up the outliers of the sign that started
    it (outliers of the other sign count as ordinary samples) against the base rate of that sign,
    ``p0 * up_share`` or ``p0 * (1 - up_share)``, ``up_share`` being the learned share of upward
    ones among ordinary outliers (a latency's are mostly upward). Each same-signed outlier then
    weighs about ``log 2`` more than against the two-sided rate; the two one-sided tests are
    run as one, the sign set by the first outlier of an episode (development half: spike_density
    windows 10 -> 11 of 20 at the same threshold, 12 at ``config.density_h`` 8.5)."""

    __slots__ = ("a_rate", "a_recent", "block_hits", "block_up", "cusum", "excess", "excess_keep", "gain",
                 "keep_block", "p0", "p_floor", "p_min", "p_recent", "recent_at", "sign", "step_hit", "step_miss",
                 "steps_down", "steps_up", "up_share")

    def __init__(self, a_rate: float, a_recent: float, gain: float, p_min: float, p_start: float,
                 excess_memory: float = EXCESS_MEMORY) -> None:
        self.a_rate = a_rate
        self.keep_block = (1.0 - a_rate) ** 16
        self.p_floor = 0.5 * p_start  # a series cleaner than Gaussian noise is not held to a rate near 0
        self.a_recent = a_recent
        self.gain = gain
        self.p_min = p_min
        self.p0 = p_start
        self.p_recent = p_start
        self.recent_at = 0  # the sample number ``p_recent`` is as of
        self.block_hits = 0  # outliers among the ordinary samples of the block in progress
        self.cusum = 0.0
        self.sign = 1  # the sign of the outliers the CUSUM adds up (set by the first of an episode)
        self.up_share = 0.5  # share of upward outliers among the ordinary ones
        self.block_up = 0  # upward ones among the ``block_hits``
        self.steps_up = self.steps_down = (0.0, 0.0)  # (hit, miss) steps of each sign's CUSUM
        self.excess = 0.0  # an accepted denser regime's rate above ``p0``, fading (see ``learn_block``)
        self.excess_keep = (1.0 - 1.0 / excess_memory) ** 16
        self.step_hit = 0.0
        self.step_miss = 0.0
        self.steps()

    def steps(self) -> None:
        """The CUSUM's step sizes for each sign's base rate, its share of ``p0`` plus the fading
        excess of an accepted denser regime (a hit, a miss); ``step_hit`` and ``step_miss`` are
        the current episode's sign's."""
        p = self.p0 + self.excess
        self.steps_up = self._steps(p * self.up_share)
        self.steps_down = self._steps(p * (1.0 - self.up_share))
        self.step_hit, self.step_miss = self.steps_up if self.sign > 0 else self.steps_down

    def _steps(self, p0: float) -> tuple[float, float]:
        p1 = self.gain * p0
        if p1 < self.p_min:
            p1 = self.p_min
        if p1 > 0.5:
            p1 = 0.5
        if p1 <= p0:
            return 0.0, 0.0
        return math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))

    def start(self, up: bool) -> None:
        """An episode starts with an outlier of this sign: the CUSUM adds up that sign's."""
        self.sign = 1 if up else -1
        self.step_hit, self.step_miss = self.steps_up if up else self.steps_down

    def learn_block(self) -> None:
        """Every 16 samples: ``p0`` learns their ordinary outliers at once (16 steps of its EW
        mean, the block's outliers counted at its end), an accepted regime's excess fades by 16
        samples' worth, then the step sizes follow them."""
        k = self.block_hits
        p = self.p0 * self.keep_block + self.a_rate * k
        self.p0 = p if p > self.p_floor else self.p_floor
        if k:  # each ordinary outlier moves the upward share towards its sign, by 1 / SHARE_MEMORY
            u = self.up_share + (self.block_up - k * self.up_share) / SHARE_MEMORY
            self.up_share = SHARE_MIN if u < SHARE_MIN else (1.0 - SHARE_MIN if u > 1.0 - SHARE_MIN else u)
            self.block_up = 0
        self.block_hits = 0
        self.excess *= self.excess_keep
        self.steps()

    def recent(self, n: int) -> float:
        """The recent outlier rate as of sample ``n``."""
        return self.p_recent * (1.0 - self.a_recent) ** (n - self.recent_at)

    def hit(self, n: int) -> None:
        """Sample ``n`` starts an outlier run: the recent rate counts it."""
        self.p_recent = self.recent(n) + self.a_recent  # (1 - a) p + a: ``recent`` has decayed it by the (1 - a)
        self.recent_at = n

    def accept(self, n: int) -> None:
        """The denser regime has kept alarming (at sample ``n``): its rate is the new normal, for
        a while."""
        p = self.recent(n)
        if p > self.p0 + self.excess:
            self.excess = p - self.p0
        self.cusum = 0.0
        self.steps()


class PersistentEvidence:
    """A leaky CUSUM of the strongest statistic's ratio to its threshold above ``floor`` (see the
    module docstring): ``evidence = decay * evidence + max(0, ratio - floor)``, alarming at
    ``h``. With ``floor`` 0.4, ``decay`` 0.97 and ``h`` 8, a ratio of 0.8 held for about 30
    samples alarms (0.95 for 19); ratios that hover below 0.64 never do, and the leak forgets a
    brief excursion within a few dozen samples. After any alarm of the detector it is blocked
    (``evidence`` < 0) until the strongest ratio falls below ``floor``: the episode has been
    reported. ``evidence`` is exactly 0 while there is nothing to add up, so that the detector
    calls ``step`` only when ``ratio > floor or evidence`` (most samples skip it)."""

    __slots__ = ("decay", "evidence", "floor", "inv_h")

    def __init__(self, floor: float, decay: float, h: float) -> None:
        self.floor = floor
        self.decay = decay
        self.inv_h = 1.0 / h
        self.evidence = 0.0

    def step(self, ratio: float) -> float:
        """One sample's strongest ratio in; the evidence as a multiple of its alarm level out."""
        floor = self.floor
        e = self.evidence
        if e < 0.0:  # blocked: the episode goes on
            if ratio < floor:
                self.evidence = 0.0
            return 0.0
        e = e * self.decay + (ratio - floor if ratio > floor else 0.0)
        if e < _EVIDENCE_GONE:
            e = 0.0
        self.evidence = e
        return e * self.inv_h

    def alarmed(self) -> None:
        """The detector alarmed (on this or any statistic): start again after the episode."""
        self.evidence = -1.0
