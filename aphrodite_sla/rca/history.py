"""The graph's nodes binned over the last hour, kept up to date after every evaluation.

Why: the monitor's rings are sized for the SLAs' windows (minutes), and per-step gauges arriving
faster than their ring's rate keep only their newest samples; RCA needs an hour of baseline
(the seed's 60-minute window). Binning each new interval while it is still in the rings keeps an
hour of every node in a few hundred floats per node, off the engine's loop (the RCA subscription
thread, after each ``SnapshotPublished``). An analysis reads this history plus the bins since the
last update, straight from the rings.
"""
from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np

from aphrodite_sla.rca.frame import Frame, SeriesReader, build_frame

FIRST_LOOKBACK_S = 300.0  # the first update bins what the rings still hold


class NodeHistory:
    def __init__(self, reader: SeriesReader, bin_s: float = 5.0, horizon_s: float = 3600.0) -> None:
        self.reader = reader
        self.bin_s = float(bin_s)
        self.size = max(1, int(horizon_s / bin_s))
        self._times: deque[float] = deque(maxlen=self.size)
        self._values: dict[str, deque[float]] = {}
        self._end: float | None = None  # end of the last binned bin
        self._lock = threading.Lock()

    def _grid(self, t: float) -> float:
        return math.floor(t / self.bin_s) * self.bin_s

    def update(self, now: float) -> int:
        """Bins every complete bin up to ``now``; returns how many were added."""
        with self._lock:
            start = self._end if self._end is not None else self._grid(now - FIRST_LOOKBACK_S)
            end = self._grid(now)
            if end - start < self.bin_s:
                return 0
            if end - start > self.size * self.bin_s:
                start = end - self.size * self.bin_s
            frame = build_frame(self.reader, start, end, self.bin_s)
            n = len(frame)
            known = len(self._times)
            for name, vals in frame.values.items():
                col = self._values.get(name)
                if col is None:
                    col = self._values[name] = deque([math.nan] * known, maxlen=self.size)
                col.extend(vals.tolist())
            for name, col in self._values.items():
                if name not in frame.values:
                    col.extend([math.nan] * n)
            self._times.extend(frame.times.tolist())
            self._end = start + n * self.bin_s
            return n

    def frame(self, t_end: float) -> Frame:
        """The history plus the bins from its end to ``t_end`` read from the rings now."""
        with self._lock:
            times = np.asarray(self._times, dtype=float)
            values = {k: np.asarray(v, dtype=float) for k, v in self._values.items()}
            end = self._end
        start = end if end is not None else self._grid(t_end - FIRST_LOOKBACK_S)
        fresh = build_frame(self.reader, start, max(start, t_end), self.bin_s)
        n_old, n_new = len(times), len(fresh)
        out: dict[str, np.ndarray] = {}
        for name in set(values) | set(fresh.values):
            old = values.get(name, np.full(n_old, np.nan))
            new = fresh.values.get(name, np.full(n_new, np.nan))
            out[name] = np.concatenate([old, new])
        return Frame(np.concatenate([times, fresh.times]), self.bin_s, out)
