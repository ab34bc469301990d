"""Seasonal profiles: the expected offset of a metric at this time of day (and day of week).

Why: operational metrics follow the load, and the load follows the clock. Without a profile a
daily curve looks like a drift every morning, a jump inside the daily range looks normal, and a
day whose pattern goes flat looks like nothing at all. With one, the detector models the
*deseasonalised* value, where all three are ordinary level changes.

How: ``SeasonalProfile`` keeps one value per bin of its period (48 half-hour bins of a day; 168
hours of a week): the deviation of the value from a slow base (``Seasonality.base``, about one
period of memory) at that bin. Per sample it only adds the deviation to its bin's running sum
(O(1)); once per cycle (O(bins)) each bin's mean over the cycle is folded into its value with
weight ``cycle_weight`` (``1 / k`` for its first cycles), clipped at three typical
cycle-to-cycle changes so that one odd day barely moves tomorrow's expectation. The cycle-to-
cycle changes also measure the profile's estimation noise, and the profile is applied with a
weight that shrinks it towards zero where it is not clearly above that noise (James-Stein): a
wandering or flat metric gets no spurious profile, a strong daily curve gets all of it. A profile
is used only after ``min_cycles`` well-covered cycles, and interpolated between bin centres.
Nothing is learned while the detector alarms. The weekly profile models what the daily one
leaves (weekends).

Switch-on: ``Seasonality.learn`` reports the fold that switches the weekly profile on (its
applied weight rises by more than ``SWITCH_ON``). Until then a weekly metric's weekends were level
shifts to the detector, and its level statistics learned spreads 5-20x their white-noise floor
from them; with the weekly profile applied the deseasonalised series is close to what a
perfect weekly profile leaves (measured on the corpus' weekly families), so the detector lets
those spreads relearn (``AnomalyDetector._relearn_spreads``).

Cost: both runs on every sample, so each profile caches the linear piece of itself the time is
in, and the bin it is learning; ``Seasonality.offset`` and ``learn`` write out both profiles'
``SeasonalProfile.offset`` and ``learn`` (one call per sample from the detector instead of
three), which stay as the reference the tests compare them with.
"""

from __future__ import annotations

import math

__all__ = ["DAILY_ON", "WEEKLY_ON", "SeasonalProfile", "Seasonality"]

_CLIP = 3.0  # a bin's change per cycle is clipped at this many rms cycle-to-cycle changes
SWITCH_ON = 0.25  # a fold that raises a profile's applied weight by more switches it on (see Seasonality.learn)
DAILY_ON = 1  # ``Seasonality.learn``'s report: this sample's fold switched the daily profile on ...
WEEKLY_ON = 2  # ... the weekly one (both bits may be set)


