"""What the metric has done before: recurring outliers and familiar levels.

A detector that only asks "is this far from the current level?" pages every time a garbage
collector drops the heap, a batch job spikes the latency as it does every hour, or an autoscaled
group switches to its other operating level. Real labelled anomalies are the *novel* events. Two
small memories, both O(1) per sample (their loops run only on outliers, over a fixed handful of
slots), let the detector discount what keeps happening:

* ``OutlierEvents`` models spikes (runs of outliers of one sign that end before the baseline
  takes them as a new level) of each sign: their rate per sample and the distribution of their
  log size (a run's largest ``|z|``). The chance that a sample is at least this far out is then
  the noise tail plus ``rate * P(spike size >= this)``, turned back into a Gaussian-equivalent z.
  It discounts only after ``min_events`` spikes within its memory, so the first spikes of a kind
  still alarm, and a spike much larger than the usual ones still does.
* ``BurstEvidence`` learns how often an outlier is followed by another of its sign (rare on a
  metric whose outliers are isolated glitches, common on one that switches regimes or wanders),
  and scores a run of spikes that is not yet a new level by the chance of the whole run under
  that rate: two samples far out in a row are much stronger evidence than either alone where
  outliers come singly, and less so where they come in runs.
* ``LevelMemory`` keeps up to ``slots`` levels the metric has *jumped* between (the level before
  and after each jump of the baseline), with decaying dwell (samples spent there) and visit
  counts. A jump *to a familiar level* (an operating regime seen before, the floor a garbage
  collector drops the heap to) is measured against that level instead of the current one, and the
  new level is accepted at once. The level a metric held for long (``min_held`` samples) before
  it jumped away is remembered too: the jump back to it is the fault's recovery, not a new problem.
  Levels reached by slow wander are not remembered: a sensor that drifted through 50 degrees last
  week and drops to 50 now has failed.
"""

from __future__ import annotations

import math

from aphrodite_sla.sla.anomaly.scoring import log_two_sided_tail, z_of_upper_tail

__all__ = ["BurstEvidence", "LevelMemory", "OutlierEvents"]

_SQRT1_2 = math.sqrt(0.5)


class BurstEvidence:
    """The evidence of a run of same-sign outliers (``|z| > c``), against this metric's own rate of
    such runs (see the module docstring).

    The run's chance is that of its first outlier times, for each further one, the learned chance
    that an outlier is followed by another of its sign and the chance of its size given that it is
    an outlier: ``P = T(z1) * prod(cont * T(zk) / T(c))``, ``T`` the two-sided Gaussian tail. On
    white noise ``cont = T(c) / 2`` and this is the product of independent tails; on a metric
    whose outliers come in runs ``cont`` is large and only the sizes add evidence (taken as
    independent: two 4.5-sd spikes score 6.7 sd where outliers are isolated, 5.6 where every one
    is followed by another). Only spikes count (every ``|z| >= min_z``): runs of wander just past
    ``c`` on an autocorrelated metric are the level statistics' business. ``cont`` is a running
    mean (the first ``prior_weight`` outliers averaged with ``prior``, then an EW mean) over
    outliers seen while the detector was not alarming. Measured and left out: a second outlier
    whose size adds nothing when it continues the first (``P = T(z1) * (rho + (1 - rho) * T(z2) / 2)``,
    ``rho = cont - T(c) / 2``): development 69.9 against 70.1."""

    __slots__ = ("alpha", "cont", "log_c", "log_p", "min_z", "n", "prior_weight")

    def __init__(self, prior: float, prior_weight: float, alpha: float, c: float, min_z: float) -> None:
        self.min_z = min_z
        self.cont = prior
        self.prior_weight = prior_weight
        self.alpha = alpha
        self.n = 0
        self.log_c = log_two_sided_tail(c)
        self.log_p = 0.0  # log chance of the run in progress (0: none)

    def learn(self, continued: bool) -> None:
        """An outlier was (or was not) followed by another of its sign."""
        n = self.n + 1
        self.n = n
        w = 1.0 / (n + self.prior_weight)
        if w < self.alpha:
            w = self.alpha
        self.cont += w * ((1.0 if continued else 0.0) - self.cont)

    def start(self, z: float) -> None:
        """A run starts with an outlier of Gaussian-equivalent ``|z|`` ``z``."""
        self.log_p = log_two_sided_tail(z) if z >= self.min_z else 0.0

    def extend(self, z: float) -> float:
        """The run goes on with an outlier of ``|z|`` ``z``: the whole run's Gaussian-equivalent z
        (0 unless every outlier of the run so far was a spike, ``|z| >= min_z``)."""
        if not self.log_p or z < self.min_z:
            self.log_p = 0.0
            return 0.0
        cont = self.cont if self.cont > 1e-4 else 1e-4
        lp = self.log_p + math.log(cont) + log_two_sided_tail(z) - self.log_c
        self.log_p = lp
        return z_of_upper_tail(0.5 * math.exp(lp))  # (exp underflows to 0 far out: z_of_upper_tail's floor)


