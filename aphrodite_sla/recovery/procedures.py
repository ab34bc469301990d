"""The seed's five recovery procedures, and which one a violation selects.

Why a table of data plus one selection rule: operators add, replace or remove procedures (by id)
without touching the engine, and the REST API shows the same records the engine runs.

The defaults (ladders run in order; the first action whose effect is verified ends the run):

=========================  ====================  ==================================================================
procedure                  answers               actions
=========================  ====================  ==================================================================
``latency_spike``          latency SLAs          cache invalidation, load balancer adjustment, traffic routing
``throughput_degradation`` throughput/goodput    resource scaling, load balancer adjustment, cache invalidation
``error_rate_spike``       error SLAs            circuit breaker activation, health check reset, service restart
``resource_exhaustion``    memory/KV/GPU SLAs    resource scaling, cache invalidation, traffic routing
``critical_system``        engine stalls, and    circuit breaker activation, traffic routing, service restart,
                           error SLAs at         deployment rollback
                           CRITICAL
=========================  ====================  ==================================================================

Selection (``select_procedure``): a procedure is a candidate when it lists the violation's SLA
name or its source series in ``slas`` (an empty ``slas`` matches every SLA) and the violation's
peak severity reaches its ``severity_threshold``. A stall (``StallDetected``, or a violation
raised by the stall rule) counts as CRITICAL. Among candidates the highest ``severity_threshold``
wins (so a CRITICAL violation of the error SLA runs ``critical_system``, a MAJOR one
``error_rate_spike``), then a procedure naming the SLA over a catch-all, then the earlier one.

Why ``critical_system`` does not answer every CRITICAL violation (the seed's reading): its ladder
stops serving and restarts — right when the engine is failing (stalled, erroring), wrong when it
is only slow, full or short of demand: a CRITICAL latency violation from an overload is made worse
by aborting every in-flight request, and a tokens/s minimum breached because traffic fell (or was
shed) is not fixed by a restart; those SLAs keep their own ladders at every severity.
No candidate: no recovery (the engine records a SKIPPED execution saying so). Custom SLAs map onto
a procedure by listing their names in its ``slas`` (``RecoveryEngine.add_procedure``).
"""
from __future__ import annotations

from collections.abc import Iterable

from aphrodite_sla.recovery.model import RecoveryAction, RecoveryProcedure
from aphrodite_sla.sla.threshold import Direction, SLAViolation, ViolationRule, ViolationSeverity

A = RecoveryAction

LATENCY_SPIKE = "latency_spike"
THROUGHPUT_DEGRADATION = "throughput_degradation"
ERROR_RATE_SPIKE = "error_rate_spike"
RESOURCE_EXHAUSTION = "resource_exhaustion"
CRITICAL_SYSTEM = "critical_system"

# The built-in SLA names (``sla.defaults``, the simulator's set) and their source series.
# the share of requests meeting their TTFT/TPOT objectives: a minimum, but one less load raises
GOODPUT_RATIO_SLAS = ("goodput_percent",)
LATENCY_SLAS = (
    "request_latency_p95", "request_latency_p99", "ttft_p95", "tpot_p95", "itl_p99", *GOODPUT_RATIO_SLAS,
    "request_latency_ms", "ttft_ms", "tpot_ms", "itl_ms",
)
THROUGHPUT_SLAS = ("tokens_per_second", "goodput_requests", "goodput_requests_per_second")


def demand_bound(violation: SLAViolation) -> bool:
    """Whether the SLA is a demand-dependent minimum (tokens/s, goodput requests/s): fewer
    requests — a quiet hour, or load shed by recovery — lower it, so shedding cannot fix it."""
    names = {violation.metric_name, violation.source_metric}
    if names & set(GOODPUT_RATIO_SLAS):
        return False
    return bool(names & set(THROUGHPUT_SLAS)) or violation.direction is Direction.LOWER