class SeasonalProfile:
    """One periodic profile (see the module docstring).

    Two caches keep the per-sample work to a few operations: the applied offset is linear in
    time between two bin centres, so the current piece (``lo`` <= t < ``hi``: ``pa + ps * (t -
    lo)``, before the weight) is kept until time leaves it; and the bin being learned (``blo``
    <= t < ``bhi``: bin ``bin``) likewise. A fold changes the values and drops the first."""

    __slots__ = ("acc", "bhi", "bin", "bins", "blo", "bnext", "cnt", "cycle", "cycle_weight", "cycles", "cycles_of", "fold_t",
                 "hi", "inv_ramp", "lo", "min_cycles", "ms_delta", "old_weight", "pa", "period", "ps", "span",
                 "switched_on", "target", "value", "weight")

    def __init__(self, period: float, bins: int, cycle_weight: float, min_cycles: int) -> None:
        self.period = period
        self.bins = bins
        self.cycle_weight = cycle_weight
        self.min_cycles = min_cycles
        self.value = [0.0] * bins
        self.cycles_of = [0] * bins  # cycles each bin has learned from
        self.acc = [0.0] * bins  # the current cycle: per-bin sum and count of deviations
        self.cnt = [0] * bins
        self.cycle = -(2**62)  # index of the cycle being accumulated
        self.cycles = 0  # well-covered cycles folded in
        self.ms_delta = 0.0  # mean square change of a bin from one cycle to the next
        self.span = 0.0  # max - min of the values
        self.weight = 0.0  # 0..1: how much of the profile is applied now ...
        self.target = 0.0  # ... moving from old_weight to this over a quarter period after a fold,
        self.old_weight = 0.0  # so that switching the profile on is no step in the deseasonalised value
        self.fold_t = 0.0
        self.inv_ramp = 4.0 / period
        self.lo = self.hi = math.nan  # the cached piece of the profile (none yet)
        self.pa = self.ps = 0.0
        self.blo = self.bhi = self.bnext = math.nan  # the cached bin being learned, and where the next one ends
        self.bin = 0
        self.switched_on = False  # the last fold switched the profile on (cleared by ``Seasonality.learn``)

    def applied(self, t: float) -> float:
        """The weight applied at ``t``: ``target``, or on the way to it after a fold."""
        w = self.weight
        if w != self.target:
            k = (t - self.fold_t) * self.inv_ramp
            w = self.target if k >= 1.0 else self.old_weight + (self.target - self.old_weight) * (k if k > 0.0 else 0.0)
            self.weight = w
        return w

    def piece(self, t: float) -> None:
        """Cache the linear piece of the profile (between two bin centres) that ``t`` falls in."""
        bins = self.bins
        pos = (t / self.period) % 1.0 * bins - 0.5
        b0 = math.floor(pos)
        f = pos - b0
        v = self.value
        b0 %= bins
        b1 = b0 + 1 if b0 + 1 < bins else 0
        width = self.period / bins
        self.lo = t - f * width
        self.hi = self.lo + width
        self.pa = v[b0]
        self.ps = (v[b1] - v[b0]) / width

    def offset(self, t: float) -> float:
        """The applied profile value at time ``t`` (linear between bin centres)."""
        w = self.applied(t)
        if w == 0.0:
            return 0.0
        if not self.lo <= t < self.hi:
            self.piece(t)
        return w * (self.pa + self.ps * (t - self.lo))

    def rebin(self, t: float) -> int:
        """The bin a normal sample at ``t`` is learned in (cached with its time range), folding the
        finished cycle when a new one starts; -1 for a late sample from an older cycle."""
        phase = t / self.period
        cycle = math.floor(phase)
        if cycle != self.cycle:
            if cycle < self.cycle:
                return -1  # a late sample from an older cycle: not learned
            self._fold()
            self.cycle = cycle
            self.fold_t = t
        b = int((phase - cycle) * self.bins)
        if b >= self.bins:
            b = self.bins - 1
        self.bin = b
        self.blo = (cycle + b / self.bins) * self.period
        self.bhi = (cycle + (b + 1) / self.bins) * self.period
        self.bnext = (cycle + (b + 2) / self.bins) * self.period if b + 1 < self.bins else self.bhi
        return b

    def next_bin(self) -> int:
        """Time has just left the cached bin for the next one of the same cycle (``bhi`` <= t <
        ``bnext``, the common case): move the cache along without ``rebin``'s arithmetic. (Written
        out in ``Seasonality.learn``.)"""
        b = self.bin + 1
        self.bin = b
        self.blo = self.bhi
        self.bhi = self.bnext
        self.bnext = (self.cycle + (b + 2) / self.bins) * self.period if b + 1 < self.bins else self.bhi
        return b

    def learn(self, t: float, dev: float) -> None:
        """Add the deviation ``dev`` of a normal sample at time ``t`` to its bin."""
        if self.blo <= t < self.bhi:
            b = self.bin
        elif self.bhi <= t < self.bnext:
            b = self.next_bin()
        else:
            b = self.rebin(t)
        if b >= 0:
            self.acc[b] += dev
            self.cnt[b] += 1

    def _fold(self) -> None:
        """Once per cycle, O(bins): fold a well-covered cycle into the profile, and re-weigh."""
        bins = self.bins
        cnt = self.cnt
        acc = self.acc
        touched = sum(1 for c in cnt if c)
        if touched >= 0.5 * bins:  # cycles covering less (the first, partial one; gaps) are skipped
            v = self.value
            lim = _CLIP * math.sqrt(self.ms_delta) if self.cycles >= 2 else math.inf
            w = self.cycle_weight
            sq = 0.0
            for i in range(bins):
                if not cnt[i]:
                    continue
                k = self.cycles_of[i] + 1
                self.cycles_of[i] = k
                d = acc[i] / cnt[i] - v[i]
                if k > 1:
                    sq += d * d
                d = lim if d > lim else (-lim if d < -lim else d)
                v[i] += (1.0 / k if k * w < 1.0 else w) * d
            if self.cycles >= 1:
                d2 = sq / touched * w * w  # the mean square change of a bin at weight w
                if self.cycles == 1:
                    self.ms_delta = d2
                else:
                    self.ms_delta += 0.3 * ((d2 if d2 < 9.0 * self.ms_delta else 9.0 * self.ms_delta) - self.ms_delta)
            self.cycles += 1
            if self.cycles >= self.min_cycles:
                mean = math.fsum(v) / bins
                across = math.fsum((x - mean) ** 2 for x in v) / bins
                # a bin value is an EW mean over cycles (weight w): its noise variance is about
                # ms_delta / (2 w), from the cycle-to-cycle changes it shows; James-Stein weight
                noise = self.ms_delta / (2.0 * w)
                self.old_weight = self.weight
                self.target = max(0.0, 1.0 - noise / across) if across > 0.0 else 0.0
                if self.target - self.old_weight > SWITCH_ON:
                    self.switched_on = True
        acc[:] = [0.0] * bins
        cnt[:] = [0] * bins
        self.span = max(self.value) - min(self.value)
        self.lo = self.hi = math.nan  # the values changed: the cached piece is stale


