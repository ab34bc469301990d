"""The scenario catalogue: one per fault kind plus steady, diurnal, bursty and mixed.

Every fault scenario keeps a clean baseline: its first fault starts at 600 s of engine time
(``mixed``: faults in sequence from 600 s). Default load is the default :class:`Workload`
(Poisson 40 req/s, prompt median 512, output median 128).

:func:`trace_scenario` builds a scenario from a recorded trace (a :class:`TraceArrivals` or a
trace file in any format :func:`aphrodite_sla.sim.traces.load_trace` reads) plus any faults.
"""
from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterable
from typing import Any

from aphrodite_sla.sim.config import EngineConfig, Scenario
from aphrodite_sla.sim.faults import DEFAULT_MAGNITUDE, Fault, FaultKind
from aphrodite_sla.sim.workload import BurstyArrivals, DiurnalArrivals, TraceArrivals, Workload

FIRST_FAULT_S = 600.0

K = FaultKind

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "steady",
            "Baseline: 40 req/s Poisson, prompt median 512, output median 128, no faults.",
            1800.0,
        ),
        Scenario(
            "latency_spike",
            "Every engine step takes 2x longer for 10 minutes (600-1200 s): TTFT, ITL and e2e "
            "latency rise ~2-2.5x (batches grow too), throughput holds.",
            2400.0,
            faults=(Fault(K.LATENCY_SPIKE, 600.0, 600.0, 2.0),),
        ),
        Scenario(
            "throughput_collapse",
            "Decode runs 2.5x slower for 10 minutes (600-1200 s): inter-token latency ~2.9x, "
            "per-request decode speed falls; the batch grows until the KV cache saturates, then "
            "the queue builds (e2e p95 ~3 s -> 20-40 s) and engine tokens/s drop below demand. "
            "Recovers within ~5 minutes of the end.",
            2400.0,
            faults=(Fault(K.THROUGHPUT_COLLAPSE, 600.0, 600.0, 2.5),),
        ),
        Scenario(
            "error_burst",
            "20% of requests fail (finish ERROR) for 5 minutes (600-900 s).",
            1800.0,
            faults=(Fault(K.ERROR_BURST, 600.0, 300.0, 0.2),),
        ),
        Scenario(
            "kv_exhaustion",
            "Usable KV-cache blocks drop to a third for 10 minutes (600-1200 s): preemptions, "
            "KV usage near 100%, a growing waiting queue and queueing latency.",
            2400.0,
            faults=(Fault(K.KV_EXHAUSTION, 600.0, 600.0, 3.0),),
        ),
        Scenario(
            "memory_leak",
            "Process memory grows 2 MiB/s from 600 s for 20 minutes (+2.3 GiB), then stays "
            "there; engine stats are unaffected (read sim.memory_bytes).",
            2400.0,
            faults=(Fault(K.MEMORY_LEAK, 600.0, 1200.0, 2.0),),
        ),
        Scenario(
            "stall",
            "The engine produces nothing for 60 s (600-660 s): step() returns None, requests stay "
            "running, arrivals pile up; afterwards a backlog drains with large TTFT/ITL.",
            1800.0,
            faults=(Fault(K.STALL, 600.0, 60.0),),
        ),
        Scenario(
            "gpu_throttling",
            "GPU clocks throttled to 2/3 for 10 minutes (600-1200 s): steps 1.5x longer, "
            "sim.gpu_clock_ratio = 0.67.",
            2400.0,
            faults=(Fault(K.GPU_THROTTLING, 600.0, 600.0, 1.5),),
        ),
        Scenario(
            "traffic_surge",
            "Arrival rate doubles (40 -> 80 req/s) for 10 minutes (600-1200 s).",
            2400.0,
            faults=(Fault(K.TRAFFIC_SURGE, 600.0, 600.0, 2.0),),
        ),
        Scenario(
            "prompt_length_shift",
            "Prompts become 2x longer (median 512 -> 1024) for 10 minutes (600-1200 s): more "
            "prefill work, higher TTFT and KV usage.",
            2400.0,
            faults=(Fault(K.PROMPT_LENGTH_SHIFT, 600.0, 600.0, 2.0),),
        ),
        Scenario(
            "bad_deployment",
            "A regression deployed at 900 s and never rolled back: steps 1.4x slower and 2% of "
            "requests fail from then on.",
            2700.0,
            faults=(Fault(K.BAD_DEPLOYMENT, 900.0, math.inf, 1.4, error_fraction=0.02),),
        ),
        Scenario(
            "output_length_shift",
            "Outputs become 2x longer (median 128 -> 256) for 10 minutes (600-1200 s): more decode "
            "work per request, a bigger batch, higher KV usage and e2e latency.",
            2400.0,
            faults=(Fault(K.OUTPUT_LENGTH_SHIFT, 600.0, 600.0, 2.0),),
        ),
        Scenario(
            "client_error_burst",
            "20% of requests abandoned by their clients (finish ABORT) for 5 minutes (600-900 s).",
            1800.0,
            faults=(Fault(K.CLIENT_ERROR_BURST, 600.0, 300.0, 0.2),),
        ),
        Scenario(
            "prefix_cache_thrash",
            "90% of the shared-prefix cache hits lost for 10 minutes (600-1200 s) on a workload "
            "whose prompts share a 384-token prefix: prefill work and TTFT rise.",
            2400.0,
            workload=Workload(prefix_hit_fraction=0.8, shared_prefix_tokens=384),
            faults=(Fault(K.PREFIX_CACHE_THRASH, 600.0, 600.0, 0.9),),
        ),
        Scenario(
            "cpu_noisy_neighbour",
            "Another process takes host CPU for 10 minutes (600-1200 s): steps 1.5x longer.",
            2400.0,
            faults=(Fault(K.CPU_NOISY_NEIGHBOUR, 600.0, 600.0, 1.5),),
        ),
        Scenario(
            "gpu_memory_neighbour",
            "Another process holds GPU memory for 10 minutes (600-1200 s): usable KV blocks "
            "shrink to 1/4.",
            2400.0,
            faults=(Fault(K.GPU_MEMORY_NEIGHBOUR, 600.0, 600.0, 4.0),),
        ),
        Scenario(
            "bad_configuration",
            "A configuration change at 600 s lowers max_num_seqs to 1/8 for 10 minutes: the queue "
            "and TTFT grow while the KV cache is half empty.",
            2400.0,
            faults=(Fault(K.BAD_CONFIGURATION, 600.0, 600.0, 8.0),),
        ),
        Scenario(
            "diurnal",
            "No faults; the arrival rate follows a compressed day: 30 req/s mean, +-60%, one "
            "period per hour (peak 48 req/s at 900 s, trough 12 req/s at 2700 s).",
            3600.0,
            workload=Workload(arrivals=DiurnalArrivals(mean_rate=30.0, amplitude=0.6, period_s=3600.0)),
        ),
        Scenario(
            "bursty",
            "No faults; on/off bursts: 80 req/s for ~30 s, 10 req/s for ~60 s (mean ~33 req/s).",
            1800.0,
            workload=Workload(arrivals=BurstyArrivals(rate_on=80.0, rate_off=10.0, mean_on_s=30.0, mean_off_s=60.0)),
        ),
        Scenario(
            "mixed",
            "Several faults in sequence with recovery between them: latency spike 600-900 s, "
            "error burst 1200-1500 s, KV exhaustion 1800-2100 s, traffic surge 2400-2700 s, "
            "stall 2760-2805 s, memory leak 3000-3600 s (the surge comes before the stall: a "
            "stall's backlog keeps latency up for minutes, and a surge inside it is not a "
            "story of its own).",
            3600.0,
            faults=(
                Fault(K.LATENCY_SPIKE, 600.0, 300.0, 2.0),
                Fault(K.ERROR_BURST, 1200.0, 300.0, 0.15),
                Fault(K.KV_EXHAUSTION, 1800.0, 300.0, 3.0),
                Fault(K.TRAFFIC_SURGE, 2400.0, 300.0, 1.8),
                Fault(K.STALL, 2760.0, 45.0),
                Fault(K.MEMORY_LEAK, 3000.0, 600.0, 3.0),
            ),
        ),
    )
}


