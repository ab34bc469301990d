"""The engine's causal graph, written down once from how a continuous-batching engine works.

Why written down and not learned: learning a graph from a few minutes of metrics (PC, Granger,
random walks) is slow and close to random on real data; the mechanics of an engine are known.
Read it top to bottom: each node names the series it is read from, how a bin aggregates it, which
direction is "bad", whether it is bounded (a saturation can be scored), its parents (what drives
it), and its role: ``cause`` nodes can be reported as a root cause, ``symptom`` nodes never are
(latency, throughput, goodput, queue length are consequences).

Mechanics::

  arrivals, prompt/output length mix, prefix-cache hits ──▶ waiting requests, running batch
  running batch, lengths, GPU-memory neighbour ──▶ KV-cache usage ──▶ preemptions
  GPU clocks (throttling), host CPU (neighbour), deployments, batch ──▶ step time (ITL)
  configuration changes ──▶ batch limit ──▶ waiting requests
  stall ──▶ no tokens: waiting requests, TTFT, throughput
  waiting, preemptions, step time ──▶ TTFT / queue time / e2e latency ──▶ goodput, throughput
  engine errors (finish ERROR), client errors (ABORT, 4xx), process memory: their own roots
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Agg(str, Enum):
    """How a bin of raw samples becomes one value."""

    MEAN = "mean"  # gauges, per-request values, 0/100 indicators (their mean is a rate)
    RATE = "rate"  # counts per sample: their sum per second
    EVENT = "event"  # discrete events (deployments, configuration changes): count per bin
    LAST = "last"  # slowly moving levels (process memory)


class Role(str, Enum):
    CAUSE = "cause"  # may be reported as a root cause
    SYMPTOM = "symptom"  # never reported as a cause


@dataclass(frozen=True)
class Node:
    """One metric of the graph. ``series`` are store names; two names make a ratio
    (``series[0] / series[1]`` per bin, in percent) or a difference (``diff``)."""

    name: str
    series: tuple[str, ...]
    agg: Agg
    bad: int  # +1: up is bad, -1: down is bad
    parents: tuple[str, ...] = ()
    role: Role = Role.SYMPTOM
    bound: float | None = None  # a saturating resource's limit (percent)
    combine: str = ""  # "ratio" | "diff" | "host_minus_process" (system CPU less the process's) for two-series nodes
    floor: float = 0.0  # the smallest scale a deviation is measured in (units of the metric)
    trend: bool = False  # leaks and drifts: scored by a slope test too
    # read when ``series`` is not recorded: (series, aggregation), e.g. the admitted-request rate
    # where the offered arrival rate is not measured
    fallback: tuple[tuple[tuple[str, ...], Agg], ...] = ()
    incident_quantile: float = 75.0  # the incident level; 100 for rare binary states (a stall of any length counts)


GRAPH: tuple[Node, ...] = (
    # -- exogenous: load and its mix ------------------------------------------------------------
    # offered load where the front door measures it (arrival_*), else what the engine admitted and finished
    Node("arrival_rate", ("arrival_rate_rps",), Agg.MEAN, +1, role=Role.CAUSE, floor=0.5,
         fallback=((("requests_started",), Agg.RATE),)),
    Node("prompt_tokens_per_request", ("arrival_prompt_tokens_mean",), Agg.MEAN, +1, role=Role.CAUSE, floor=16.0,
         fallback=((("request_prompt_tokens",), Agg.MEAN),)),
    Node("output_tokens_per_request", ("arrival_output_tokens_mean",), Agg.MEAN, +1, role=Role.CAUSE, floor=8.0,
         fallback=((("request_output_tokens",), Agg.MEAN),)),
    Node("prefix_cache_hit_percent", ("prefix_cache_hits", "prefix_cache_queries"), Agg.RATE, -1,
         ("prompt_tokens_per_request",), Role.CAUSE, combine="ratio", floor=2.0),
    # -- events ------------------------------------------------------------------------------------
    Node("deployments", ("deployment_events",), Agg.EVENT, +1, role=Role.CAUSE),
    Node("config_changes", ("config_change_events",), Agg.EVENT, +1, role=Role.CAUSE),
    # -- the host and the GPU ----------------------------------------------------------------------
    Node("gpu_throttled", ("gpu_throttled",), Agg.MEAN, +1, role=Role.CAUSE, floor=0.05),
    Node("host_cpu_other_percent", ("system_cpu_percent", "process_cpu_percent"), Agg.MEAN, +1, role=Role.CAUSE,
         combine="host_minus_process", bound=100.0, floor=3.0),
    Node("gpu_memory_other_percent", ("gpu_memory_other_percent",), Agg.MEAN, +1, role=Role.CAUSE, bound=100.0, floor=2.0),
    Node("process_memory_bytes", ("process_rss_bytes",), Agg.LAST, +1, role=Role.CAUSE, floor=64.0 * 2**20, trend=True),
    # -- errors by who caused them -------------------------------------------------------------------
    Node("engine_error_percent", ("request_error_percent",), Agg.MEAN, +1, ("deployments",), Role.CAUSE, floor=1.0),
    Node("client_error_percent", ("request_abort_percent",), Agg.MEAN, +1, role=Role.CAUSE, floor=1.0),
    # -- the engine's state ----------------------------------------------------------------------------
    Node("engine_stalled", ("engine_stalled",), Agg.MEAN, +1, role=Role.CAUSE, floor=0.05, incident_quantile=100.0),
    Node("running_requests", ("num_running_reqs",), Agg.MEAN, +1,
         ("arrival_rate", "output_tokens_per_request", "config_changes", "engine_stalled"), floor=2.0),
    Node("kv_cache_usage_percent", ("kv_cache_usage_percent",), Agg.MEAN, +1,
         ("running_requests", "prompt_tokens_per_request", "output_tokens_per_request", "gpu_memory_other_percent",
          "arrival_rate"), Role.CAUSE, bound=100.0, floor=3.0),
    # floor: a storm is at least one preemption every two seconds (a few in a busy minute are normal)
    Node("preemptions_per_s", ("preemptions",), Agg.RATE, +1, ("kv_cache_usage_percent",), Role.CAUSE, floor=0.5),
    Node("step_time_ms", ("itl_ms",), Agg.MEAN, +1,
         ("gpu_throttled", "host_cpu_other_percent", "deployments", "running_requests", "prompt_tokens_per_request",
          "prefix_cache_hit_percent", "arrival_rate", "engine_stalled", "preemptions_per_s"), Role.CAUSE, floor=0.5),
    Node("waiting_requests", ("num_waiting_reqs",), Agg.MEAN, +1,
         ("arrival_rate", "running_requests", "kv_cache_usage_percent", "preemptions_per_s", "step_time_ms",
          "config_changes", "engine_stalled", "prompt_tokens_per_request", "output_tokens_per_request"), floor=1.0),
    # -- what the SLOs read (symptoms) -----------------------------------------------------------------
    Node("queue_time_ms", ("queue_time_ms",), Agg.MEAN, +1, ("waiting_requests", "preemptions_per_s"), floor=5.0),
    Node("ttft_ms", ("ttft_ms",), Agg.MEAN, +1,
         ("queue_time_ms", "waiting_requests", "step_time_ms", "prompt_tokens_per_request", "prefix_cache_hit_percent",
          "engine_stalled"), floor=5.0),
    Node("itl_ms", ("itl_ms",), Agg.MEAN, +1, ("step_time_ms",), floor=0.5),
    Node("tpot_ms", ("tpot_ms",), Agg.MEAN, +1, ("step_time_ms", "preemptions_per_s"), floor=0.5),
    Node("request_latency_ms", ("request_latency_ms",), Agg.MEAN, +1,
         ("ttft_ms", "tpot_ms", "output_tokens_per_request", "preemptions_per_s"), floor=20.0),
    Node("tokens_per_second", ("tokens_per_second",), Agg.MEAN, -1,
         ("arrival_rate", "output_tokens_per_request", "step_time_ms", "engine_stalled", "config_changes"), floor=20.0),
    Node("goodput_percent", ("goodput_percent",), Agg.MEAN, -1,
         ("ttft_ms", "tpot_ms", "engine_error_percent"), floor=2.0),
)

NODES: dict[str, Node] = {n.name: n for n in GRAPH}

# An SLA (or any recorded series) is attached to the node that reads the same series.
SERIES_TO_NODE: dict[str, str] = {}
for _n in GRAPH:
    for _s in (*_n.series, *(x for alt, _ in _n.fallback for x in alt)):
        SERIES_TO_NODE.setdefault(_s, _n.name)
SERIES_TO_NODE.update({"itl_ms": "itl_ms", "request_error_percent": "engine_error_percent",
                       "http_error_percent": "engine_error_percent", "http_request_latency_ms": "request_latency_ms",
                       "http_time_to_first_byte_ms": "ttft_ms", "goodput_requests": "goodput_percent",
                       "engine_seconds_without_progress": "engine_stalled", "process_memory_mb": "process_memory_bytes"})


def children_of(name: str) -> tuple[str, ...]:
    return tuple(n.name for n in GRAPH if name in n.parents)


def ancestors(name: str) -> set[str]:
    """Every node with a directed path to ``name`` (``name`` excluded)."""
    seen: set[str] = set()
    stack = list(NODES[name].parents) if name in NODES else []
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(NODES[p].parents)
    return seen


def validate(nodes: Iterable[Node] = GRAPH) -> None:
    """Parents must exist and the graph must be acyclic (checked by the tests)."""
    table = {n.name: n for n in nodes}
    for n in table.values():
        for p in n.parents:
            if p not in table:
                raise ValueError(f"{n.name}: unknown parent {p}")
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 1:
            raise ValueError(f"cycle through {name}")
        if state.get(name) == 2:
            return
        state[name] = 1
        for p in table[name].parents:
            visit(p)
        state[name] = 2

    for name in table:
        visit(name)


def store_series() -> set[str]:
    """Every store series the graph reads."""
    return {s for n in GRAPH for s in n.series} | {s for n in GRAPH for alt, _ in n.fallback for s in alt}
