"""From the monitor's raw series to one aligned frame: a value per graph node per time bin.

Why bins: the series arrive at different rates (per step, per request, per sampler tick); scoring,
onset detection and correlation need them on one grid. Counts become rates (a bin with no sample
of a count is zero: nothing happened), gauges and per-request values become means (a bin with no
sample is missing: NaN, never invented).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aphrodite_sla.rca.graph import GRAPH, Agg, Node

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.store.metric_store import MetricStore

CPU_COUNT = os.cpu_count() or 1

# (times, values) of a store series between t0 and t1, or None when it is not recorded
SeriesReader = Callable[[str, float, float], "tuple[np.ndarray, np.ndarray] | None"]


@dataclass(frozen=True)
class Frame:
    """``values[name]`` has one entry per bin; ``times`` are the bins' end times."""

    times: np.ndarray
    bin_s: float
    values: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.times)


def store_reader(store: MetricStore) -> SeriesReader:
    """Reads a ``MetricStore``'s rings (copies; never holds a lock the writers need)."""

    def read(name: str, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray] | None:
        buf = store.buffer(name)
        if buf is None:
            return None
        return buf.window(t0, t1)

    return read


def mapping_reader(series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> SeriesReader:
    def read(name: str, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray] | None:
        got = series.get(name)
        if got is None:
            return None
        t, v = np.asarray(got[0], dtype=float), np.asarray(got[1], dtype=float)
        keep = (t > t0) & (t <= t1)
        return t[keep], v[keep]

    return read


def _binned(t: np.ndarray, v: np.ndarray, t0: float, bin_s: float, n: int, agg: Agg) -> np.ndarray:
    finite = np.isfinite(v) & np.isfinite(t)
    t, v = t[finite], v[finite]
    idx = np.ceil((t - t0) / bin_s).astype(np.int64) - 1  # bin k holds (t0 + k*bin_s, t0 + (k+1)*bin_s]
    ok = (idx >= 0) & (idx < n)
    idx, v = idx[ok], v[ok]
    sums = np.bincount(idx, weights=v, minlength=n)[:n]
    if agg is Agg.RATE:
        return sums / bin_s
    if agg is Agg.EVENT:
        return sums
    counts = np.bincount(idx, minlength=n)[:n].astype(float)
    out = np.full(n, np.nan)
    have = counts > 0
    if agg is Agg.LAST:
        out[idx] = v  # later samples overwrite earlier ones (times are ordered)
        return out
    out[have] = sums[have] / counts[have]
    return out


def node_values(node: Node, read: SeriesReader, t0: float, t1: float, bin_s: float, n: int) -> np.ndarray | None:
    """The node's binned series (from its first alternative that is recorded here, with samples in
    this window or not: a source never switches from one window to the next), or None."""
    for names, agg in ((node.series, node.agg), *node.fallback):
        parts = _read_all(names, agg, read, t0, t1, bin_s, n)
        if parts is not None:
            return _combine(node, parts)
    return None


def _read_all(names: tuple[str, ...], agg: Agg, read: SeriesReader, t0: float, t1: float, bin_s: float,
              n: int) -> list[np.ndarray] | None:
    parts = []
    for name in names:
        got = read(name, t0, t1)
        if got is None:  # not recorded here at all: try the next alternative
            return None
        parts.append(_binned(got[0], got[1], t0, bin_s, n, agg))
    return parts


def _combine(node: Node, parts: list[np.ndarray]) -> np.ndarray:
    if node.combine == "ratio":
        num, den = parts
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(den > 0, 100.0 * num / den, np.nan)
        return np.asarray(out, dtype=float)
    if node.combine == "diff":
        return np.clip(parts[0] - parts[1], 0.0, None)
    if node.combine == "host_minus_process":
        # system CPU is a percent of the host; a process's psutil percent is per core
        return np.clip(parts[0] - parts[1] / CPU_COUNT, 0.0, None)
    return parts[0]


def build_frame(read: SeriesReader, t0: float, t1: float, bin_s: float = 5.0, nodes: tuple[Node, ...] = GRAPH) -> Frame:
    """Every node that has data between ``t0`` and ``t1`` on a grid of ``bin_s`` bins."""
    n = max(0, int(np.floor((t1 - t0) / bin_s)))
    times = t0 + bin_s * (np.arange(n) + 1.0)
    values: dict[str, np.ndarray] = {}
    for node in nodes:
        got = node_values(node, read, t0, t0 + n * bin_s, bin_s, n)
        if got is not None:
            values[node.name] = got
    return Frame(times, bin_s, values)