ERROR_SLAS = ("error_rate_percent", "request_error_percent")
STALL_SLA = "engine_stalled"  # the stall detector's violation
RESOURCE_SLAS = (
    "kv_cache_usage_percent", "gpu_utilization_percent", "gpu_memory_used_percent", "system_memory_percent",
    "process_memory_mb", "process_rss_bytes",
)


def default_procedures() -> list[RecoveryProcedure]:
    """The seed's five procedures, composed as the seed lists them ("cache optimisation" is cache
    invalidation: the engine's prefix-cache reset)."""
    return [
        RecoveryProcedure(
            LATENCY_SPIKE, "Latency Spike", "Latency beyond its bound: free the prefix cache, shed load, then move traffic away",
            (A.CACHE_INVALIDATION, A.LOAD_BALANCER_ADJUST, A.TRAFFIC_ROUTING), slas=LATENCY_SLAS,
        ),
        RecoveryProcedure(
            THROUGHPUT_DEGRADATION, "Throughput Degradation", "Throughput below its minimum: add capacity, rebalance, then reset the cache",
            (A.RESOURCE_SCALING, A.LOAD_BALANCER_ADJUST, A.CACHE_INVALIDATION), slas=THROUGHPUT_SLAS,
        ),
        RecoveryProcedure(
            ERROR_RATE_SPIKE, "Error Rate Spike", "Errors beyond their bound: open the inference breaker, reset health, then restart",
            (A.CIRCUIT_BREAKER_ACTIVATION, A.HEALTH_CHECK_RESET, A.SERVICE_RESTART), slas=ERROR_SLAS,
        ),
        RecoveryProcedure(
            RESOURCE_EXHAUSTION, "Resource Exhaustion", "Memory, KV cache or GPU exhausted: add capacity, free the cache, then move traffic",
            (A.RESOURCE_SCALING, A.CACHE_INVALIDATION, A.TRAFFIC_ROUTING), slas=RESOURCE_SLAS,
        ),
        RecoveryProcedure(
            CRITICAL_SYSTEM, "Critical System", "An engine stall, or errors/throughput at CRITICAL: stop the damage, then restart or roll back",
            (A.CIRCUIT_BREAKER_ACTIVATION, A.TRAFFIC_ROUTING, A.SERVICE_RESTART, A.DEPLOYMENT_ROLLBACK),
            timeout_seconds=120.0, severity_threshold=ViolationSeverity.CRITICAL, cooldown_seconds=900.0,
            slas=(STALL_SLA, *ERROR_SLAS),
        ),
    ]


def effective_severity(violation: SLAViolation, stalled: bool = False) -> ViolationSeverity:
    """The severity selection reads: the episode's peak, CRITICAL for a stall."""
    if stalled or violation.rule is ViolationRule.STALL:
        return ViolationSeverity.CRITICAL
    return violation.worst_severity


def select_procedure(procedures: Iterable[RecoveryProcedure], violation: SLAViolation, stalled: bool = False) -> RecoveryProcedure | None:
    """The procedure for ``violation`` by the rule in the module docstring, or None."""
    rank = effective_severity(violation, stalled).rank
    names = {violation.metric_name, violation.source_metric}
    best: RecoveryProcedure | None = None
    best_key = (-1, -1)
    for p in procedures:
        named = bool(names.intersection(p.slas))
        if (p.slas and not named) or p.severity_threshold.rank > rank:
            continue
        key = (p.severity_threshold.rank, int(named))
        if key > best_key:
            best, best_key = p, key
    return best


__all__ = [
    "CRITICAL_SYSTEM",
    "ERROR_RATE_SPIKE",
    "ERROR_SLAS",
    "GOODPUT_RATIO_SLAS",
    "LATENCY_SLAS",
    "LATENCY_SPIKE",
    "RESOURCE_EXHAUSTION",
    "RESOURCE_SLAS",
    "STALL_SLA",
    "THROUGHPUT_DEGRADATION",
    "THROUGHPUT_SLAS",
    "default_procedures",
    "demand_bound",
    "effective_severity",
    "select_procedure",
]
