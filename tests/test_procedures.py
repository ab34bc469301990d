"""The seed's five procedures and which one each built-in SLA selects."""
from __future__ import annotations

import pytest

from aphrodite_sla.integrations.stall import stall_violation
from aphrodite_sla.recovery.model import RecoveryAction, RecoveryProcedure
from aphrodite_sla.recovery.procedures import (
    CRITICAL_SYSTEM,
    ERROR_RATE_SPIKE,
    LATENCY_SPIKE,
    RESOURCE_EXHAUSTION,
    THROUGHPUT_DEGRADATION,
    default_procedures,
    select_procedure,
)
from aphrodite_sla.sla.defaults import default_thresholds, serving_thresholds
from aphrodite_sla.sla.threshold import SLAThreshold, SLAViolation, ViolationSeverity

A = RecoveryAction
MAJOR, CRITICAL, MINOR = ViolationSeverity.MAJOR, ViolationSeverity.CRITICAL, ViolationSeverity.MINOR


def violation_of(th: SLAThreshold, severity: ViolationSeverity = MAJOR, peak: ViolationSeverity | None = None) -> SLAViolation:
    return SLAViolation(th.metric_name, th.source, th.statistic, th.direction, th.bound * 2, th.bound, th.target_value, severity,
                        th.window_seconds, 0.0, 10.0, 1.0, 5, 50, peak_severity=peak)


EXPECTED = {
    "request_latency_p95": LATENCY_SPIKE, "request_latency_p99": LATENCY_SPIKE, "ttft_p95": LATENCY_SPIKE, "tpot_p95": LATENCY_SPIKE,
    "tokens_per_second": THROUGHPUT_DEGRADATION, "error_rate_percent": ERROR_RATE_SPIKE,
    "gpu_utilization_percent": RESOURCE_EXHAUSTION, "kv_cache_usage_percent": RESOURCE_EXHAUSTION,
    "echo_evolution_convergence": None,  # no procedure answers it below CRITICAL
}


def test_the_defaults_are_the_seeds_five_ladders_in_order():
    procs = {p.procedure_id: p for p in default_procedures()}
    assert procs[LATENCY_SPIKE].actions == (A.CACHE_INVALIDATION, A.LOAD_BALANCER_ADJUST, A.TRAFFIC_ROUTING)
    assert procs[THROUGHPUT_DEGRADATION].actions == (A.RESOURCE_SCALING, A.LOAD_BALANCER_ADJUST, A.CACHE_INVALIDATION)
    assert procs[ERROR_RATE_SPIKE].actions == (A.CIRCUIT_BREAKER_ACTIVATION, A.HEALTH_CHECK_RESET, A.SERVICE_RESTART)
    assert procs[RESOURCE_EXHAUSTION].actions == (A.RESOURCE_SCALING, A.CACHE_INVALIDATION, A.TRAFFIC_ROUTING)
    assert procs[CRITICAL_SYSTEM].actions == (A.CIRCUIT_BREAKER_ACTIVATION, A.TRAFFIC_ROUTING, A.SERVICE_RESTART, A.DEPLOYMENT_ROLLBACK)
    assert procs[CRITICAL_SYSTEM].severity_threshold is CRITICAL
    assert [p.name for p in default_procedures()] == [
        "Latency Spike", "Throughput Degradation", "Error Rate Spike", "Resource Exhaustion", "Critical System"]


@pytest.mark.parametrize("th", [*default_thresholds(), *serving_thresholds()], ids=lambda th: th.metric_name)
def test_each_built_in_sla_selects_its_procedure_and_critical_selects_critical_system(th):
    procs = default_procedures()
    chosen = select_procedure(procs, violation_of(th))
    assert (chosen.procedure_id if chosen else None) == EXPECTED[th.metric_name]
    assert select_procedure(procs, violation_of(th, MINOR)) == chosen  # the defaults answer every severity
    critical = select_procedure(procs, violation_of(th, CRITICAL))
    # the engine failing (errors, no throughput) stops and restarts; slow or full keeps its own ladder
    failing = EXPECTED[th.metric_name] == ERROR_RATE_SPIKE
    assert (critical.procedure_id if critical else None) == (CRITICAL_SYSTEM if failing else EXPECTED[th.metric_name])


def test_the_peak_severity_selects_and_a_stall_is_critical():
    procs = default_procedures()
    latency = default_thresholds()[0]
    errors = next(t for t in default_thresholds() if t.metric_name == "error_rate_percent")
    assert select_procedure(procs, violation_of(errors, MAJOR, peak=CRITICAL)).procedure_id == CRITICAL_SYSTEM
    assert select_procedure(procs, violation_of(errors, MAJOR)).procedure_id == ERROR_RATE_SPIKE
    assert select_procedure(procs, violation_of(latency, MAJOR, peak=CRITICAL)).procedure_id == LATENCY_SPIKE
    assert select_procedure(procs, stall_violation(100.0, 45.0, 30.0, 15)).procedure_id == CRITICAL_SYSTEM


def test_a_procedure_naming_the_sla_wins_over_a_catch_all_of_the_same_rank_and_custom_slas_map_by_name():
    latency = default_thresholds()[0]
    catch_all = RecoveryProcedure("any", "Any", "", (A.CACHE_INVALIDATION,))
    named = RecoveryProcedure("mine", "Mine", "", (A.TRAFFIC_ROUTING,), slas=("my_queue_depth",))
    custom = SLAThreshold("my_queue_depth", 10.0, 10.0)
    assert select_procedure([catch_all, *default_procedures()], violation_of(latency)).procedure_id == LATENCY_SPIKE
    assert select_procedure([catch_all, named], violation_of(custom)).procedure_id == "mine"
    above = RecoveryProcedure("major_only", "Major", "", (A.CACHE_INVALIDATION,), slas=("my_queue_depth",), severity_threshold=MAJOR)
    assert select_procedure([above], violation_of(custom, MINOR)) is None
    assert select_procedure([above], violation_of(custom, MAJOR)) is above
