"""The causes RCA can name: for each, its category (the seed's five), the graph node that is its
root metric, and the evidence and recommendation text (templates filled from the scores).

Why a table: the cause a root node stands for, the words an operator reads and the recovery
action that fits are one decision per cause; keeping them together makes them checkable.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from aphrodite_sla.recovery.model import RecoveryAction


class Category(str, Enum):
    INFRASTRUCTURE = "infrastructure"
    APPLICATION = "application"
    NETWORK = "network"
    CONFIGURATION = "configuration"
    RESOURCE_CONTENTION = "resource_contention"


@dataclass(frozen=True)
class Cause:
    name: str
    category: Category
    root_node: str
    description: str  # what happened, "{baseline}" -> "{incident}" filled in
    recommendation: str
    actions: tuple[RecoveryAction, ...]


INSUFFICIENT_EVIDENCE = "insufficient_evidence"

A, C = RecoveryAction, Category
CAUSES: tuple[Cause, ...] = (
    Cause("traffic_surge", C.APPLICATION, "arrival_rate",
          "Request arrivals rose from {baseline} to {incident} req/s: demand beyond the engine's capacity",
          "Shed or redirect load and add capacity; the engine itself is healthy", (A.LOAD_BALANCER_ADJUST, A.RESOURCE_SCALING)),
    Cause("long_prompt_flood", C.APPLICATION, "prompt_tokens_per_request",
          "Prompt length per request rose from {baseline} to {incident} tokens: more prefill work and KV per request",
          "Limit prompt length or route long prompts to a prefill-heavy pool", (A.LOAD_BALANCER_ADJUST, A.RESOURCE_SCALING)),
    Cause("long_output_flood", C.APPLICATION, "output_tokens_per_request",
          "Output length per request rose from {baseline} to {incident} tokens: longer decodes, a bigger batch",
          "Cap max_tokens for the offending clients; shed load while it lasts", (A.LOAD_BALANCER_ADJUST,)),
    Cause("kv_cache_exhaustion", C.INFRASTRUCTURE, "kv_cache_usage_percent",
          "KV-cache usage rose from {baseline}% to {incident}% with no rise in load to explain it",
          "Free KV blocks (reset the prefix cache) and reduce concurrency", (A.CACHE_INVALIDATION, A.LOAD_BALANCER_ADJUST)),
    Cause("preemption_storm", C.RESOURCE_CONTENTION, "preemptions_per_s",
          "Preemptions rose from {baseline} to {incident} per second: requests evict each other's KV blocks",
          "Lower max_num_seqs or shed load so running requests fit in the KV cache", (A.LOAD_BALANCER_ADJUST, A.CACHE_INVALIDATION)),
    Cause("slow_decode_after_deployment", C.APPLICATION, "deployments",
          "A deployment preceded the incident and step time rose from {baseline} to {incident} ms with nothing else to explain it",
          "Roll the deployment back", (A.DEPLOYMENT_ROLLBACK,)),
    Cause("engine_slowdown", C.APPLICATION, "step_time_ms",
          "Engine step time rose from {baseline} to {incident} ms with no load, clock, CPU or deployment change to explain it",
          "Check the GPU and the engine's logs; restart the engine if it persists", (A.HEALTH_CHECK_RESET, A.SERVICE_RESTART)),
    Cause("gpu_throttling", C.INFRASTRUCTURE, "gpu_throttled",
          "The GPU was throttled ({baseline} -> {incident} of samples): lower clocks, slower steps",
          "Check cooling and power limits; move traffic away from this GPU", (A.TRAFFIC_ROUTING, A.LOAD_BALANCER_ADJUST)),
    Cause("engine_stall", C.APPLICATION, "engine_stalled",
          "The engine stopped making progress ({baseline} -> {incident} of checks stalled) with requests in flight",
          "Restart the engine (abort the wedged batch)", (A.SERVICE_RESTART, A.HEALTH_CHECK_RESET)),
    Cause("engine_error_burst", C.APPLICATION, "engine_error_percent",
          "Requests failing in the engine rose from {baseline}% to {incident}%",
          "Restart the engine; if it follows a deployment, roll it back", (A.SERVICE_RESTART, A.DEPLOYMENT_ROLLBACK)),
    Cause("client_error_burst", C.NETWORK, "client_error_percent",
          "Requests abandoned or rejected on the client side rose from {baseline}% to {incident}%: the engine is not at fault",
          "Check the clients, the network path and the load balancer; no engine action helps", ()),
    Cause("memory_leak", C.INFRASTRUCTURE, "process_memory_bytes",
          "Process memory grew steadily from {baseline} to {incident} bytes",
          "Release memory (sleep/wake or restart) before it runs out; find the leak", (A.MEMORY_CLEANUP, A.SERVICE_RESTART)),
    Cause("prefix_cache_thrash", C.RESOURCE_CONTENTION, "prefix_cache_hit_percent",
          "Prefix-cache hit rate fell from {baseline}% to {incident}%: more prefill work per request",
          "Reduce the number of distinct prefixes per replica (affinity routing) or add KV capacity", (A.LOAD_BALANCER_ADJUST,)),
    Cause("cpu_noisy_neighbour", C.RESOURCE_CONTENTION, "host_cpu_other_percent",
          "Other processes' host CPU use rose from {baseline}% to {incident}%: the engine's scheduling slowed",
          "Move or limit the competing process (see the diagnostics' top processes)", (A.TRAFFIC_ROUTING,)),
    Cause("gpu_memory_neighbour", C.RESOURCE_CONTENTION, "gpu_memory_other_percent",
          "GPU memory held by other processes rose from {baseline}% to {incident}%: less KV cache for the engine",
          "Stop the process holding GPU memory; release and re-allocate the KV cache", (A.MEMORY_CLEANUP, A.TRAFFIC_ROUTING)),
    Cause("bad_configuration", C.CONFIGURATION, "config_changes",
          "A configuration change preceded the incident; the batch and queue changed with no load change to explain it",
          "Revert the configuration change", (A.DEPLOYMENT_ROLLBACK,)),
)

BY_NAME: dict[str, Cause] = {c.name: c for c in CAUSES}
BY_ROOT_NODE: dict[str, Cause] = {c.root_node: c for c in CAUSES}