def list_scenarios() -> list[str]:
    """Scenario names, in catalogue order."""
    return list(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def trace_scenario(
    trace: TraceArrivals | str | os.PathLike[str] | io.TextIOBase,
    faults: Iterable[Fault] = (),
    *,
    name: str | None = None,
    description: str | None = None,
    duration_s: float | None = None,
    engine: EngineConfig | None = None,
    format: str = "auto",  # noqa: A002 - load_trace's name for it
    **workload: Any,
) -> Scenario:
    """A scenario replaying ``trace`` (a :class:`TraceArrivals`, or a path / open file read with
    ``load_trace(trace, format)``) with ``faults`` (any kinds, start times in engine seconds).
    ``duration_s`` defaults to one pass of the trace and a second (``trace.duration_s + 1``:
    the last request arrives; requests still running at the end are not waited for);
    ``workload`` keywords set the other :class:`Workload` fields (``max_tokens``,
    ``abort_fraction``, ``prefix_hit_fraction`` for traces without block hashes, ...)."""
    if not isinstance(trace, TraceArrivals):
        from aphrodite_sla.sim.traces import load_trace

        trace = load_trace(trace, format)
    if "arrivals" in workload:
        raise TypeError("trace_scenario: the trace is the arrivals; pass the other Workload fields only")
    if duration_s is None:
        duration_s = trace.duration_s + 1.0
    label = os.path.basename(trace.source) or "trace"
    fault_list = tuple(faults)
    return Scenario(
        name or f"trace:{label}",
        description or (
            f"Replay of {trace.source} ({len(trace):,} requests over {trace.duration_s:,.0f} s"
            + (f", time x{trace.time_scale:g}" if trace.time_scale != 1.0 else "")
            + (f", {trace.thin:.0%} kept" if trace.thin < 1.0 else "")
            + ("" if not fault_list else "; faults: " + ", ".join(f.describe() for f in fault_list))
            + ")."
        ),
        float(duration_s),
        workload=Workload(arrivals=trace, **workload),
        faults=fault_list,
        engine=EngineConfig() if engine is None else engine,
    )


_FAULT_SPEC = re.compile(r"^(?P<kind>[^@]*)@(?P<start>[^+x]*)(?:\+(?P<duration>[^x]*))?(?:x(?P<magnitude>.*))?$")


def parse_fault(spec: str) -> Fault:
    """A fault from ``KIND@START[+DURATION][xMAGNITUDE]`` (seconds of engine time; DURATION may be
    ``inf``, default 600; MAGNITUDE defaults to the kind's), e.g. ``stall@600+45`` or
    ``traffic_surge@300+inf x1.5`` without the space. Strict, so that a typo on a command line is an
    error naming the part that is wrong rather than a fault that silently never fires."""
    m = _FAULT_SPEC.match(spec.strip())
    if m is None:
        raise ValueError(f"{spec!r}: expected KIND@START[+DURATION][xMAGNITUDE], e.g. stall@600+45")
    kind_text = m["kind"].strip()
    try:
        kind = FaultKind(kind_text)
    except ValueError:
        raise ValueError(f"{spec!r}: unknown fault kind {kind_text!r}; known: {', '.join(k.value for k in FaultKind)}") from None

    def number(part: str, what: str, allow_inf: bool = False) -> float:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{spec!r}: {what} must be a number of seconds, got {part!r}") from None
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise ValueError(f"{spec!r}: {what} must be finite{' (or inf)' if allow_inf else ''}, got {part!r}")
        return value

    start = number(m["start"], "START")
    if start < 0:
        raise ValueError(f"{spec!r}: START must be >= 0 seconds, got {m['start']!r}")
    duration = 600.0
    if m["duration"] is not None:
        duration = number(m["duration"], "DURATION", allow_inf=True)
        if not duration > 0:
            raise ValueError(f"{spec!r}: DURATION must be > 0 seconds (or inf), got {m['duration']!r}")
    magnitude = DEFAULT_MAGNITUDE[kind]
    if m["magnitude"] is not None:
        try:
            magnitude = float(m["magnitude"])
        except ValueError:
            raise ValueError(f"{spec!r}: MAGNITUDE must be a number, got {m['magnitude']!r}") from None
    try:
        return Fault(kind, start, duration, magnitude)
    except ValueError as err:
        raise ValueError(f"{spec!r}: {err}") from None


def scaled_trace(
    trace: TraceArrivals,
    *,
    target_load: float | None = None,
    time_scale: float | None = None,
    thin: float | None = None,
    loop: bool = False,
    engine: EngineConfig | None = None,
    workload: Workload | None = None,
) -> TraceArrivals:
    """``trace`` replayed at one of: ``target_load`` (a fraction of what the simulated ``engine``
    sustains for the trace's own request mix, measured by :func:`~aphrodite_sla.sim.capacity.measure_capacity`),
    a ``time_scale`` (arrival times multiplied), or ``thin`` (the share of requests kept). One at
    most: they all set the load, and two would fight. ``loop`` replays it back to back."""
    chosen = [name for name, v in (("target_load", target_load), ("time_scale", time_scale), ("thin", thin)) if v is not None]
    if len(chosen) > 1:
        raise ValueError(f"scaled_trace: {' and '.join(chosen)} both set the load; give one")
    changes: dict[str, Any] = {}
    if loop:
        changes["loop"] = True
    if time_scale is not None:
        changes["time_scale"] = float(time_scale)
    if thin is not None:
        changes["thin"] = float(thin)
    if target_load is not None:
        from aphrodite_sla.sim.capacity import time_scale_for_load

        changes["time_scale"] = time_scale_for_load(trace, target_load, engine, workload=workload)
    return trace.with_(**changes) if changes else trace


__all__ = ["FIRST_FAULT_S", "SCENARIOS", "get_scenario", "list_scenarios", "parse_fault", "scaled_trace", "trace_scenario"]
