"""What the engine is asked to do: request arrivals and their prompt/output lengths.

Specs are frozen dataclasses (:class:`Workload` and one of the arrival processes); an
:class:`ArrivalStream` turns a spec into concrete requests, drawing from pre-generated random
chunks so the per-step cost stays at a few Python operations.

Arrival processes: :class:`PoissonArrivals` (constant rate), :class:`BurstyArrivals` (on/off
Markov-modulated Poisson), :class:`DiurnalArrivals` (sinusoidal rate) and :class:`TraceArrivals`
(a recorded trace, e.g. from :func:`load_trace_csv`). Rate-based processes are sampled by time
rescaling with a rate that is constant over each engine step, so a rate multiplier (a traffic
surge) changes the arrival rate without re-seeding the stream.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from typing import Union

import numpy as np

_CHUNK = 4096


@dataclass(frozen=True)
class LengthDist:
    """Lognormal token counts: ``median * exp(sigma * N(0, 1))``, rounded and clipped."""

    median: float
    sigma: float = 0.8
    min_tokens: int = 1
    max_tokens: int = 32768

    def __post_init__(self) -> None:
        if not (self.median >= 1 and math.isfinite(self.median)):
            raise ValueError(f"LengthDist.median must be >= 1, got {self.median}")
        if not (0 <= self.sigma < 5):
            raise ValueError(f"LengthDist.sigma must be in [0, 5), got {self.sigma}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"LengthDist needs 1 <= min_tokens <= max_tokens, got {self.min_tokens}, {self.max_tokens}")


@dataclass(frozen=True)
class PoissonArrivals:
    """Constant-rate Poisson arrivals (requests per second)."""

    rate: float = 40.0

    def __post_init__(self) -> None:
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ValueError(f"PoissonArrivals.rate must be finite and >= 0, got {self.rate}")


@dataclass(frozen=True)
class BurstyArrivals:
    """On/off Markov-modulated Poisson: ``rate_on`` during on-periods, ``rate_off`` during
    off-periods; period lengths are exponential with means ``mean_on_s`` / ``mean_off_s``."""

    rate_on: float = 80.0
    rate_off: float = 10.0
    mean_on_s: float = 30.0
    mean_off_s: float = 60.0
    start_on: bool = False

    def __post_init__(self) -> None:
        if min(self.rate_on, self.rate_off) < 0 or min(self.mean_on_s, self.mean_off_s) <= 0:
            raise ValueError("BurstyArrivals: rates must be >= 0 and mean period lengths > 0")

    @property
    def mean_rate(self) -> float:
        return (self.rate_on * self.mean_on_s + self.rate_off * self.mean_off_s) / (self.mean_on_s + self.mean_off_s)


@dataclass(frozen=True)
class DiurnalArrivals:
    """Poisson arrivals with rate ``mean_rate * (1 + amplitude * sin(2 pi (t + phase_s) / period_s))``
    (a compressed "day" when ``period_s`` is short)."""

    mean_rate: float = 30.0
    amplitude: float = 0.6
    period_s: float = 86400.0
    phase_s: float = 0.0

    def __post_init__(self) -> None:
        if self.mean_rate < 0 or not 0 <= self.amplitude <= 1 or self.period_s <= 0:
            raise ValueError("DiurnalArrivals: need mean_rate >= 0, 0 <= amplitude <= 1, period_s > 0")

    def rate_at(self, t: float) -> float:
        return self.mean_rate * (1.0 + self.amplitude * math.sin(2.0 * math.pi * (t + self.phase_s) / self.period_s))


@dataclass(frozen=True)
class TraceArrivals:
    """A recorded trace: arrival times (seconds from the start, non-decreasing) with each
    request's prompt and output token counts. ``loop`` replays it back to back."""

    arrival_s: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    loop: bool = False
    source: str = "<trace>"

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("TraceArrivals: arrival_s, prompt_tokens and output_tokens must have equal lengths")
        if self.loop and (n == 0 or self.arrival_s[-1] <= 0):
            raise ValueError("TraceArrivals: a looping trace needs at least one arrival after t=0")

    @classmethod
    def from_csv(cls, path_or_text: str | os.PathLike[str] | io.TextIOBase, *, loop: bool = False) -> TraceArrivals:
        return load_trace_csv(path_or_text, loop=loop)

    @property
    def span_s(self) -> float:
        return self.arrival_s[-1] if self.arrival_s else 0.0


ArrivalSpec = Union[PoissonArrivals, BurstyArrivals, DiurnalArrivals, TraceArrivals]  # noqa: UP007 - a runtime alias on 3.10


