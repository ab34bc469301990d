"""The evaluation plan: every window the evaluator reads, computed by one numba call.

Why one call: the per-call overhead of a numba kernel (argument unboxing, dispatch) cost more than
the work for most windows. The plan groups what reads the same series over the same window (the
SLAs, exporter-watched quantiles and rates) so one selection pass serves them all, and hands the
kernel every ring in place (by address; the plan holds the arrays while it runs).

Incremental windows: between evaluations a window changes by the samples recorded since and those
that aged out, a few percent of it. The plan keeps each window's state (bracket sets around its
quantiles, their below-counts, its sum) so the kernel updates it from that churn instead of
re-reading the window (``store.kernels``, "incremental windows"); it is rebuilt from a full pass
whenever the update cannot be trusted.

Consistent reads: each ring's (capacity, first, count) is taken under its write lock, the kernel
reads without locks, and afterwards each window is checked intact (no slot it read was
overwritten by a writer lapping the ring); a torn window's incremental state is dropped and the
window recomputed, finally with the ring's write lock held.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic
from aphrodite_sla.snapshot import WindowStatistics
from aphrodite_sla.store.metric_store import MetricStore
from aphrodite_sla.store.ring import RingBuffer, RingSnapshot

QUANTILE_STATISTICS = {st.quantile: st for st in Statistic if st.quantile is not None}
_ATTEMPTS = 3
# Storage for the sorted bracket sets of an incremental window with quantiles, as a share of its
# ring's capacity (the ring holds two windows; a bracket holds ~5-10% of one): 2 bytes per ring slot.
SET_SHARE = 0.25


@dataclass
class WindowSpec:
    """One window of one series and everything computed over it."""

    series: str
    window_s: float
    quantiles: tuple[float, ...] = ()
    moments: bool = False
    fresh: bool = False  # also the newest interval (anomaly input of the SLAs reading it)
    budgets: list[SLAThreshold] = field(default_factory=list)  # SLAs with an objective: classify new samples
    watched: bool = False  # exported as WindowStatistics


class SLAReading(NamedTuple):
    """One SLA's statistic over its window and over the newest interval, with sample counts."""

    value: float
    samples: int
    fresh_value: float
    fresh_samples: int


class BudgetReading(NamedTuple):
    """Samples new since the last evaluation, and how many of them were beyond the SLA's bound."""

    new: int
    bad: int


@dataclass(frozen=True)
class PlanResult:
    slas: dict[str, SLAReading]
    budgets: dict[str, BudgetReading]
    windows: dict[tuple[str, float], WindowStatistics]
    coverage: dict[tuple[str, float], float]  # (series, window s) -> share of the window its ring holds


