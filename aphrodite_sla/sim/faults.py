"""Injected faults: what can go wrong, when, and how badly (data only; the engine applies them).

``Fault(kind, start_s, duration_s, magnitude)``: ``start_s`` is seconds of engine time from the
simulator's start, ``duration_s`` may be ``math.inf`` (a persistent regression). ``magnitude``
means, per kind (``None`` takes the kind's default from :data:`DEFAULT_MAGNITUDE`):

==================== =============================================================== =========
kind                 effect while active                                             magnitude
==================== =============================================================== =========
latency_spike        every step takes ``magnitude`` x longer                         2.0
throughput_collapse  decode work (base + per-sequence + attention) ``magnitude`` x   3.0
                     slower, so decode tokens/s fall ~``1/magnitude``
error_burst          this fraction of requests reaching their first token fail        0.2
                     (finish ERROR after a random part of their output)
kv_exhaustion        usable KV blocks shrink to ``1/magnitude``: preemptions, queue   3.0
memory_leak          reported process memory (``sim.memory_bytes``) grows by          2.0
                     ``magnitude`` MiB per second of engine time (and stays grown)
stall                no step produces tokens: ``step()`` returns None, requests stay  (unused)
                     running, arrivals queue up; the clock still advances
gpu_throttling       step time x ``magnitude``; ``sim.gpu_clock_ratio = 1/magnitude``  1.5
traffic_surge        arrival rate x ``magnitude``; on a trace, trace time runs         2.0
                     ``magnitude`` x faster (each recorded request still arrives
                     once; the replay ends sooner)
prompt_length_shift  prompt lengths x ``magnitude`` (the lognormal median moves)      2.0
bad_deployment       step time x ``magnitude`` and ``error_fraction`` of requests     1.4
                     fail; meant to last (``duration_s=inf``): a persistent regression
==================== =============================================================== =========

Every kind applies to any workload (synthetic arrival processes and replayed traces alike): a
trace scenario is a trace plus a list of faults (:func:`aphrodite_sla.sim.scenarios.trace_scenario`).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class FaultKind(str, enum.Enum):
    LATENCY_SPIKE = "latency_spike"
    THROUGHPUT_COLLAPSE = "throughput_collapse"
    ERROR_BURST = "error_burst"
    KV_EXHAUSTION = "kv_exhaustion"
    MEMORY_LEAK = "memory_leak"
    STALL = "stall"
    GPU_THROTTLING = "gpu_throttling"
    TRAFFIC_SURGE = "traffic_surge"
    PROMPT_LENGTH_SHIFT = "prompt_length_shift"
    BAD_DEPLOYMENT = "bad_deployment"

    def __str__(self) -> str:
        return self.value


DEFAULT_MAGNITUDE: dict[FaultKind, float] = {
    FaultKind.LATENCY_SPIKE: 2.0,
    FaultKind.THROUGHPUT_COLLAPSE: 3.0,
    FaultKind.ERROR_BURST: 0.2,
    FaultKind.KV_EXHAUSTION: 3.0,
    FaultKind.MEMORY_LEAK: 2.0,
    FaultKind.STALL: 1.0,
    FaultKind.GPU_THROTTLING: 1.5,
    FaultKind.TRAFFIC_SURGE: 2.0,
    FaultKind.PROMPT_LENGTH_SHIFT: 2.0,
    FaultKind.BAD_DEPLOYMENT: 1.4,
}

_FRACTION_KINDS = frozenset({FaultKind.ERROR_BURST})
_MULTIPLIER_KINDS = frozenset({
    FaultKind.LATENCY_SPIKE, FaultKind.THROUGHPUT_COLLAPSE, FaultKind.KV_EXHAUSTION,
    FaultKind.GPU_THROTTLING, FaultKind.BAD_DEPLOYMENT,
})


@dataclass(frozen=True)
class Fault:
    """One injected fault (see the module docstring for what ``magnitude`` means per kind).

    ``error_fraction`` is used by ``bad_deployment`` only (the share of requests that fail).
    """

    kind: FaultKind
    start_s: float
    duration_s: float = 600.0
    magnitude: float | None = None
    error_fraction: float = 0.02

    def __post_init__(self) -> None:
        try:
            kind = FaultKind(self.kind)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {known}") from None
        object.__setattr__(self, "kind", kind)
        mag = DEFAULT_MAGNITUDE[kind] if self.magnitude is None else float(self.magnitude)
        object.__setattr__(self, "magnitude", mag)
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"{kind}: start_s must be finite and >= 0, got {self.start_s}")
        if not (self.duration_s > 0) or math.isnan(self.duration_s):
            raise ValueError(f"{kind}: duration_s must be > 0 (inf allowed), got {self.duration_s}")
        if not math.isfinite(mag):
            raise ValueError(f"{kind}: magnitude must be finite, got {mag}")
        if kind in _FRACTION_KINDS and not 0.0 <= mag <= 1.0:
            raise ValueError(f"{kind}: magnitude is a fraction of requests, must be in [0, 1], got {mag}")
        if kind in _MULTIPLIER_KINDS and mag < 1.0:
            raise ValueError(f"{kind}: magnitude is a slow-down factor, must be >= 1, got {mag}")
        if kind in (FaultKind.TRAFFIC_SURGE, FaultKind.PROMPT_LENGTH_SHIFT) and mag <= 0:
            raise ValueError(f"{kind}: magnitude must be > 0, got {mag}")
        if kind is FaultKind.MEMORY_LEAK and mag < 0:
            raise ValueError(f"{kind}: magnitude (MiB/s) must be >= 0, got {mag}")
        if not 0.0 <= self.error_fraction <= 1.0:
            raise ValueError(f"{kind}: error_fraction must be in [0, 1], got {self.error_fraction}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active_at(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s

    def describe(self) -> str:
        end = "persistent" if math.isinf(self.duration_s) else f"{self.end_s:.0f}s"
        return f"{self.kind.value} x{self.magnitude:g} at {self.start_s:.0f}s..{end}"


__all__ = ["DEFAULT_MAGNITUDE", "Fault", "FaultKind"]
