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
output_length_shift  output lengths (the requests' targets) x ``magnitude``           2.0
client_error_burst   this fraction of requests is abandoned by its client (finish     0.2
                     ABORT after part of its output): the clients' doing, not the
                     engine's
prefix_cache_thrash  this fraction of requests loses its shared-prefix cache hit     0.9
                     (evicted by competing prefixes): more prefill work per request
cpu_noisy_neighbour  another process takes host CPU: ``sim.host_cpu_other_percent``   1.5
                     rises and every step (scheduling, detokenising) x ``magnitude``
gpu_memory_neighbour another process holds GPU memory: usable KV blocks shrink to     1.5
                     ``1/magnitude``, ``sim.gpu_memory_used_percent`` rises
bad_configuration    a configuration change lowers ``max_num_seqs`` to               4.0
                     ``1/magnitude`` (``sim.config_changes`` counts the change)
==================== =============================================================== =========

``ramp_s``: the fault reaches its magnitude linearly over ``ramp_s`` seconds from its start (from
the kind's neutral value: 1 for factors, 0 for fractions); 0 is a step change. ``deploys`` marks
a fault that arrives with a deployment (``sim.deployments`` counts it), so ``bad_deployment``
always does and a harmless deployment is ``Fault(..., magnitude=1.0)`` of that kind.

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
bad_configuration    rollback                the configuration change is reverted with the
                                             deployment-rollback hook
output_length_shift, (none)                  the clients' traffic and other processes on the
client_error_burst,                          host or GPU: no engine action clears them
prefix_cache_thrash,
cpu_noisy_neighbour,
gpu_memory_neighbour
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
    OUTPUT_LENGTH_SHIFT = "output_length_shift"
    CLIENT_ERROR_BURST = "client_error_burst"
    PREFIX_CACHE_THRASH = "prefix_cache_thrash"
    CPU_NOISY_NEIGHBOUR = "cpu_noisy_neighbour"
    GPU_MEMORY_NEIGHBOUR = "gpu_memory_neighbour"
    BAD_CONFIGURATION = "bad_configuration"

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
    FaultKind.OUTPUT_LENGTH_SHIFT: 2.0,
    FaultKind.CLIENT_ERROR_BURST: 0.2,
    FaultKind.PREFIX_CACHE_THRASH: 0.9,
    FaultKind.CPU_NOISY_NEIGHBOUR: 1.5,
    FaultKind.GPU_MEMORY_NEIGHBOUR: 1.5,
    FaultKind.BAD_CONFIGURATION: 4.0,
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
    FaultKind.OUTPUT_LENGTH_SHIFT: (),
    FaultKind.CLIENT_ERROR_BURST: (),
    FaultKind.PREFIX_CACHE_THRASH: (),
    FaultKind.CPU_NOISY_NEIGHBOUR: (),
    FaultKind.GPU_MEMORY_NEIGHBOUR: (),
    FaultKind.BAD_CONFIGURATION: (Remedy.ROLLBACK,),
}

_FRACTION_KINDS = frozenset({FaultKind.ERROR_BURST, FaultKind.CLIENT_ERROR_BURST, FaultKind.PREFIX_CACHE_THRASH})
_MULTIPLIER_KINDS = frozenset({
    FaultKind.LATENCY_SPIKE, FaultKind.THROUGHPUT_COLLAPSE, FaultKind.KV_EXHAUSTION,
    FaultKind.GPU_THROTTLING, FaultKind.BAD_DEPLOYMENT, FaultKind.CPU_NOISY_NEIGHBOUR,
    FaultKind.GPU_MEMORY_NEIGHBOUR, FaultKind.BAD_CONFIGURATION,
})
# kinds that arrive with a deployment or a configuration change (an event the monitor can see)
DEPLOYMENT_KINDS = frozenset({FaultKind.BAD_DEPLOYMENT})
CONFIG_CHANGE_KINDS = frozenset({FaultKind.BAD_CONFIGURATION})
RAMP_STEPS = 10  # a ramp is applied in this many equal steps


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
    ramp_s: float = 0.0

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
        if not (math.isfinite(self.ramp_s) and self.ramp_s >= 0):
            raise ValueError(f"{kind}: ramp_s must be finite and >= 0, got {self.ramp_s}")
        if kind in (FaultKind.TRAFFIC_SURGE, FaultKind.PROMPT_LENGTH_SHIFT, FaultKind.OUTPUT_LENGTH_SHIFT) and mag <= 0:
            raise ValueError(f"{kind}: magnitude must be > 0, got {mag}")
        object.__setattr__(self, "remedy", _remedies(kind, self.remedy))

    @property
    def neutral(self) -> float:
        """The magnitude that changes nothing (where a ramp starts)."""
        return 0.0 if self.kind in _FRACTION_KINDS or self.kind is FaultKind.MEMORY_LEAK else 1.0

    def magnitude_at(self, elapsed_s: float) -> float:
        """The magnitude in force ``elapsed_s`` engine seconds from the simulator's start: along a
        ramp, in :data:`RAMP_STEPS` equal steps; the full magnitude after it."""
        mag = float(self.magnitude or 0.0)
        if self.ramp_s <= 0 or elapsed_s >= self.start_s + self.ramp_s:
            return mag
        done = math.floor(max(0.0, elapsed_s - self.start_s) / self.ramp_s * RAMP_STEPS + 1e-9) + 1
        return self.neutral + (mag - self.neutral) * min(1.0, done / RAMP_STEPS)

    def ramp_boundaries(self) -> list[float]:
        """Engine seconds at which a ramping fault's magnitude steps up."""
        if self.ramp_s <= 0:
            return []
        return [self.start_s + self.ramp_s * k / RAMP_STEPS for k in range(1, RAMP_STEPS)]

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


__all__ = ["CONFIG_CHANGE_KINDS", "DEFAULT_MAGNITUDE", "DEFAULT_REMEDY", "DEPLOYMENT_KINDS", "Fault", "FaultKind", "Remedy"]