class OutlierEvents:
    """Rate and size distribution of isolated outliers of each sign (see the module docstring)."""

    __slots__ = ("at", "memory", "min_events", "mu", "n", "rate", "run_len", "run_max", "run_sign", "var")

    def __init__(self, memory: int, min_events: int) -> None:
        self.memory = memory  # samples over which events are counted
        self.min_events = min_events
        self.rate = [0.0, 0.0]  # events per sample (up, down) ...
        self.at = [0, 0]  # ... as of this sample number (decayed lazily)
        self.mu = [0.0, 0.0]  # EW mean and variance of log |z| of events
        self.var = [0.0, 0.0]
        self.n = [0, 0]  # events seen
        self.run_sign = 0  # the outlier run in progress: sign, length, largest |z|
        self.run_len = 0
        self.run_max = 0.0

    def _rate(self, k: int, n: int) -> float:
        return self.rate[k] * (1.0 - 1.0 / self.memory) ** (n - self.at[k])

    def observe(self, z: float, threshold: float, n: int, recentred: bool) -> None:
        """Track outlier runs (|z| >= ``threshold``). A run is recorded, when it ends, as one event
        of its largest size, unless it became a new level (``recentred``): jumps are
        ``LevelMemory``'s business."""
        sign = 1 if z >= threshold else (-1 if z <= -threshold else 0)
        if recentred:
            self.run_sign = self.run_len = 0
            self.run_max = 0.0
            return
        if sign and sign == self.run_sign:
            self.run_len += 1
            az = z if z > 0.0 else -z
            if az > self.run_max:
                self.run_max = az
            return
        if self.run_sign:
            self._record(0 if self.run_sign > 0 else 1, self.run_max, n)
        self.run_sign = sign
        self.run_len = 1 if sign else 0
        self.run_max = (z if z > 0.0 else -z) if sign else 0.0

    def _record(self, k: int, size: float, n: int) -> None:
        a = 1.0 / self.memory
        self.rate[k] = self._rate(k, n) + a
        self.at[k] = n
        m = self.n[k] + 1
        self.n[k] = m
        ls = math.log(size)
        w = 1.0 / m if m < 10 else 0.1
        d = ls - self.mu[k]
        self.mu[k] += w * d
        self.var[k] = (1.0 - w) * (self.var[k] + w * d * d)

    def tail(self, z: float, n: int) -> float:
        """P(an event at least as large as ``z``, of its sign) per sample; 0 when this kind of
        outlier has not recurred ``min_events`` times within the memory."""
        k = 0 if z > 0.0 else 1
        rate = self._rate(k, n)
        if rate * self.memory < self.min_events:
            return 0.0
        sd = math.sqrt(self.var[k] + 0.04)  # log sizes are known to +-20 % at best
        u = (math.log(z if z > 0.0 else -z) - self.mu[k]) / sd
        return rate * 0.5 * math.erfc(u * _SQRT1_2)


