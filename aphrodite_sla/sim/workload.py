"""What the engine is asked to do: request arrivals and their prompt/output lengths.

Specs are frozen dataclasses (:class:`Workload` and one of the arrival processes); an
:class:`ArrivalStream` turns a spec into concrete requests, drawing from pre-generated random
chunks so the per-step cost stays at a few Python operations.

Arrival processes: :class:`PoissonArrivals` (constant rate), :class:`BurstyArrivals` (on/off
Markov-modulated Poisson), :class:`DiurnalArrivals` (sinusoidal rate) and :class:`TraceArrivals`
(a recorded trace, e.g. from :func:`aphrodite_sla.sim.traces.load_trace` or
:func:`load_trace_csv`; scaled in time, thinned, looped). Rate-based processes are sampled by
time rescaling with a rate that is constant over each engine step, so a rate multiplier (a
traffic surge) changes the arrival rate without re-seeding the stream; a trace's time runs
faster instead (each recorded request still arrives once).
"""
from __future__ import annotations

import dataclasses
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
    request's prompt and output token counts, replayed as recorded.

    * ``output_tokens`` of 0 marks a request that failed in the recorded trace (BurstGPT logs
      failures with 0 response tokens): it is replayed and finishes with ERROR at its first token.
    * ``time_scale``: arrival times are multiplied by it (< 1 compresses the trace: a higher
      arrival rate; see :func:`aphrodite_sla.sim.capacity.time_scale_for_load`).
    * ``thin``: each request is kept with this probability (a lighter load with the same mix);
      the draw depends on ``thin_seed`` only (not on the simulator's seed), so a thinned replay
      keeps the same requests whatever the engine seed. Each pass of a looped trace draws anew.
    * ``loop``: replays the trace back to back, one pass every ``span_s * time_scale`` seconds.
    * ``block_hashes``: per request, the hashes of its prompt's KV blocks of ``hash_block_size``
      tokens (the Mooncake trace's ``hash_ids``, 512 tokens per block). When present the engine
      keeps an LRU prefix cache of these hashes; when empty, the workload's
      ``prefix_hit_fraction`` model applies.
    * ``skipped_rows``: malformed rows the loader skipped (``load_trace(max_bad_rows=...)``).

    Equal inputs give equal replays: a surge during the replay (``traffic_surge``) warps the
    trace's time (each request still arrives once).
    """

    arrival_s: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    loop: bool = False
    source: str = "<trace>"
    time_scale: float = 1.0
    thin: float = 1.0
    thin_seed: int = 0
    block_hashes: tuple[tuple[int, ...], ...] = ()
    hash_block_size: int = 512
    skipped_rows: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        for name in ("arrival_s", "prompt_tokens", "output_tokens"):
            v = getattr(self, name)
            if not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(np.asarray(v).tolist()))
        if not isinstance(self.block_hashes, tuple) or (self.block_hashes and not isinstance(self.block_hashes[0], tuple)):
            object.__setattr__(self, "block_hashes", tuple(tuple(int(h) for h in hs) for hs in self.block_hashes))
        n = len(self.arrival_s)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("TraceArrivals: arrival_s, prompt_tokens and output_tokens must have equal lengths")
        if self.block_hashes and len(self.block_hashes) != n:
            raise ValueError("TraceArrivals: block_hashes must be empty or have one entry per request")
        if self.loop and (n == 0 or self.arrival_s[-1] <= 0):
            raise ValueError("TraceArrivals: a looping trace needs at least one arrival after t=0")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"TraceArrivals.time_scale must be finite and > 0, got {self.time_scale}")
        if not 0.0 < self.thin <= 1.0:
            raise ValueError(f"TraceArrivals.thin is the probability of keeping a request, must be in (0, 1], got {self.thin}")
        if self.thin_seed < 0:
            raise ValueError(f"TraceArrivals.thin_seed must be >= 0, got {self.thin_seed}")
        if self.hash_block_size < 1:
            raise ValueError(f"TraceArrivals.hash_block_size must be >= 1, got {self.hash_block_size}")
        if n:
            arr = np.asarray(self.arrival_s, dtype=float)
            if not (np.all(np.isfinite(arr)) and arr[0] >= 0 and np.all(np.diff(arr) >= 0)):
                raise ValueError("TraceArrivals: arrival_s must be finite, >= 0 and non-decreasing")
            if min(self.prompt_tokens) < 1 or min(self.output_tokens) < 0:
                raise ValueError("TraceArrivals: prompt_tokens must be >= 1 and output_tokens >= 0 (0: a failed request)")

    @classmethod
    def from_csv(cls, path_or_text: str | os.PathLike[str] | io.TextIOBase, *, loop: bool = False) -> TraceArrivals:
        return load_trace_csv(path_or_text, loop=loop)

    def with_(self, **changes) -> TraceArrivals:
        """A copy with fields replaced, e.g. ``trace.with_(time_scale=0.5, thin=0.8, loop=True)``."""
        return dataclasses.replace(self, **changes)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        """The last arrival time as recorded (before ``time_scale``)."""
        return self.arrival_s[-1] if self.arrival_s else 0.0

    @property
    def duration_s(self) -> float:
        """Engine seconds one pass takes to replay: ``span_s * time_scale``."""
        return self.span_s * self.time_scale

    @property
    def mean_rate(self) -> float:
        """Mean arrival rate of the replay (requests per engine second, after ``time_scale`` and
        ``thin``); inf when every request arrives at once."""
        n = len(self.arrival_s)
        if n == 0:
            return 0.0
        d = self.duration_s
        return n * self.thin / d if d > 0 else math.inf

    @property
    def failed_count(self) -> int:
        """Requests recorded as failed (``output_tokens == 0``)."""
        return sum(1 for o in self.output_tokens if o == 0)


ArrivalSpec = Union[PoissonArrivals, BurstyArrivals, DiurnalArrivals, TraceArrivals]  # noqa: UP007 - a runtime alias on 3.10


@dataclass(frozen=True)
class Workload:
    """Arrivals plus request shape.

    ``max_tokens`` is every request's ``max_tokens`` parameter: an output that would be longer
    finishes with LENGTH. A ``prefix_hit_fraction`` of requests share a ``shared_prefix_tokens``
    system prompt found in the prefix cache. ``abort_fraction`` / ``error_fraction`` /
    ``repetition_fraction`` of requests end early with ABORT / ERROR / REPETITION (background
    rates, before any fault). A prompt of the engine's ``max_model_len`` tokens or more (a
    lognormal tail, a trace's long-context request) is rejected by the engine, not truncated.
    With a trace, ``prompt`` / ``output`` are unused (the trace has the lengths), and so is
    ``prefix_hit_fraction`` when the trace carries block hashes.
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


def load_trace_csv(
    source: str | os.PathLike[str] | io.TextIOBase, *, loop: bool = False, max_bad_rows: int = 0
) -> TraceArrivals:
    """Read a trace CSV with a header naming (at least) ``arrival_time_s, prompt_tokens,
    output_tokens``; other columns are ignored, blank lines and lines starting with ``#``
    skipped. ``source`` is a path, or an open text file. Raises ``ValueError`` naming the file,
    line and column of the first problem (missing column, wrong field count, not a number,
    negative or non-finite time, token count < 1, arrivals out of order). Same as
    ``load_trace(source, "csv")`` (:mod:`aphrodite_sla.sim.traces`, which reads public trace
    formats too)."""
    from aphrodite_sla.sim.traces import load_trace

    return load_trace(source, "csv", loop=loop, max_bad_rows=max_bad_rows)


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
    out)`` appends ``(arrival_s, prompt_tokens, output_tokens, prefix)`` for every request
    arriving in ``(last pull, until_s]`` (seconds of engine time). ``prefix`` is the number of
    shared-prefix tokens (the ``prefix_hit_fraction`` model), or, for a trace with block hashes,
    the tuple of the prompt's block hashes. ``output_tokens`` is 0 for a trace request recorded
    as failed. ``rate_mult`` multiplies the arrival rate (rate-based processes: the Poisson
    rate; traces: how fast trace time runs)."""

    def __init__(self, workload: Workload, seed: int | np.random.SeedSequence = 0) -> None:
        self.workload = workload
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        g_arr, g_len, g_pre, g_state = (np.random.default_rng(s) for s in ss.spawn(4))
        w = workload
        self._exp = _Chunked(g_arr.standard_exponential)
        pm, ps, om, osg = w.prompt.median, w.prompt.sigma, w.output.median, w.output.sigma
        self._plen = _Chunked(lambda n: pm * np.exp(ps * g_len.standard_normal(n)))
        self._olen = _Chunked(lambda n: om * np.exp(osg * g_len.standard_normal(n)))
        self._pre = _Chunked(g_pre.random)
        self._state_rng = g_state
        self._t = 0.0
        self._gap = self._exp.next()
        spec = w.arrivals
        self._spec = spec
        # trace replay: the current pass's kept requests (times scaled), the pass's offset, and
        # the warp (trace time - engine time) that traffic surges accumulate
        self._trace_i = 0
        self._trace_offset = 0.0
        self._trace_pass = 0
        self._trace_times: list[float] = []
        self._trace_idx: list[int] | None = None
        self._warp = 0.0
        self._last_rate_mult = 1.0
        if isinstance(spec, TraceArrivals):
            self._trace_scaled = np.asarray(spec.arrival_s, dtype=float) * spec.time_scale
            self._trace_period = spec.span_s * spec.time_scale
            self._load_pass()
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
            if self._trace_i < len(self._trace_times):
                nxt = self._trace_times[self._trace_i] + self._trace_offset
            elif spec.loop:
                nxt = self._trace_offset + self._trace_period + (self._trace_scaled[0] if len(self._trace_scaled) else 0.0)
            else:
                return math.inf
            return self._t + max(0.0, nxt - (self._t + self._warp)) / self._last_rate_mult
        r = self.rate_at(self._t)
        return self._t + self._gap / r if r > 0 else self._t + 1.0

    def _load_pass(self) -> None:
        """The requests of trace pass ``_trace_pass`` that ``thin`` keeps, with scaled times."""
        spec = self._spec
        assert isinstance(spec, TraceArrivals)
        times = self._trace_scaled
        if spec.thin < 1.0:
            rng = np.random.default_rng(np.random.SeedSequence([spec.thin_seed, self._trace_pass]))
            idx = np.flatnonzero(rng.random(len(times)) < spec.thin)
            self._trace_idx = idx.tolist()
            self._trace_times = times[idx].tolist()
        else:
            self._trace_idx = None
            self._trace_times = times.tolist()
        self._trace_i = 0

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
        """Emit the trace requests whose (warped) trace time has come. Trace time runs
        ``rate_mult`` times as fast as engine time (a traffic surge compresses the trace: more
        requests per engine second, each one once); at ``rate_mult == 1`` an arrival's engine
        time is its trace time minus the warp accumulated by earlier surges."""
        t0 = self._t
        warp = self._warp
        trace_prev = t0 + warp
        if rate_mult != 1.0:
            self._warp = warp + (until_s - t0) * (rate_mult - 1.0)
        trace_now = until_s + self._warp
        self._last_rate_mult = rate_mult if rate_mult > 0 else 1.0
        w = self.workload
        prompts, outputs, hashes = spec.prompt_tokens, spec.output_tokens, spec.block_hashes
        pre_frac, pre_tokens = w.prefix_hit_fraction, w.shared_prefix_tokens
        while True:
            times = self._trace_times
            i = self._trace_i
            if i >= len(times):
                if not spec.loop:
                    return
                self._trace_offset += self._trace_period
                self._trace_pass += 1
                self._load_pass()
                continue
            tt = times[i] + self._trace_offset
            if tt > trace_now:
                return
            self._trace_i = i + 1
            if rate_mult == 1.0:
                t = tt - warp
            else:
                t = t0 + (tt - trace_prev) / rate_mult
                t = t0 if t < t0 else until_s if t > until_s else t
            j = i if self._trace_idx is None else self._trace_idx[i]
            p = prompts[j]
            if prompt_mult != 1.0:
                p = int(p * prompt_mult + 0.5)
                if p < 1:
                    p = 1
            if hashes:
                prefix: int | tuple[int, ...] = hashes[j]
            else:
                prefix = pre_tokens if self._pre.next() < pre_frac else 0
            out.append((t, p, outputs[j], prefix))
            self.arrived += 1


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