class Seasonality:
    """A daily profile and, optionally, a weekly one on what the daily one leaves, with the slow
    base both are learned against."""

    __slots__ = ("base", "base_rate", "daily", "last_daily", "weekly")

    def __init__(self, period: float, bins: int, weekly: bool, cycle_weight: float, min_cycles: int) -> None:
        self.daily = SeasonalProfile(period, bins, cycle_weight, min_cycles)
        self.weekly = SeasonalProfile(7.0 * period, 7 * 24, cycle_weight, min_cycles) if weekly else None
        self.base = 0.0
        self.base_rate = 0.0
        self.last_daily = 0.0

    def start(self, base: float, dt: float) -> None:
        """Begin after warm-up: the base at the warm-up median, its rate for the interval."""
        self.base = base
        self.set_interval(dt)

    def set_interval(self, dt: float) -> None:
        """The base follows the deseasonalised value over about one daily period."""
        r = dt / self.daily.period if dt > 0.0 else 0.0
        self.base_rate = r if r < 0.05 else 0.05

    def offset(self, t: float) -> float:
        """Expected seasonal offset at ``t`` (model units); the daily part is kept for ``learn``.
        (``SeasonalProfile.offset`` of each profile, written out: this runs on every sample.)"""
        p = self.daily
        w = p.weight
        if w != p.target:
            w = p.applied(t)
        s = 0.0
        if w:
            if not p.lo <= t < p.hi:
                p.piece(t)
            s = w * (p.pa + p.ps * (t - p.lo))
        self.last_daily = s
        p = self.weekly  # type: ignore[assignment]
        if p is not None:
            w = p.weight
            if w != p.target:
                w = p.applied(t)
            if w:
                if not p.lo <= t < p.hi:
                    p.piece(t)
                s += w * (p.pa + p.ps * (t - p.lo))
        return s

    def in_use(self) -> bool:
        return self.daily.weight > 0.0 or (self.weekly is not None and self.weekly.weight > 0.0)

    def amplitude(self) -> float:
        """Half the range of the applied daily profile (model units)."""
        d = self.daily
        return 0.5 * d.weight * d.span

    def learn(self, t: float, y: float, offset: float) -> int:
        """Learn from a normal sample ``y`` (model space) at ``t``, whose ``offset`` was just
        computed by ``offset(t)``. (``SeasonalProfile.learn`` of each profile, written out.)

        Returns ``WEEKLY_ON`` when this sample's fold switched the weekly profile on: the
        deseasonalised series changes from then on (weekends stop looking like level shifts), and
        what the detector learned in it before (its level statistics' spreads, the levels it
        remembers) is out of date; ``DAILY_ON`` for the daily profile's switch-on (the detector
        does not relearn the spreads then: it comes after ``min_cycles`` days, when they are
        still young, and relearning them was measured to cost more than it gained,
        ``benchmarks/bench_anomaly.py --dev``); 0 otherwise. The next bin of the same cycle is
        found without ``rebin`` (``SeasonalProfile.next_bin``, written out)."""
        base = self.base + self.base_rate * (y - offset - self.base)
        self.base = base
        dev = y - base
        p = self.daily
        switched = 0
        if p.blo <= t < p.bhi:
            b = p.bin
        elif p.bhi <= t < p.bnext:  # the next bin of the same cycle (SeasonalProfile.next_bin)
            b = p.bin + 1
            p.bin = b
            p.blo = p.bhi
            p.bhi = p.bnext
            p.bnext = (p.cycle + (b + 2) / p.bins) * p.period if b + 1 < p.bins else p.bhi
        else:  # perhaps a new cycle, folded
            b = p.rebin(t)
            if p.switched_on:
                p.switched_on = False
                switched = DAILY_ON
        if b >= 0:
            p.acc[b] += dev
            p.cnt[b] += 1
        p = self.weekly  # type: ignore[assignment]
        if p is None:
            return switched
        if p.blo <= t < p.bhi:
            b = p.bin
        elif p.bhi <= t < p.bnext:  # the next bin of the same cycle (SeasonalProfile.next_bin)
            b = p.bin + 1
            p.bin = b
            p.blo = p.bhi
            p.bhi = p.bnext
            p.bnext = (p.cycle + (b + 2) / p.bins) * p.period if b + 1 < p.bins else p.bhi
        else:  # a new cycle (once a week), folded
            b = p.rebin(t)
            if p.switched_on:
                p.switched_on = False
                switched |= WEEKLY_ON
        if b >= 0:
            p.acc[b] += dev - self.last_daily
            p.cnt[b] += 1
        return switched

    def shift(self, delta: float) -> None:
        """The level moved by ``delta`` and the detector accepted it: move the base with it."""
        self.base += delta
