"""The evaluation plan: every window the evaluator reads, computed by one numba call.

Why one call: the per-call overhead of a numba kernel (argument unboxing, dispatch) cost more than
the work for most windows. The plan groups what reads the same series over the same window (the
SLAs, exporter-watched quantiles and rates) so one selection pass serves them all, and hands the
kernel every ring in place (by address; the plan holds the arrays while it runs).

Consistent reads: each ring's (capacity, first, count) is taken under its write lock, the kernel
reads without locks, and afterwards each window is checked intact (no slot it read was
overwritten by a writer lapping the ring); a torn window is recomputed, finally with the ring's
write lock held.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic
from aphrodite_sla.snapshot import WindowStatistics
from aphrodite_sla.store.metric_store import MetricStore

QUANTILE_STATISTICS = {st.quantile: st for st in Statistic if st.quantile is not None}
_ATTEMPTS = 3


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


@dataclass(frozen=True)
class SLAReading:
    """One SLA's statistic over its window and over the newest interval, with sample counts."""

    value: float
    samples: int
    fresh_value: float
    fresh_samples: int


@dataclass(frozen=True)
class BudgetReading:
    """Samples new since the last evaluation, and how many of them were beyond the SLA's bound."""

    new: int
    bad: int


@dataclass(frozen=True)
class PlanResult:
    slas: dict[str, SLAReading]
    budgets: dict[str, BudgetReading]
    windows: dict[tuple[str, float], WindowStatistics]


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
        self._b_out = np.zeros(max(len(self._budget_names), 1), dtype=np.float64)
        self._scratch = np.empty(16)  # also the (never read) view of a series not recorded yet
        self._held: list[Any] = [None] * g  # the arrays whose addresses the kernel reads

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
        """Run the kernel for ``rows`` (all rows: one call); returns the rows that came out torn."""
        buffers = []
        scratch_needed = 0
        for i in rows:
            buf = self.store.buffer(self.specs[i].series)
            buffers.append(buf)
            if buf is None:
                self._ring[i] = (1, 0, 0)
                continue
            snap = buf.snapshot()
            if self._held[i] is None or self._held[i][1] is not snap.values:
                self._held[i] = (snap.times, snap.values)
                self._addr_times[i] = snap.times.ctypes.data
                self._addr_values[i] = snap.values.ctypes.data
            self._ring[i] = (snap.capacity, snap.first, snap.count)
            scratch_needed = max(scratch_needed, snap.capacity)
        if self._scratch.size < scratch_needed:
            self._scratch = np.empty(scratch_needed)
        for i, buf in zip(rows, buffers):
            if buf is None:  # an unrecorded series: a zero-capacity view is never read
                self._held[i] = (self._scratch, self._scratch)
                self._addr_times[i] = self._addr_values[i] = self._scratch.ctypes.data if self._scratch.size else 0
        if len(rows) == len(self.specs):
            self._call(slice(None))
        else:
            for i, buf in zip(rows, buffers):
                if locked and buf is not None:
                    with buf.write_locked():
                        snap = buf.snapshot_unlocked()
                        self._ring[i] = (snap.capacity, snap.first, snap.count)
                        self._call(slice(i, i + 1))
                else:
                    self._call(slice(i, i + 1))
        if locked:
            return []
        out = self._out
        return [i for i, buf in zip(rows, buffers) if buf is not None and not buf.is_intact(int(out[i, 0]))]

    def _call(self, rows: slice) -> None:
        k = self._kernels
        start = 0 if rows.start is None else rows.start
        stop = len(self.specs) if rows.stop is None else rows.stop
        b0, b1 = self._b_ptr[start], self._b_ptr[stop]
        q0 = self._q_ptr[start]
        k.evaluate_windows(
            self._addr_times[rows], self._addr_values[rows], self._ring[rows], self._span[rows],
            self._q_ptr[start : stop + 1] - q0, self._qs[q0:], self._flags[rows], self._count_from[rows],
            self._b_ptr[start : stop + 1] - b0, self._b_bounds[b0:b1], self._b_upper[b0:b1],
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
        return PlanResult(slas, budgets, windows)
