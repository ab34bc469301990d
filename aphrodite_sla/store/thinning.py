"""Thinning: keep a uniform random share of a distribution series when it arrives faster than its
ring can hold for a whole window.

Why: at 256 running requests and 25 engine steps a second, inter-token latencies arrive at 6,400 a
second; a ring sized for 100 a second then held the newest ~5 s of a "5-minute" window. Growing the
ring to 1.9 M samples (31 MB for one series) is not an answer inside an engine's process. A uniform
sample of the window's samples is: its quantiles are within a rank error the
Dvoretzky–Kiefer–Wolfowitz inequality bounds (``rank_error_bound``) and its mean is unbiased, while
the window keeps its full length.

The keep probability is a power of two, ``2**-k``, the largest that keeps the arrival rate within
the ring's budget (its ``sample_rate_hz``). The rate is measured over 10-second buckets of sample
time (a per-second peak would thin Poisson traffic well below the budget). The share falls at once
when traffic rises (as soon as a bucket's arrivals exceed its allowance) and rises only after the
peak has decayed with a time constant of the ring's window, so within a window it is almost always
one value (a sample, not a reweighting). Only series declared ``thin=True`` are thinned (latency
distributions); counters and sums read as rates never are.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from aphrodite_sla.forking import reset_in_child

# Arrival rates are measured over buckets of this many seconds of sample time.
BUCKET_S = 10.0
# Thinning starts once the rate exceeds the budget by this share: traffic at the ring's rate (a
# backfill at exactly sample_rate_hz, counted with rounding) is kept whole; at worst a ring then
# holds 2% less than its window.
TOLERANCE = 1.02
# The smallest keep probability (2**-20: a million-fold thinning): beyond it the ring is overrun
# and the evictions are counted as ``evicted_in_window`` as before.
MAX_LEVEL = 20


def rank_error_bound(samples: int, confidence: float = 0.99) -> float:
    """The DKW bound: with probability ``confidence`` every quantile of a uniform sample of
    ``samples`` values is the population's quantile at a rank within ± this fraction (p99 of a
    300k sample: within p98.7–p99.3 at 0.99 confidence, ±0.0030)."""
    if samples <= 0:
        return 1.0
    return math.sqrt(math.log(2.0 / (1.0 - confidence)) / (2.0 * samples))


class Thinning:
    """One series' arrival-rate estimate and current keep probability. Writers on several threads
    share it: the estimate's counters are updated under a small lock (uncontended in the usual
    one-writer case); the draws use the object's own generator."""

    __slots__ = ("__weakref__", "_bucket", "_count", "_lock", "_peak", "_rng", "budget_hz", "keep", "level", "tau_s", "thinned")

    def __init__(self, budget_hz: float, tau_s: float, *, seed: int | None = None) -> None:
        self.budget_hz = float(budget_hz)
        self.tau_s = max(float(tau_s), 1.0)
        self.keep = 1.0  # the current keep probability, 2**-level
        self.level = 0
        self.thinned = 0  # samples not kept (not drops: the sample they belong to is represented)
        self._bucket = -math.inf
        self._count = 0.0  # arrivals in the current bucket
        self._peak = 0.0  # decaying peak of the per-bucket arrival rate (per second)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # The generator has its own lock, maybe held by a writer at fork time: a new generator
        # (fresh entropy too, so forked workers do not draw the same stream).
        self._lock = threading.Lock()
        self._rng = np.random.default_rng()

    def retune(self, budget_hz: float, tau_s: float) -> None:
        """The series was re-registered with a larger ring (a higher rate or a longer window)."""
        with self._lock:
            self.budget_hz = float(budget_hz)
            self.tau_s = max(float(tau_s), 1.0)
            self._set_level(self._peak)

    def observe(self, at: float, arrivals: int, span_s: float = 0.0) -> float:
        """Count ``arrivals`` stamped up to ``at`` (spread over ``span_s`` seconds of sample time:
        a backfilled batch counts at its own density); returns the keep probability for them."""
        with self._lock:
            bucket = math.floor(at / BUCKET_S) * BUCKET_S
            if bucket > self._bucket:
                if self._bucket > -math.inf:
                    gap = bucket - self._bucket
                    self._peak = max(self._count / gap, self._peak * math.exp(-gap / self.tau_s))
                self._bucket, self._count = bucket, 0.0
                self._set_level(self._peak)
            self._count += arrivals * BUCKET_S / span_s if span_s > BUCKET_S else arrivals
            if self._count * self.keep > self.budget_hz * BUCKET_S * TOLERANCE:  # a surge: thin harder now
                elapsed = max(at - bucket, 1.0)
                self._peak = max(self._peak, self._count / elapsed)
                self._set_level(self._peak)
            return self.keep

    def _set_level(self, rate: float) -> None:
        budget = self.budget_hz
        level = 0 if rate <= budget * TOLERANCE else min(MAX_LEVEL, math.ceil(math.log2(rate / budget)))
        if level != self.level:
            self.level, self.keep = level, 2.0**-level

    def sample_mask(self, n: int, keep: float) -> np.ndarray:
        """Which of ``n`` arrivals to keep (each independently with probability ``keep``)."""
        mask = self._rng.random(n) < keep
        self.count_thinned(n - int(np.count_nonzero(mask)))
        return mask

    def keep_one(self, keep: float) -> bool:
        kept = bool(self._rng.random() < keep)
        if not kept:
            self.count_thinned(1)
        return kept

    def count_thinned(self, n: int) -> None:
        if n:
            with self._lock:
                self.thinned += n