class LevelMemory:
    """Familiar levels: up to ``slots`` centres the metric has jumped to, with decaying dwell
    (samples spent there) and visit counts (jumps that landed there). A level is familiar after
    ``min_weight`` samples of dwell or ``min_visits`` visits: an operating regime, or the floor a
    garbage collector keeps dropping the heap to. The level the metric jumps *away* from is
    credited with the samples it stayed there (``stay``, counted while the level keeps within the
    tolerance of the stay's mean level ``here``) when they are at least ``min_held``: the jump back to the
    level it held for long before a fault is the recovery, not a new problem. Shorter stays (a
    point on a slow wander, a level reached a moment ago) are not credited."""

    __slots__ = ("centre", "current", "decay", "here", "min_held", "min_visits", "min_weight", "n_slots", "stay", "visits",
                 "weight")

    def __init__(self, slots: int, memory: int, min_weight: float, min_visits: int, min_held: float) -> None:
        self.n_slots = slots
        self.min_held = min_held
        self.decay = (1.0 - 1.0 / memory) ** 64  # applied every 64 samples
        self.min_weight = min_weight
        self.min_visits = min_visits
        self.centre: list[float] = []
        self.weight: list[float] = []
        self.visits: list[float] = []
        self.current = -1  # slot of the level the metric is at now (-1: none)
        self.here = math.nan  # while at no remembered level: the mean level of its stay there ...
        self.stay = 0.0  # ... and the stay's normal samples (credited to it if the metric jumps away)

    def _slot(self, level: float, tol: float) -> int:
        """The slot for ``level``: the nearest within ``tol``, else a new (or recycled) one."""
        best = -1
        best_d = tol
        for i, ci in enumerate(self.centre):
            d = level - ci if level >= ci else ci - level
            if d <= best_d:
                best, best_d = i, d
        if best >= 0:
            return best
        c = self.centre
        if len(c) < self.n_slots:
            c.append(level)
            self.weight.append(0.0)
            self.visits.append(0.0)
            return len(c) - 1
        w = self.weight
        k = w.index(min(w))  # recycle the least used level
        c[k] = level
        w[k] = 0.0
        self.visits[k] = 0.0
        return k

    def jumped(self, old: float, new: float, tol: float) -> None:
        """The baseline jumped from ``old`` to ``new``: both become remembered levels, the new one
        counts a visit, and, if the metric was at no remembered level, the level it stayed at before
        (``here``) gets the stay's samples when they are at least ``min_held``."""
        if self.current < 0:
            self._slot(old, tol)
            if self.stay > 0.0 and self.stay >= self.min_held:  # (at ``here``: ``old`` moved with the onset's samples)
                j = self._slot(self.here, tol)
                self.weight[j] += self.stay
        self.stay = 0.0
        self.here = math.nan
        k = self._slot(new, tol)
        v = self.visits[k] + 1.0
        self.visits[k] = v
        self.centre[k] += (new - self.centre[k]) / (v + 1.0)  # where the jumps land, on average
        self.current = k

    def age(self) -> None:
        """Every 64 samples (amortised O(slots)): dwell and visits decay. (Each normal sample,
        while the level stays within the tolerance of the current slot's centre, adds 1 to its
        ``weight``, else ends the stay: ``current = -1``; that part is written out in
        ``AnomalyDetector._step``, which runs it on every normal sample.)"""
        d = self.decay
        w = self.weight
        v = self.visits
        for i in range(len(w)):
            w[i] *= d
            v[i] *= d

    def forget(self) -> None:
        """Drop every remembered level (they were measured in a space that has changed)."""
        self.centre.clear()
        self.weight.clear()
        self.visits.clear()
        self.current = -1
        self.here = math.nan
        self.stay = 0.0

    def familiar(self, value: float, tol: float) -> float:
        """Distance from ``value`` to the nearest familiar level other than the current one
        (``inf`` if none is within ``tol``)."""
        best = math.inf
        for i, ci in enumerate(self.centre):
            if i == self.current or (self.weight[i] < self.min_weight and self.visits[i] < self.min_visits):
                continue
            d = value - ci if value >= ci else ci - value
            if d <= tol and d < best:
                best = d
        return best
