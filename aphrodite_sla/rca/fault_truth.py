"""Which cause RCA should name for each simulated fault kind (the ground truth of the demo and the
tests), and the demo's RCA lines: each violation's primary cause against the injected fault."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from aphrodite_sla.sim.faults import FaultKind

K = FaultKind
EXPECTED_CAUSE: dict[FaultKind, str] = {
    K.LATENCY_SPIKE: "engine_slowdown",
    K.THROUGHPUT_COLLAPSE: "engine_slowdown",
    K.ERROR_BURST: "engine_error_burst",
    K.KV_EXHAUSTION: "kv_cache_exhaustion",
    K.MEMORY_LEAK: "memory_leak",
    K.STALL: "engine_stall",
    K.GPU_THROTTLING: "gpu_throttling",
    K.TRAFFIC_SURGE: "traffic_surge",
    K.PROMPT_LENGTH_SHIFT: "long_prompt_flood",
    K.BAD_DEPLOYMENT: "slow_decode_after_deployment",
    K.OUTPUT_LENGTH_SHIFT: "long_output_flood",
    K.CLIENT_ERROR_BURST: "client_error_burst",
    K.PREFIX_CACHE_THRASH: "prefix_cache_thrash",
    K.CPU_NOISY_NEIGHBOUR: "cpu_noisy_neighbour",
    K.GPU_MEMORY_NEIGHBOUR: "gpu_memory_neighbour",
    K.BAD_CONFIGURATION: "bad_configuration",
}

# Faults whose simulated effect is confined to some SLAs (a leak grows the process's memory and
# nothing else): a latency violation detected during one belongs to the fault before it.
SLA_SCOPE: dict[FaultKind, frozenset[str]] = {
    K.MEMORY_LEAK: frozenset({"process_memory_mb"}),
}


@dataclass(frozen=True)
class RootCauseSignal:
    """One RCA result of a simulation, at ``at_s`` engine seconds since the start."""

    at_s: float
    sla: str
    cause: str
    confidence: float


def rca_lines(root_causes: Sequence[RootCauseSignal], faults: Sequence[tuple[str, float, float | None]],
              grace_s: float = 600.0) -> list[str]:
    """For each injected fault (kind, start, end): the causes RCA named for the violations detected
    while it was active (or ``grace_s`` after), the most frequent first, against the expected one.
    A violation belongs to one fault: the latest one that had started when it was detected and
    can move its SLA (``SLA_SCOPE``): a violation detected just before a traffic surge is the
    earlier stall's whenever it is analysed, and a latency violation during a memory leak is the
    fault's before it."""
    lines = []
    ordered = sorted(faults, key=lambda f: f[1])

    def owner_start(at: float, sla: str) -> float | None:
        began = [start for kind, start, _ in ordered if start <= at and sla in SLA_SCOPE.get(FaultKind(kind), (sla,))]
        return began[-1] if began else None

    for kind, start, end in faults:
        stop = (end if end is not None else float("inf")) + grace_s
        mine = [r for r in root_causes if start <= r.at_s <= stop and owner_start(r.at_s, r.sla) == start]
        expected = EXPECTED_CAUSE.get(FaultKind(kind), "?")
        if not mine:
            lines.append(f"  {kind:<20} expected {expected:<28} no RCA (no violation raised)")
            continue
        counts = Counter(r.cause for r in mine)
        top, n = counts.most_common(1)[0]
        mark = "MATCH" if top == expected else "differs"
        best = max(r.confidence for r in mine if r.cause == top)
        lines.append(f"  {kind:<20} expected {expected:<28} RCA: {top} ({n}/{len(mine)} violations, confidence up to {best:.2f}) {mark}")
    return lines
