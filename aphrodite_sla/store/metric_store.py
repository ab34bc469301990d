"""Named ring buffers and the one place where samples are validated and refused ones counted.

``record`` and ``record_batch`` are the hot path (an engine's event loop calls them): no logging,
no evaluation, no exception escapes; a bad sample is dropped and counted by metric and reason.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from aphrodite_sla.clock import Clock, system_clock, wall_clock_for
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.store.ring import Rejected, RingBuffer
from aphrodite_sla.store.spec import DropReason, MetricSpec
from aphrodite_sla.store.thinning import Thinning

# Distinct unknown metric names counted by name; past this they share one label, so a caller that
# records ever-new names cannot grow our memory (or a Prometheus label set) without bound.
MAX_UNKNOWN_NAMES = 64
OTHER_UNKNOWN = "<other>"


class MetricStore:
    """Holds one ``RingBuffer`` per registered metric.

    ``late_tolerance_s``: how far behind the newest sample a sample may arrive and still be kept
    (stored at the newest timestamp). Timestamps given by the caller are wall-clock times
    (``wall_clock``, by default the one matching ``clock``): they are converted to monitor time by
    their age, so a wall-clock step moves nothing. A timestamp up to ``max_future_s`` ahead is
    stored at the present (so it cannot hold later samples back); further ahead it is refused.
    ``thinning_seed``: makes the random draws of thinned series reproducible (tests).
    """

    def __init__(
        self,
        clock: Clock = system_clock,
        *,
        late_tolerance_s: float = 5.0,
        max_future_s: float = 60.0,
        wall_clock: Clock | None = None,
        thinning_seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock if wall_clock is not None else wall_clock_for(clock)
        self._converts = self.wall_clock is not clock
        self.late_tolerance_s = float(late_tolerance_s)
        self.max_future_s = float(max_future_s)
        self._buffers: dict[str, RingBuffer] = {}
        self._specs: dict[str, MetricSpec] = {}
        self._drops: dict[tuple[str, DropReason], int] = {}
        self._thinning: dict[str, Thinning] = {}
        self._thinning_seed = thinning_seed
        self.drops_version = 0  # changes whenever a drop is counted (readers cache their copies)
        self._drop_lock = threading.Lock()
        self._register_lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._drop_lock = threading.Lock()
        self._register_lock = threading.Lock()

    # -- registration ----------------------------------------------------------------------
    def register(self, spec: MetricSpec) -> RingBuffer:
        """Create the series, or grow it (keeping its samples) if ``spec`` needs a longer window or
        a higher rate than it has."""
        with self._register_lock:
            old_spec = self._specs.get(spec.name)
            if old_spec is not None:
                merged = MetricSpec(
                    name=spec.name,
                    window_seconds=max(old_spec.window_seconds, spec.window_seconds),
                    sample_rate_hz=max(old_spec.sample_rate_hz, spec.sample_rate_hz),
                    allow_negative=old_spec.allow_negative or spec.allow_negative,
                    max_value=max(old_spec.max_value, spec.max_value),
                    unit=old_spec.unit or spec.unit,
                    thin=old_spec.thin and spec.thin,  # one reader of sums or rates forbids thinning
                )
                if merged == old_spec:
                    return self._buffers[spec.name]
                spec = merged
            buf = self._buffers.get(spec.name)
            if buf is None:
                buf = RingBuffer(spec.capacity, window_s=spec.window_seconds, late_tolerance_s=self.late_tolerance_s)
                self._buffers[spec.name] = buf
            else:
                buf.grow(spec.capacity, spec.window_seconds)  # in place: writers racing it lose nothing
            self._specs[spec.name] = spec
            if spec.thin:
                thinning = self._thinning.get(spec.name)
                if thinning is None:
                    self._thinning[spec.name] = Thinning(spec.sample_rate_hz, spec.window_seconds, seed=self._seed(spec.name))
                else:
                    thinning.retune(spec.sample_rate_hz, spec.window_seconds)
            else:
                self._thinning.pop(spec.name, None)
            return buf

    def _seed(self, name: str) -> int | None:
        if self._thinning_seed is None:
            return None
        return (self._thinning_seed * 1_000_003 + sum(map(ord, name))) & 0xFFFFFFFF

    def thinned(self) -> dict[str, int]:
        """Samples not kept by each thinned series (a share of its arrivals, not drops)."""
        return {name: t.thinned for name, t in self._thinning.items() if t.thinned}

    def keep_probability(self, name: str) -> float:
        """The share of ``name``'s arrivals kept now (1.0 for a series that is not thinned)."""
        thinning = self._thinning.get(name)
        return thinning.keep if thinning is not None else 1.0

    def spec(self, name: str) -> MetricSpec | None:
        return self._specs.get(name)

    def buffer(self, name: str) -> RingBuffer | None:
        return self._buffers.get(name)

    def names(self) -> list[str]:
        return list(self._buffers)

    @property
    def nbytes(self) -> int:
        """Bytes held by the sample arrays of every series."""
        return sum(b.nbytes for b in self._buffers.values())

    # -- the hot path ----------------------------------------------------------------------
    def record(self, name: str, value: Any, timestamp: float | None = None) -> bool:
        """Store one sample (or, for a thinned series, let the kept share represent it); returns
        False (and counts why) instead of raising."""
        buf = self._buffers.get(name)
        if buf is None:
            self._drop(name, DropReason.UNKNOWN_METRIC)
            return False
        if isinstance(value, (str, bytes)):
            self._drop(name, DropReason.NOT_A_NUMBER)
            return False
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            self._drop(name, DropReason.NOT_A_NUMBER)
            return False
        if v != v:
            self._drop(name, DropReason.NAN)
            return False
        if v in (math.inf, -math.inf):
            self._drop(name, DropReason.INFINITE)
            return False
        spec = self._specs[name]
        if v < 0.0 and not spec.allow_negative:
            self._drop(name, DropReason.NEGATIVE)
            return False
        if v > spec.max_value:
            self._drop(name, DropReason.OUT_OF_RANGE)
            return False
        now = self.clock()
        if timestamp is None:
            t = now
        else:
            try:
                t = float(timestamp)
            except (TypeError, ValueError, OverflowError):
                self._drop(name, DropReason.BAD_TIMESTAMP)
                return False
            if self._converts:
                t = now - (self.wall_clock() - t)  # by its age: immune to wall-clock steps
            if not (t - now <= self.max_future_s):  # also refuses NaN
                self._drop(name, DropReason.BAD_TIMESTAMP)
                return False
            if t > now:
                t = now
        thinning = self._thinning.get(name)
        if thinning is not None:
            keep = thinning.observe(t, 1)
            if keep < 1.0 and not thinning.keep_one(keep):
                return True  # accepted, represented by the kept share
        try:
            buf.append(t, v)
        except Rejected:
            self._drop(name, DropReason.OUT_OF_ORDER)
            return False
        return True

    def record_batch(self, name: str, values: Any, timestamps: Any = None) -> int:
        """Store many samples of one metric (``timestamps``: None for now, one number for all, or
        one per value). Returns how many were accepted (stored, or for a thinned series represented
        by the share it keeps); every refused one is counted."""
        buf = self._buffers.get(name)
        v, numbers = _as_numbers(values)
        if buf is None:
            self._drop(name, DropReason.UNKNOWN_METRIC, v.size)
            return 0
        if numbers is not None:  # some were not numbers (a string is refused here as in record())
            self._drop(name, DropReason.NOT_A_NUMBER, int(v.size - np.count_nonzero(numbers)))
        if v.size == 0:
            return 0
        now = self.clock()
        spec = self._specs[name]
        t: np.ndarray | float
        if timestamps is None:
            t = now
        else:
            try:
                t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError, OverflowError):
                self._drop(name, DropReason.BAD_TIMESTAMP, v.size)
                return 0
            if self._converts:
                t = now - (self.wall_clock() - t)  # by their age: immune to wall-clock steps
            if t.size == 1:
                t = float(t[0])
                if not (t - now <= self.max_future_s):  # also refuses NaN
                    self._drop(name, DropReason.BAD_TIMESTAMP, v.size if numbers is None else int(np.count_nonzero(numbers)))
                    return 0
                t = min(t, now)
            elif t.size != v.size:
                self._drop(name, DropReason.BAD_TIMESTAMP, v.size if numbers is None else int(np.count_nonzero(numbers)))
                return 0
            elif numbers is not None:
                t = t[numbers]
        if numbers is not None:
            v = v[numbers]
            if v.size == 0:
                return 0
        # Fast path: two reductions prove the whole batch valid (NaN fails every comparison).
        low, high = v.min(), v.max()
        valid = high < math.inf and high <= spec.max_value and (low >= 0.0 if not spec.allow_negative else low > -math.inf)
        if isinstance(t, np.ndarray):
            ok_time = t - now <= self.max_future_s  # False for NaN
            valid = valid and bool(ok_time.all())
        else:
            ok_time = None
        if not valid:
            if ok_time is None:
                ok_time = np.ones(v.size, dtype=bool)
            ok = np.isfinite(v)
            if not spec.allow_negative:
                ok &= v >= 0.0
            ok &= v <= spec.max_value
            all_ok = ok & ok_time
            self._count_batch_drops(name, v, ok, ok_time, spec)
            v = v[all_ok]
            if isinstance(t, np.ndarray):
                t = t[all_ok]
            if v.size == 0:
                return 0
        if isinstance(t, np.ndarray) and t.size and t.max() > now:
            t = np.minimum(t, now)  # the (near) future is stored at the present
        accepted = int(v.size)
        thinning = self._thinning.get(name)
        if thinning is not None:
            if isinstance(t, np.ndarray):
                keep = thinning.observe(float(t[-1]), accepted, float(t[-1] - t[0]))
            else:
                keep = thinning.observe(t, accepted)
            if keep < 1.0:
                mask = thinning.sample_mask(accepted, keep)
                v = v[mask]
                if isinstance(t, np.ndarray):
                    t = t[mask]
                if v.size == 0:
                    return accepted
        late = buf.append_batch(t, v)
        if late:
            self._drop(name, DropReason.OUT_OF_ORDER, late)
        return accepted - late

    def _count_batch_drops(self, name: str, v: np.ndarray, ok: np.ndarray, ok_time: np.ndarray, spec: MetricSpec) -> None:
        bad = ~ok
        nan = np.isnan(v)
        inf = np.isinf(v)
        counts = {
            DropReason.NAN: int(np.count_nonzero(nan)),
            DropReason.INFINITE: int(np.count_nonzero(inf)),
        }
        finite = ~(nan | inf)
        if not spec.allow_negative:
            counts[DropReason.NEGATIVE] = int(np.count_nonzero(finite & (v < 0.0)))
        counts[DropReason.OUT_OF_RANGE] = int(np.count_nonzero(finite & (v > spec.max_value)))
        counts[DropReason.BAD_TIMESTAMP] = int(np.count_nonzero(~bad & ~ok_time))
        for reason, n in counts.items():
            if n:
                self._drop(name, reason, n)

    # -- drop accounting -------------------------------------------------------------------
    def _drop(self, name: str, reason: DropReason, n: int = 1) -> None:
        with self._drop_lock:
            if reason is DropReason.UNKNOWN_METRIC:
                name = name if isinstance(name, str) else repr(name)
                known = sum(1 for (m, r) in self._drops if r is DropReason.UNKNOWN_METRIC)
                if (name, reason) not in self._drops and known >= MAX_UNKNOWN_NAMES:
                    name = OTHER_UNKNOWN
            key = (name, reason)
            self._drops[key] = self._drops.get(key, 0) + n
            self.drops_version += 1

    def dropped(self) -> dict[tuple[str, DropReason], int]:
        """Counts of refused samples by (metric, reason)."""
        with self._drop_lock:
            return dict(self._drops)

    def dropped_total(self, name: str | None = None) -> int:
        with self._drop_lock:
            return sum(n for (m, _), n in self._drops.items() if name is None or m == name)


def _as_numbers(values: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``values`` as a flat float64 array, and a mask of the entries that were numbers (None when
    all were). Iterables of any kind (a generator too) are read once; strings and other
    non-numbers are not parsed: they become masked-out entries, each counted as a drop."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False).reshape(-1), None
    if isinstance(values, (str, bytes)):
        items: list[Any] = [values]
    elif isinstance(values, (list, tuple, np.ndarray)):
        items = list(values) if isinstance(values, np.ndarray) else values  # type: ignore[assignment]
    else:
        try:
            items = list(values)
        except TypeError:
            items = [values]
    try:
        arr = np.asarray(items)
        if arr.dtype.kind in "fiub" and arr.ndim == 1:
            return arr.astype(np.float64, copy=False), None
    except Exception:
        pass
    out = np.empty(len(items), dtype=np.float64)
    numbers = np.ones(len(items), dtype=bool)
    for i, item in enumerate(items):
        if isinstance(item, (str, bytes)):
            numbers[i] = False
            continue
        try:
            out[i] = float(item)
        except Exception:
            numbers[i] = False
    return out, numbers