@dataclass(frozen=True)
class Workload:
    """Arrivals plus request shape.

    ``max_tokens`` is every request's ``max_tokens`` parameter: an output that would be longer
    finishes with LENGTH. A ``prefix_hit_fraction`` of requests share a ``shared_prefix_tokens``
    system prompt found in the prefix cache. ``abort_fraction`` / ``error_fraction`` /
    ``repetition_fraction`` of requests end early with ABORT / ERROR / REPETITION (background
    rates, before any fault).
    """

    arrivals: ArrivalSpec = field(default_factory=PoissonArrivals)
    prompt: LengthDist = field(default_factory=lambda: LengthDist(512.0, 0.8))
    output: LengthDist = field(default_factory=lambda: LengthDist(128.0, 0.6))
    max_tokens: int = 1024
    prefix_hit_fraction: float = 0.5
    shared_prefix_tokens: int = 256
    abort_fraction: float = 0.001
    error_fraction: float = 0.0
    repetition_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"Workload.max_tokens must be >= 1, got {self.max_tokens}")
        for name in ("prefix_hit_fraction", "abort_fraction", "error_fraction", "repetition_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Workload.{name} must be in [0, 1], got {v}")
        if self.abort_fraction + self.error_fraction + self.repetition_fraction > 1.0:
            raise ValueError("Workload: abort + error + repetition fractions exceed 1")


# --------------------------------------------------------------------------- trace CSV

TRACE_COLUMNS = ("arrival_time_s", "prompt_tokens", "output_tokens")


