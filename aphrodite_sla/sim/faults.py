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

Remedies: which engine actions end a fault
------------------------------------------

``Fault.remedy`` names the :class:`Remedy` effects that clear the fault (``None`` takes the kind's
default from :data:`DEFAULT_REMEDY`; ``()`` makes it irremediable). A remedied fault ends at the
step boundary where the action took effect (``fault_log`` records the end time and the remedy) and
is not applied again; recovery that does the wrong thing leaves it running. The remedies are the
effects of the simulator's actions (``EngineSimulator`` / ``SimulatedEngineClient``, the same
names as vLLM's ``AsyncLLM``):

- ``restart``: every in-flight request dropped at once: ``pause_generation(mode="abort")``,
  ``sleep(mode="abort")``, ``abort_all()``, or an ``abort(ids)`` covering every running request.
- ``reset_prefix_cache``: a prefix-cache reset that succeeded: ``reset_prefix_cache()`` (refused
  while requests run unless ``reset_running_requests=True``), and the one a completed
  ``pause_generation(clear_cache=True)`` or ``sleep(level >= 1)`` does.
- ``sleep``: GPU memory given back and re-allocated: ``sleep(level >= 1)`` (then ``wake_up()``).
- ``rollback``: ``rollback()``, the simulator's stand-in for the deployment-rollback hook.

==================== ======================= ================================================
kind                 default remedy          the model (a modelling choice, stated)
==================== ======================= ================================================
stall                restart                 a wedged batch: dropping the in-flight batch frees
                                             the engine
error_burst          restart                 a poisoned worker state, rebuilt by a restart
memory_leak          restart, sleep          leaked memory is released (``memory_bytes`` drops
                                             back to the base) by a restart or by sleep/wake
kv_exhaustion        reset_prefix_cache      the missing KV blocks are pinned by stale prefix
                                             cache entries / fragmentation that a reset frees
bad_deployment       rollback                only rolling the deployment back removes it
latency_spike,       (none)                  external causes (the GPU, the host, the clients):
gpu_throttling,                              no engine action clears them; load reduction
throughput_collapse,                         (admission shedding) only mitigates their impact
traffic_surge,
prompt_length_shift
==================== ======================= ================================================
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any


class Remedy(str, enum.Enum):
    """An engine action's effect that can end a fault (see the module docstring's table)."""

    RESTART = "restart"
    RESET_PREFIX_CACHE = "reset_prefix_cache"
    SLEEP = "sleep"
    ROLLBACK = "rollback"

    def __str__(self) -> str:
        return self.value


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

DEFAULT_REMEDY: dict[FaultKind, tuple[Remedy, ...]] = {
    FaultKind.LATENCY_SPIKE: (),
    FaultKind.THROUGHPUT_COLLAPSE: (),
    FaultKind.ERROR_BURST: (Remedy.RESTART,),
    FaultKind.KV_EXHAUSTION: (Remedy.RESET_PREFIX_CACHE,),
    FaultKind.MEMORY_LEAK: (Remedy.RESTART, Remedy.SLEEP),
    FaultKind.STALL: (Remedy.RESTART,),
    FaultKind.GPU_THROTTLING: (),
    FaultKind.TRAFFIC_SURGE: (),
    FaultKind.PROMPT_LENGTH_SHIFT: (),
    FaultKind.BAD_DEPLOYMENT: (Remedy.ROLLBACK,),
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
    ``remedy``: the remedies (names or :class:`Remedy`) that end this fault; None takes the kind's
    default (:data:`DEFAULT_REMEDY`), ``()`` makes it irremediable.
    """

    kind: FaultKind
    start_s: float
    duration_s: float = 600.0
    magnitude: float | None = None
    error_fraction: float = 0.02
    remedy: tuple[Remedy, ...] | None = None

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
        object.__setattr__(self, "remedy", _remedies(kind, self.remedy))

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active_at(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s

    def describe(self) -> str:
        end = "persistent" if math.isinf(self.duration_s) else f"{self.end_s:.0f}s"
        return f"{self.kind.value} x{self.magnitude:g} at {self.start_s:.0f}s..{end}"


def _remedies(kind: FaultKind, remedy: object) -> tuple[Remedy, ...]:
    """The kind's default for None; otherwise the named remedies, validated, in declaration order."""
    if remedy is None:
        return DEFAULT_REMEDY[kind]
    names: Any = (remedy,) if isinstance(remedy, str) else remedy
    try:
        chosen = {Remedy(name) for name in names}
    except (TypeError, ValueError):
        known = ", ".join(r.value for r in Remedy)
        raise ValueError(f"{kind}: remedy must be None or names among {known}; got {remedy!r}") from None
    return tuple(r for r in Remedy if r in chosen)


__all__ = ["DEFAULT_MAGNITUDE", "DEFAULT_REMEDY", "Fault", "FaultKind", "Remedy"]