class WindowPlan:
    """Built from the enabled SLAs and the watched windows; ``compute(now)`` runs one evaluation's
    kernel call. Owned by the evaluator thread (its scratch and counters are not shared)."""

    def __init__(self, store: MetricStore, slas: list[SLAThreshold], watched: dict[tuple[str, float], tuple[tuple[float, ...], bool]]) -> None:
        from aphrodite_sla.store import kernels  # numba loads here, never at package import

        self._kernels = kernels
        self.store = store
        specs: dict[tuple[str, float], WindowSpec] = {}
        # per SLA: (name, window index, column of its statistic, is a rate, is a quantile, window s)
        self._readers: list[tuple[str, int, int, bool, bool, float]] = []
        for th in slas:
            key = (th.source, th.window_seconds)
            spec = specs.setdefault(key, WindowSpec(th.source, th.window_seconds))
            q = th.statistic.quantile
            if q is not None:
                spec.quantiles = tuple(sorted({*spec.quantiles, q}))
            else:
                spec.moments = True
            spec.fresh = True
            if th.objective is not None:
                spec.budgets.append(th)
        for (series, window_s), (quantiles, rate) in watched.items():
            spec = specs.setdefault((series, window_s), WindowSpec(series, window_s))
            spec.quantiles = tuple(sorted({*spec.quantiles, *quantiles}))
            spec.moments = spec.moments or rate
            spec.watched = True
        self.specs = list(specs.values())
        index = {key: i for i, key in enumerate(specs)}
        for th in slas:
            i = index[(th.source, th.window_seconds)]
            q = th.statistic.quantile
            col = kernels.PART_Q + specs[(th.source, th.window_seconds)].quantiles.index(q) if q is not None else (
                kernels.PART_SUM if th.statistic is Statistic.RATE else kernels.PART_MEAN)
            self._readers.append((th.metric_name, i, col, th.statistic is Statistic.RATE, q is not None, th.window_seconds))

        g = len(self.specs)
        k = kernels
        width = k.PART_Q + max([len(s.quantiles) for s in self.specs] + [0])
        self._width = width
        self._windows = np.array([s.window_s for s in self.specs], dtype=np.float64)
        self._q_ptr = np.zeros(g + 1, dtype=np.int64)
        self._q_ptr[1:] = np.cumsum([len(s.quantiles) for s in self.specs]) if g else []
        self._qs = np.array([q for s in self.specs for q in s.quantiles], dtype=np.float64)
        self._flags = np.array(
            [(k.FLAG_MOMENTS if s.moments else 0) | (k.FLAG_FRESH if s.fresh else 0) for s in self.specs], dtype=np.int64
        )
        self._b_ptr = np.zeros(g + 1, dtype=np.int64)
        self._b_ptr[1:] = np.cumsum([len(s.budgets) for s in self.specs]) if g else []
        self._b_bounds = np.array([th.bound for s in self.specs for th in s.budgets], dtype=np.float64)
        self._b_upper = np.array([th.direction is Direction.UPPER for s in self.specs for th in s.budgets], dtype=np.bool_)
        self._budget_names = [th.metric_name for s in self.specs for th in s.budgets]
        self._count_from = np.full(g, -1, dtype=np.int64)  # logical index classified up to, per window
        self._ring = np.zeros((g, 3), dtype=np.int64)
        self._span = np.zeros((g, 3), dtype=np.float64)
        self._addr_times = np.zeros(g, dtype=np.int64)
        self._addr_values = np.zeros(g, dtype=np.int64)
        self._out = np.zeros((g, k.ROW_PARTS + 2 * width), dtype=np.float64)
        self._inc_i = np.zeros((g, k.INC_INTS), dtype=np.int64)
        self._inc_f = np.zeros((g, k.INC_FLOATS), dtype=np.float64)
        self._set_room = np.full(g, -1, dtype=np.int64)
        self._addr_set_v = np.zeros(g, dtype=np.int64)
        self._sets: list[Any] = [None] * g  # the bracket-set array of each incremental window
        self._set_capacity = [0] * g  # the ring capacity each set was sized for
        self._b_out = np.zeros(max(len(self._budget_names), 1), dtype=np.float64)
        self._scratch = np.empty(16)  # also the (never read) view of a series not recorded yet
        self._held: list[Any] = [None] * g  # the arrays whose addresses the kernel reads
        self._buffers: list[RingBuffer | None] | None = None

    @property
    def windows(self) -> int:
        return len(self.specs)

    def compute(self, now: float, fresh_s: float) -> PlanResult:
        """Every SLA's reading, every budget's new samples and every watched window at ``now``."""
        g = len(self.specs)
        if g:
            span = self._span
            span[:, 0] = now - self._windows
            span[:, 1] = now - fresh_s
            span[:, 2] = now
            torn = list(range(g))
            for _attempt in range(_ATTEMPTS):
                torn = self._run(torn, locked=False)
                if not torn:
                    break
            if torn:  # a writer lapped these rings three times: copy under their write locks
                self._run(torn, locked=True)
        return self._decode(now)

    def _run(self, rows: list[int], *, locked: bool) -> list[int]:
        """Run the kernel for ``rows`` (all rows: one call); returns the rows that came out torn.
        ``locked``: each row under its ring's write lock (the last resort; nothing is torn then)."""
        buffers = self._buffers
        if buffers is None or None in buffers:  # a series registered since: look again
            buffers = self._buffers = [self.store.buffer(spec.series) for spec in self.specs]
        if locked:
            for i in rows:
                buf = buffers[i]
                if buf is None:
                    self._ring[i] = self._prepare(i, None)
                    self._call(slice(i, i + 1))
                    continue
                with buf.write_locked():
                    self._ring[i] = self._prepare(i, buf.snapshot_unlocked())
                    self._call(slice(i, i + 1))
            return []
        ring = [self._prepare(i, buffers[i].snapshot() if buffers[i] is not None else None) for i in rows]  # type: ignore[union-attr]
        if len(rows) == len(self.specs):
            self._ring[:] = ring
            self._call(None)
        else:
            self._ring[rows] = ring
            for i in rows:
                self._call(slice(i, i + 1))
        read_from = self._out[:, self._kernels.ROW_READ_FROM].tolist()
        torn = [i for i in rows if (buf := buffers[i]) is not None and not buf.is_intact(int(read_from[i]))]
        for i in torn:
            self._inc_i[i, self._kernels.S_VALID] = 0  # built from torn reads: rebuild
        return torn

    def _prepare(self, i: int, snap: RingSnapshot | None) -> tuple[int, int, int]:
        """Row ``i``'s ring arrays' addresses (kept alive in ``_held``); returns its (capacity,
        first, count) row."""
        if snap is None:  # an unrecorded series: an empty range of a (never read) scratch view
            self._held[i] = (self._scratch, self._scratch)
            self._addr_times[i] = self._addr_values[i] = self._scratch.ctypes.data
            return (1, 0, 0)
        held = self._held[i]
        if held is None or held[1] is not snap.values:
            self._held[i] = (snap.times, snap.values)
            self._addr_times[i] = snap.times.ctypes.data
            self._addr_values[i] = snap.values.ctypes.data
        if self._scratch.size < snap.capacity:
            self._scratch = np.empty(snap.capacity)
        if self._set_capacity[i] != snap.capacity:
            self._ensure_sets(i, snap.capacity)
        return (snap.capacity, snap.first, snap.end)

    def _ensure_sets(self, i: int, capacity: int) -> None:
        """An incremental window's set storage, sized from its ring (re-made, and the window
        rebuilt, when the ring grew)."""
        spec = self.specs[i]
        self._set_capacity[i] = capacity
        if not (spec.quantiles or spec.moments):
            return
        room = int(capacity * SET_SHARE) if spec.quantiles else 0
        if self._sets[i] is not None and self._set_room[i] == room:
            return
        values = np.empty(max(room, 1))
        self._sets[i] = values
        self._addr_set_v[i] = values.ctypes.data
        self._set_room[i] = room
        self._inc_i[i, self._kernels.S_VALID] = 0

    def _call(self, rows: slice | None) -> None:
        """The kernel over ``rows`` (None: every row, with no slicing)."""
        k = self._kernels
        if rows is None:
            k.evaluate_windows(
                self._addr_times, self._addr_values, self._ring, self._span, self._q_ptr, self._qs, self._flags,
                self._count_from, self._b_ptr, self._b_bounds, self._b_upper, self._inc_i, self._inc_f, self._addr_set_v,
                self._set_room, self._scratch, self._out, self._b_out,
            )
            return
        start, stop = rows.start, rows.stop
        b0, b1 = self._b_ptr[start], self._b_ptr[stop]
        q0 = self._q_ptr[start]
        k.evaluate_windows(
            self._addr_times[rows], self._addr_values[rows], self._ring[rows], self._span[rows],
            self._q_ptr[start : stop + 1] - q0, self._qs[q0:], self._flags[rows], self._count_from[rows],
            self._b_ptr[start : stop + 1] - b0, self._b_bounds[b0:b1], self._b_upper[b0:b1],
            self._inc_i[rows], self._inc_f[rows], self._addr_set_v[rows], self._set_room[rows],
            self._scratch, self._out[rows], self._b_out[b0:],
        )

    def _decode(self, now: float) -> PlanResult:
        k = self._kernels
        rows = self._out.tolist()
        width = self._width
        fresh_base = k.ROW_PARTS + width
        base = k.ROW_PARTS
        n_col = base + k.PART_N
        fresh_n_col = fresh_base + k.PART_N
        fresh_s = now - float(self._span[0, 1]) if len(self.specs) else 0.0
        slas: dict[str, SLAReading] = {}
        for name, i, col, is_rate, is_quantile, window_s in self._readers:
            row = rows[i]
            n, value = int(row[n_col]), row[base + col]
            fn, fresh = int(row[fresh_n_col]), row[fresh_base + col]
            if is_rate:
                value = value / window_s if n else 0.0
                fresh = fresh / fresh_s if fn and fresh_s > 0 else 0.0
            elif n == 0:
                value = math.nan
            if is_quantile and fn == 0:
                fresh = math.nan
            slas[name] = SLAReading(value, n, fresh, fn)
        budgets: dict[str, BudgetReading] = {}
        b_out = self._b_out.tolist()
        for i, spec in enumerate(self.specs):
            row = rows[i]
            hi = int(row[k.ROW_HI])
            if spec.budgets:
                new = int(row[k.ROW_NEW])
                for j, name in enumerate(self._budget_names[self._b_ptr[i] : self._b_ptr[i + 1]]):
                    budgets[name] = BudgetReading(new, int(b_out[self._b_ptr[i] + j]))
                self._count_from[i] = max(hi, int(self._count_from[i]))
        windows: dict[tuple[str, float], WindowStatistics] = {}
        for i, spec in enumerate(self.specs):
            if not spec.watched:
                continue
            row = rows[i]
            base = k.ROW_PARTS
            n = int(row[base + k.PART_N])
            quantiles = {q: row[base + k.PART_Q + j] for j, q in enumerate(spec.quantiles)} if n else {}
            total = row[base + k.PART_SUM] if spec.moments else math.nan
            windows[(spec.series, spec.window_s)] = WindowStatistics(
                spec.series, spec.window_s, now, n, quantiles,
                row[base + k.PART_MEAN] if spec.moments and n else math.nan,
                (total / spec.window_s if n else 0.0) if spec.moments else math.nan,
            )
        return PlanResult(slas, budgets, windows, self._coverage(now))

    def _coverage(self, now: float) -> dict[tuple[str, float], float]:
        """How much of each window its ring still holds: 1.0 unless samples inside the window were
        overwritten, then (now - oldest held sample) / window. The oldest slot is read after the
        kernel ran; a writer may have replaced it since with a newer time, which only lowers the
        figure (never reports a window covered that was not)."""
        coverage: dict[tuple[str, float], float] = {}
        for i, (spec, (cap, first, count)) in enumerate(zip(self.specs, self._ring.tolist())):
            held = self._held[i]
            if first <= 0 or count <= first or held is None:
                coverage[(spec.series, spec.window_s)] = 1.0
                continue
            covered = now - float(held[0][first % cap])
            coverage[(spec.series, spec.window_s)] = 1.0 if covered >= spec.window_s else max(covered, 0.0) / spec.window_s
        return coverage