def load_trace_csv(source: str | os.PathLike[str] | io.TextIOBase, *, loop: bool = False) -> TraceArrivals:
    """Read a trace CSV with a header naming (at least) ``arrival_time_s, prompt_tokens,
    output_tokens``; other columns are ignored, blank lines and lines starting with ``#``
    skipped. ``source`` is a path, or an open text file. Raises ``ValueError`` naming the file,
    line and column of the first problem (missing column, wrong field count, not a number,
    negative or non-finite time, token count < 1, arrivals out of order)."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, newline="", encoding="utf-8") as fh:
            return _parse_trace(fh, name, loop)
    return _parse_trace(source, getattr(source, "name", "<trace>"), loop)


def _parse_trace(fh: io.TextIOBase, name: str, loop: bool) -> TraceArrivals:
    header: list[str] | None = None
    idx: dict[str, int] = {}
    arrivals: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    last = -math.inf
    for lineno, line in enumerate(fh, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        row = next(csv.reader([line]))
        cells = [c.strip() for c in row]
        if header is None:
            header = cells
            missing = [c for c in TRACE_COLUMNS if c not in header]
            if missing:
                raise ValueError(
                    f"{name}:{lineno}: trace header is missing column(s) {', '.join(missing)} "
                    f"(need {', '.join(TRACE_COLUMNS)}; got {', '.join(header) or 'nothing'})"
                )
            idx = {c: header.index(c) for c in TRACE_COLUMNS}
            continue
        if len(cells) != len(header):
            raise ValueError(f"{name}:{lineno}: expected {len(header)} fields like the header, got {len(cells)}: {stripped!r}")
        raw = cells[idx["arrival_time_s"]]
        try:
            t = float(raw)
        except ValueError:
            raise ValueError(f"{name}:{lineno}: column arrival_time_s: not a number: {raw!r}") from None
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"{name}:{lineno}: column arrival_time_s: must be finite and >= 0, got {raw!r}")
        if t < last:
            raise ValueError(
                f"{name}:{lineno}: column arrival_time_s: {raw} is earlier than the previous arrival "
                f"{last:g} (the trace must be sorted by arrival time)"
            )
        last = t
        counts = []
        for col in ("prompt_tokens", "output_tokens"):
            raw = cells[idx[col]]
            try:
                v = float(raw)
            except ValueError:
                raise ValueError(f"{name}:{lineno}: column {col}: not a number: {raw!r}") from None
            if not math.isfinite(v) or v != int(v) or v < 1:
                raise ValueError(f"{name}:{lineno}: column {col}: must be a whole number >= 1, got {raw!r}")
            counts.append(int(v))
        arrivals.append(t)
        prompts.append(counts[0])
        outputs.append(counts[1])
    if header is None:
        raise ValueError(f"{name}: empty trace (no header line with {', '.join(TRACE_COLUMNS)})")
    if not arrivals:
        raise ValueError(f"{name}: trace has a header but no requests")
    return TraceArrivals(tuple(arrivals), tuple(prompts), tuple(outputs), loop=loop, source=name)


# --------------------------------------------------------------------------- runtime


class _Chunked:
    """Draws from a numpy generator in chunks of ``_CHUNK``; ``next()`` is a list index."""

    __slots__ = ("_buf", "_draw", "_i")

    def __init__(self, draw) -> None:
        self._draw = draw
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        i = self._i
        if i >= len(self._buf):
            self._buf = self._draw(_CHUNK).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]


class ArrivalStream:
    """Concrete arrivals for one :class:`Workload`: ``pull(until_s, rate_mult, prompt_mult,
    out)`` appends ``(arrival_s, prompt_tokens, output_tokens, prefix_tokens)`` for every
    request arriving in ``(last pull, until_s]`` (seconds of engine time)."""

    def __init__(self, workload: Workload, seed: int | np.random.SeedSequence = 0) -> None:
        self.workload = workload
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        g_arr, g_len, g_pre, g_state = (np.random.default_rng(s) for s in ss.spawn(4))
        w = workload
        self._exp = _Chunked(g_arr.standard_exponential)
        self._uni = _Chunked(g_arr.random)
        pm, ps, om, osg = w.prompt.median, w.prompt.sigma, w.output.median, w.output.sigma
        self._plen = _Chunked(lambda n: pm * np.exp(ps * g_len.standard_normal(n)))
        self._olen = _Chunked(lambda n: om * np.exp(osg * g_len.standard_normal(n)))
        self._pre = _Chunked(g_pre.random)
        self._state_rng = g_state
        self._t = 0.0
        self._gap = self._exp.next()
        spec = w.arrivals
        self._spec = spec
        self._trace_i = 0
        self._trace_offset = 0.0
        self._on = False
        self._switch_at = math.inf
        if isinstance(spec, BurstyArrivals):
            self._on = spec.start_on
            self._switch_at = self._period(self._on)
        elif not isinstance(spec, (PoissonArrivals, DiurnalArrivals, TraceArrivals)):
            raise TypeError(f"unknown arrival process {type(spec).__name__}")
        self.arrived = 0

    def _period(self, on: bool) -> float:
        spec = self._spec
        assert isinstance(spec, BurstyArrivals)
        return float(self._state_rng.exponential(spec.mean_on_s if on else spec.mean_off_s))

    def rate_at(self, t: float) -> float:
        """Base arrival rate at engine time ``t`` (advances the on/off state of bursty arrivals)."""
        spec = self._spec
        if isinstance(spec, PoissonArrivals):
            return spec.rate
        if isinstance(spec, DiurnalArrivals):
            return spec.rate_at(t)
        if isinstance(spec, BurstyArrivals):
            while t >= self._switch_at:
                self._on = not self._on
                self._switch_at += self._period(self._on)
            return spec.rate_on if self._on else spec.rate_off
        return 0.0

    def next_arrival_hint(self) -> float:
        """Engine time of the next arrival if the rate stays as it is now (inf if none)."""
        spec = self._spec
        if isinstance(spec, TraceArrivals):
            if self._trace_i < len(spec.arrival_s):
                return spec.arrival_s[self._trace_i] + self._trace_offset
            return spec.arrival_s[0] + self._trace_offset + spec.span_s if spec.loop else math.inf
        r = self.rate_at(self._t)
        return self._t + self._gap / r if r > 0 else self._t + 1.0

    def _emit(self, t: float, prompt: float, output: float, prompt_mult: float, out: list) -> None:
        w = self.workload
        p = int(prompt * prompt_mult + 0.5)
        lo, hi = w.prompt.min_tokens, w.prompt.max_tokens
        p = lo if p < lo else hi if p > hi else p
        o = int(output + 0.5)
        lo, hi = w.output.min_tokens, w.output.max_tokens
        o = lo if o < lo else hi if o > hi else o
        prefix = w.shared_prefix_tokens if self._pre.next() < w.prefix_hit_fraction else 0
        out.append((t, p, o, prefix))
        self.arrived += 1

    def pull(self, until_s: float, rate_mult: float, prompt_mult: float, out: list) -> None:
        t = self._t
        if until_s <= t:
            return
        spec = self._spec
        if isinstance(spec, TraceArrivals):
            self._pull_trace(spec, until_s, rate_mult, prompt_mult, out)
            self._t = until_s
            return
        r = self.rate_at(t) * rate_mult
        if r <= 0.0:
            self._t = until_s
            return
        gap = self._gap
        while True:
            dt = gap / r
            if t + dt > until_s:
                self._gap = gap - (until_s - t) * r
                self._t = until_s
                return
            t += dt
            self._emit(t, self._plen.next(), self._olen.next(), prompt_mult, out)
            gap = self._exp.next()

    def _pull_trace(self, spec: TraceArrivals, until_s: float, rate_mult: float, prompt_mult: float, out: list) -> None:
        arr, n = spec.arrival_s, len(spec.arrival_s)
        while True:
            i = self._trace_i
            if i >= n:
                if not spec.loop:
                    return
                self._trace_offset += spec.span_s
                self._trace_i = i = 0
            t = arr[i] + self._trace_offset
            if t > until_s:
                return
            self._trace_i = i + 1
            # a rate multiplier replays each trace request k times, E[k] = rate_mult
            k = int(rate_mult)
            if self._uni.next() < rate_mult - k:
                k += 1
            for _ in range(k):
                self._emit(t, float(spec.prompt_tokens[i]), float(spec.output_tokens[i]), prompt_mult, out)


__all__ = [
    "TRACE_COLUMNS",
    "ArrivalSpec",
    "ArrivalStream",
    "BurstyArrivals",
    "DiurnalArrivals",
    "LengthDist",
    "PoissonArrivals",
    "TraceArrivals",
    "Workload",
    "load_trace_csv",
]
