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
* ``LevelMemory`` keeps up to ``slots`` levels the metric has *jumped* between (the level before
  and after each jump of the baseline), with decaying dwell (samples spent there) and visit
  counts. A jump *to a familiar level* (an operating regime seen before, the floor a garbage
  collector drops the heap to) is measured against that level instead of the current one, and the
  new level is accepted at once. Levels reached by slow wander are not remembered: a sensor that
  drifted through 50 degrees last week and drops to 50 now has failed.
"""

from __future__ import annotations

import math

__all__ = ["LevelMemory", "OutlierEvents"]

_SQRT1_2 = math.sqrt(0.5)


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
    garbage collector keeps dropping the heap to."""

    __slots__ = ("centre", "current", "decay", "min_visits", "min_weight", "n_slots", "visits", "weight")

    def __init__(self, slots: int, memory: int, min_weight: float, min_visits: int) -> None:
        self.n_slots = slots
        self.decay = (1.0 - 1.0 / memory) ** 64  # applied every 64 samples
        self.min_weight = min_weight
        self.min_visits = min_visits
        self.centre: list[float] = []
        self.weight: list[float] = []
        self.visits: list[float] = []
        self.current = -1  # slot of the level the metric is at now (-1: none)

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
        """The baseline jumped from ``old`` to ``new``: both become remembered levels, and the
        new one counts a visit."""
        if self.current < 0:
            self._slot(old, tol)
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
