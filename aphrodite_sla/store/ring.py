"""A time-stamped ring buffer of raw samples: preallocated, O(1) append, readable from another thread.

Why raw samples: exact window quantiles need every sample, not histogram buckets.

Concurrency contract (a seqlock without the lock on the read side):

* Writers hold ``_write_lock`` (cheap and uncontended in the common one-writer case) and write the
  slot *before* publishing it by incrementing ``_count``. A slot with logical index ``i < _count``
  is therefore always fully written.
* A reader takes ``count = _count`` once, computes over the logical range it wants, then reads
  ``_count`` again. Slots with logical index ``< count_after - capacity`` may have been
  overwritten meanwhile; ``is_intact(lo, count_after)`` tells, and the reader retries or falls back
  to a copy. In practice the evaluator's numba kernels finish long before a writer can wrap the
  whole buffer.

Time order: timestamps are kept non-decreasing so windows are found by binary search. A sample up to
``late_tolerance_s`` older than the newest one is stored at the newest timestamp (its position in
the window moves by at most that tolerance); an older one is rejected as ``out_of_order``.
"""
from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from aphrodite_sla.forking import reset_in_child


class Rejected(Exception):
    """Internal signal: a sample was rejected; ``reason`` is one of the DropReason values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RingSnapshot(NamedTuple):
    """The published state a reader works from: arrays plus the logical index range [first, end)
    (``end``: samples ever appended). A NamedTuple: one is taken per series at every evaluation."""

    times: np.ndarray
    values: np.ndarray
    capacity: int
    first: int
    end: int


class RingBuffer:
    """One metric's samples: ``times`` and ``values`` float64 arrays of fixed ``capacity``."""

    __slots__ = (
        "__weakref__",
        "_count",
        "_last_time",
        "_oldest",
        "_window_s",
        "_write_lock",
        "capacity",
        "evicted_in_window",
        "late_tolerance_s",
        "times",
        "values",
    )

    def __init__(self, capacity: int, *, window_s: float = math.inf, late_tolerance_s: float = 5.0) -> None:
        if capacity < 1:
            raise ValueError(f"RingBuffer: capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.times = np.zeros(self.capacity, dtype=np.float64)
        self.values = np.zeros(self.capacity, dtype=np.float64)
        self.late_tolerance_s = float(late_tolerance_s)
        self._window_s = float(window_s)
        self._count = 0
        self._oldest = 0  # lowest logical index ever held in the current arrays (set by grow)
        self._last_time = -math.inf
        self._write_lock = threading.Lock()
        # Samples overwritten while still inside the longest window that reads them: a sign that
        # the configured sample rate is too low for the traffic (the window then covers less time).
        self.evicted_in_window = 0
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        """A writer holding the lock at ``fork()`` would leave it held in the child forever."""
        self._write_lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------
    def append(self, t: float, v: float) -> None:
        """Append one sample; raises ``Rejected('out_of_order')`` for a sample far in the past."""
        with self._write_lock:
            last = self._last_time
            if t < last:
                if last - t > self.late_tolerance_s:
                    raise Rejected("out_of_order")
                t = last
            n = self._count
            i = n % self.capacity
            if n - self.capacity >= self._oldest and self.times[i] > t - self._window_s:
                self.evicted_in_window += 1
            self.times[i] = t
            self.values[i] = v
            self._last_time = t
            self._count = n + 1  # publish after the slot is written

    def append_batch(self, t: np.ndarray | float, v: np.ndarray) -> int:
        """Append many validated samples; ``t`` is one time for all (an engine step) or one per
        value. Returns how many were rejected as out of order. Costs a few slice copies: the
        per-call overhead, not the data, dominates a batch of 64."""
        with self._write_lock:
            last = self._last_time
            if v.size == 0:
                return 0
            rejected = 0
            if isinstance(t, np.ndarray):
                if t[0] < last or (t.size > 1 and (t[1:] < t[:-1]).any()):
                    # Non-decreasing times: carry the running maximum forward; drop what is too late.
                    running = np.maximum.accumulate(np.maximum(t, last))
                    keep = (running - t) <= self.late_tolerance_s
                    rejected = int(t.size - np.count_nonzero(keep))
                    if rejected:
                        running, v = running[keep], v[keep]
                        if v.size == 0:
                            return rejected
                    t = running
                newest = float(t[-1])
            else:
                if t < last:
                    if last - t > self.late_tolerance_s:
                        return int(v.size)
                    t = last
                newest = float(t)
            cap = self.capacity
            if v.size > cap:  # only the newest `cap` samples can be held
                self.evicted_in_window += v.size - cap
                v = v[-cap:]
                if isinstance(t, np.ndarray):
                    t = t[-cap:]
            m = v.size
            n = self._count
            j0, j1 = max(self._oldest, n - cap), max(self._oldest, n + m - cap)
            if j1 > j0:
                self._count_evictions(j0, j1, newest - self._window_s)
            i = n % cap
            first = min(m, cap - i)
            if isinstance(t, np.ndarray):
                self.times[i : i + first] = t[:first]
                self.times[: m - first] = t[first:]
            else:
                self.times[i : i + first] = t
                self.times[: m - first] = t
            self.values[i : i + first] = v[:first]
            self.values[: m - first] = v[first:]
            self._last_time = newest
            self._count = n + m
            return rejected

    def _count_evictions(self, j0: int, j1: int, horizon: float) -> None:
        """Count the samples at logical [j0, j1), about to be overwritten, that are still inside the
        window (time > horizon). Times are sorted, so the newest one decides whether any is."""
        cap = self.capacity
        if self.times[(j1 - 1) % cap] <= horizon:
            return
        a, b = j0 % cap, (j1 - 1) % cap + 1
        if a < b:
            inside = np.count_nonzero(self.times[a:b] > horizon)
        else:
            inside = np.count_nonzero(self.times[a:] > horizon) + np.count_nonzero(self.times[:b] > horizon)
        self.evicted_in_window += int(inside)

    # -- reading ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Total samples ever appended (the logical index of the next one)."""
        return self._count

    @property
    def last_time(self) -> float:
        return self._last_time

    def __len__(self) -> int:
        return min(self._count - self._oldest, self.capacity)

    def snapshot(self) -> RingSnapshot:
        """Arrays, capacity and count taken together (under the write lock, so a concurrent
        ``grow`` cannot mix them); the arrays are then read without any lock."""
        with self._write_lock:
            return self.snapshot_unlocked()

    def snapshot_unlocked(self) -> RingSnapshot:
        """``snapshot()`` for a caller that already holds ``write_locked()``."""
        count = self._count
        return RingSnapshot(self.times, self.values, self.capacity, max(self._oldest, count - self.capacity), count)

    def write_locked(self) -> threading.Lock:
        """The write lock, for a reader that must read without any writer (the last resort after
        writers lapped it repeatedly): ``with buf.write_locked(): ...``."""
        return self._write_lock

    def grow(self, capacity: int, window_s: float) -> None:
        """Enlarge in place without losing a sample: new arrays, every held sample copied to its
        slot (logical index j lives at j % capacity), then swapped in under the write lock. Readers
        of an older snapshot keep the old arrays, which are never written again."""
        with self._write_lock:
            self._window_s = max(self._window_s, float(window_s))
            if capacity <= self.capacity:
                return
            count, old_cap = self._count, self.capacity
            logical = np.arange(max(self._oldest, count - old_cap), count)
            times = np.zeros(capacity, dtype=np.float64)
            values = np.zeros(capacity, dtype=np.float64)
            times[logical % capacity] = self.times[logical % old_cap]
            values[logical % capacity] = self.values[logical % old_cap]
            self.times, self.values, self.capacity = times, values, int(capacity)
            self._oldest = int(logical[0]) if logical.size else count

    def is_intact(self, first: int) -> bool:
        """True while no slot at logical index >= ``first`` has been overwritten since it was read."""
        return first >= self._count - self.capacity

    def window(self, t_start: float, t_end: float) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the (times, values) with ``t_start < time <= t_end``, oldest first."""
        for _ in range(3):
            snap = self.snapshot()
            lo, hi = logical_range(snap, t_start, t_end)
            times = gather(snap.times, snap.capacity, lo, hi)
            values = gather(snap.values, snap.capacity, lo, hi)
            if self.is_intact(lo):
                return times, values
        # A writer lapped us three times: the buffer is far too small for the traffic. Hold the
        # write lock for one copy rather than return a torn window.
        with self._write_lock:
            snap = self.snapshot()
            lo, hi = logical_range(snap, t_start, t_end)
            return gather(snap.times, snap.capacity, lo, hi), gather(snap.values, snap.capacity, lo, hi)

    @property
    def nbytes(self) -> int:
        return self.times.nbytes + self.values.nbytes


def logical_range(snap: RingSnapshot, t_start: float, t_end: float) -> tuple[int, int]:
    """Logical indices [lo, hi) of the samples with ``t_start < time <= t_end``. Times are
    non-decreasing in logical order, so each of the (at most two) physical segments is sorted and
    ``np.searchsorted`` finds both ends."""
    first, count, cap = snap.first, snap.end, snap.capacity
    if count <= first:
        return first, first
    a = first % cap
    split = min(count, first + cap - a)  # logical index where the physical array wraps to 0
    head = snap.times[a : a + (split - first)]
    tail = snap.times[: count - split]
    ends = np.array((t_start, t_end))
    found = np.searchsorted(head, ends, side="right") + first
    if tail.size:
        in_tail = ends >= tail[0]
        if in_tail.any():
            found = np.where(in_tail, np.searchsorted(tail, ends, side="right") + split, found)
    return int(found[0]), int(found[1])


def gather(arr: np.ndarray, cap: int, lo: int, hi: int) -> np.ndarray:
    if hi <= lo:
        return np.empty(0, dtype=arr.dtype)
    a, b = lo % cap, (hi - 1) % cap + 1
    if a < b:
        return arr[a:b].copy()
    return np.concatenate((arr[a:], arr[:b]))
