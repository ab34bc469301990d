"""How many requests per second the simulated engine sustains for a trace's own request mix, and
the ``time_scale`` that replays the trace at a target fraction of that (its *load*).

    cap = measure_capacity(trace, EngineConfig())         # Capacity(requests_per_s=..., ...)
    x = time_scale_for_load(trace, 0.6, capacity=cap)     # arrival rate = 60% of capacity
    replay = trace.with_(time_scale=x)                    # or scale_to_load(trace, 0.6)

The measurement is a short saturated run: ``n_requests`` requests drawn from the trace (eight
contiguous stretches at evenly spaced positions, so the prefix reuse of neighbouring requests
is kept; the trace repeated when it is shorter) all arrive at once, with the workload's fates
(aborts, errors, ``max_tokens``) and the trace's block hashes. The engine then runs with a full
queue: its completion rate between the 20th and the 80th percentile of completions (the first
wave's warm-up and the final drain left out) is what it sustains. Requests whose prompt does not
fit the context are rejected at no cost, so the capacity counted in *arriving* requests is the
completion rate divided by the share that fits. A few thousand requests take well under a
second of wall time.

A trace's arrival rate (``TraceArrivals.mean_rate``) divided by this capacity is its load: below
1 the engine keeps up (queues stay short at 0.6), above 1 the waiting queue grows without bound.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from aphrodite_sla.sim.config import EngineConfig, Scenario
from aphrodite_sla.sim.engine import EngineSimulator
from aphrodite_sla.sim.workload import TraceArrivals, Workload

DEFAULT_REQUESTS = 3000
_STRETCHES = 8
_MAX_STEPS = 5_000_000


@dataclass(frozen=True)
class Capacity:
    """What the engine sustains for one request mix (a saturated run)."""

    requests_per_s: float  # arriving requests per second, rejected (too long) ones included
    accepted_per_s: float  # completions per second of the requests that fit the context
    rejected_fraction: float  # share of the mix rejected for a prompt longer than the context
    output_tokens_per_s: float
    mean_running: float  # requests in the batch, on average, while saturated
    requests: int  # requests in the saturated run
    engine_s: float
    wall_s: float


def _sample(n_trace: int, n: int) -> np.ndarray:
    """Indices of ``n`` trace requests: the whole trace repeated when it is not longer than
    ``n``, else ``_STRETCHES`` contiguous stretches at evenly spaced positions."""
    if n_trace <= n:
        return np.resize(np.arange(n_trace), n)
    per = -(-n // _STRETCHES)
    starts = np.linspace(0, n_trace - per, _STRETCHES).astype(int)
    return np.concatenate([np.arange(s, s + per) for s in starts])[:n]


def measure_capacity(
    trace: TraceArrivals,
    engine: EngineConfig | None = None,
    *,
    workload: Workload | None = None,
    n_requests: int = DEFAULT_REQUESTS,
    seed: int = 0,
) -> Capacity:
    """Requests per second the simulated ``engine`` (default :class:`EngineConfig`) sustains for
    ``trace``'s request mix (see the module docstring). ``workload`` supplies everything but the
    arrivals (``max_tokens``, abort/error fractions, the prefix model of traces without hashes;
    default :class:`Workload`). Raises ``ValueError`` if no request of the trace fits the context."""
    if len(trace) == 0:
        raise ValueError("measure_capacity: the trace has no requests")
    if n_requests < 100:
        raise ValueError(f"measure_capacity: n_requests must be >= 100, got {n_requests}")
    cfg = EngineConfig() if engine is None else engine
    base = Workload() if workload is None else workload
    idx = _sample(len(trace), n_requests).tolist()
    prompts = tuple(trace.prompt_tokens[i] for i in idx)
    outputs = tuple(trace.output_tokens[i] for i in idx)
    hashes = tuple(trace.block_hashes[i] for i in idx) if trace.block_hashes else ()
    n = len(idx)
    accepted = sum(1 for p in prompts if p < cfg.max_model_len)
    if accepted == 0:
        raise ValueError(
            f"measure_capacity: no request of {trace.source} fits the context (max_model_len={cfg.max_model_len}); "
            "every one would be rejected"
        )
    saturated = TraceArrivals(
        (0.0,) * n, prompts, outputs, source=f"{trace.source} (saturated)", block_hashes=hashes,
        hash_block_size=trace.hash_block_size,
    )
    scenario = Scenario("capacity", "saturated run", 1e9, workload=dataclasses.replace(base, arrivals=saturated), engine=cfg)
    sim = EngineSimulator(scenario, seed=seed)
    lo = max(1, int(0.2 * accepted))
    hi = max(lo + 1, int(0.8 * accepted))
    done = 0
    t_lo = gen_lo = 0.0
    t_hi = gen_hi = 0.0
    running_area = 0.0
    wall0 = time.perf_counter()
    step = sim.step
    for _ in range(_MAX_STEPS):
        out = step()
        if out is None:
            continue
        sched, it = out
        if done >= lo:
            running_area += sched.num_running_reqs * sim.last_step_s
        fins = len(it.finished_requests)
        if not fins:
            continue
        before = done
        done += fins
        if before < lo <= done:
            t_lo, gen_lo = it.iteration_timestamp, sim.generation_tokens
        if done >= hi:
            t_hi, gen_hi = it.iteration_timestamp, sim.generation_tokens
            break
    else:
        raise RuntimeError(f"measure_capacity: no steady state after {_MAX_STEPS:,} steps ({done} of {accepted} requests done)")
    span = t_hi - t_lo
    if not span > 0:
        raise RuntimeError("measure_capacity: the saturated run finished its requests in no time; raise n_requests")
    accepted_rate = (done - lo) / span
    fit = accepted / n
    return Capacity(
        requests_per_s=accepted_rate / fit,
        accepted_per_s=accepted_rate,
        rejected_fraction=1.0 - fit,
        output_tokens_per_s=(gen_hi - gen_lo) / span,
        mean_running=running_area / span,
        requests=n,
        engine_s=sim.elapsed_s,
        wall_s=time.perf_counter() - wall0,
    )


def time_scale_for_load(
    trace: TraceArrivals,
    target_load: float = 0.6,
    engine: EngineConfig | None = None,
    *,
    workload: Workload | None = None,
    capacity: Capacity | None = None,
    n_requests: int = DEFAULT_REQUESTS,
    seed: int = 0,
) -> float:
    """The ``time_scale`` to give ``trace`` (replacing its own) so that its mean arrival rate,
    after ``thin``, is ``target_load`` x the engine's capacity for its mix (measured with
    :func:`measure_capacity` unless ``capacity`` is given)."""
    if not (target_load > 0 and math.isfinite(target_load)):
        raise ValueError(f"target_load must be finite and > 0, got {target_load}")
    if trace.span_s <= 0:
        raise ValueError(f"time_scale_for_load: {trace.source} has no time span (every request arrives at once)")
    cap = capacity if capacity is not None else measure_capacity(trace, engine, workload=workload, n_requests=n_requests, seed=seed)
    rate_unscaled = len(trace) * trace.thin / trace.span_s
    return rate_unscaled / (target_load * cap.requests_per_s)


def scale_to_load(
    trace: TraceArrivals,
    target_load: float = 0.6,
    engine: EngineConfig | None = None,
    **kwargs,
) -> TraceArrivals:
    """``trace`` with the ``time_scale`` of :func:`time_scale_for_load`."""
    return trace.with_(time_scale=time_scale_for_load(trace, target_load, engine, **kwargs))


__all__ = ["Capacity", "measure_capacity", "scale_to_load", "time_scale_for_load"]
