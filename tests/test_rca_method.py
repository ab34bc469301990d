"""The method's general rules, each on a small synthetic frame: a metric at zero in its baseline,
a floor meant for another scale, an event that did not start the change, the most recent onset."""
from __future__ import annotations

import numpy as np

from aphrodite_sla.rca.calibration import Calibration
from aphrodite_sla.rca.engine import RCAEngine
from aphrodite_sla.rca.frame import Frame
from aphrodite_sla.rca.graph import NODES
from aphrodite_sla.rca.scoring import deviation

BIN = 5.0


def _engine() -> RCAEngine:
    return RCAEngine(with_diagnostics=False, min_confidence=0.0, calibration=Calibration())


def _frame(values: dict[str, np.ndarray]) -> Frame:
    n = len(next(iter(values.values())))
    return Frame(np.arange(1, n + 1) * BIN, BIN, values)


def test_a_queue_empty_in_every_baseline_bin_that_fills_is_a_change():
    base = np.zeros(60)
    small = np.array([0.0, 0.4, 0.1, 0.0, 2.5, 0.3, 0.1, 0.4, 0.2, 0.0, 0.6, 0.1, 0.3, 0.0, 0.2])
    assert deviation(NODES["waiting_requests"], base, small).score >= 3.0
    assert deviation(NODES["waiting_requests"], base, np.zeros(15)).score < 1.0
    # a baseline that often held a request or two: the same incident is nothing special
    busy = np.where(np.arange(60) % 2 == 0, 0.0, 0.5)
    assert deviation(NODES["waiting_requests"], busy, small).score < 3.0


def test_a_floor_meant_for_slower_engines_does_not_hide_a_40_percent_rise():
    rng = np.random.default_rng(1)
    base = rng.normal(16.0, 0.5, 60)  # a 16 ms TTFT; the node's floor is 5 ms
    assert deviation(NODES["ttft_ms"], base, rng.normal(22.0, 0.5, 12)).score >= 3.0
    assert deviation(NODES["ttft_ms"], base, rng.normal(16.0, 0.5, 12)).score < 3.0


def _error_burst_frame(deploy_bin: int) -> Frame:
    rng = np.random.default_rng(2)
    n = 80
    errors = np.abs(rng.normal(0.0, 0.2, n))
    errors[60:] += 15.0
    deployments = np.zeros(n)
    deployments[deploy_bin] = 1.0
    step = rng.normal(10.0, 0.2, n)
    return _frame({"engine_error_percent": errors, "deployments": deployments, "step_time_ms": step,
                   "goodput_percent": 100.0 - errors})


def test_a_deployment_the_errors_did_not_follow_is_not_the_cause():
    # deployed 20 bins (100 s) before the burst, errors stayed at their baseline in between
    a = _engine().analyze_frame(_error_burst_frame(40), "engine_error_percent", 78)
    assert a.primary_root_cause.cause == "engine_error_burst"


def test_a_deployment_the_errors_started_with_is_the_cause():
    a = _engine().analyze_frame(_error_burst_frame(60), "engine_error_percent", 78)
    assert a.primary_root_cause.cause == "slow_decode_after_deployment"


def test_the_onset_is_a_new_change_after_an_older_incident_recovered():
    rng = np.random.default_rng(3)
    n = 200
    ttft = rng.normal(20.0, 1.0, n)
    ttft[100:112] += 400.0  # an earlier incident (a stall) eight minutes before this one
    ttft[176:] += 30.0
    arrivals = rng.normal(40.0, 1.0, n)
    arrivals[174:] += 30.0
    a = _engine().analyze_frame(_frame({"ttft_ms": ttft, "arrival_rate": arrivals}), "ttft_ms", n - 1)
    onset_bin = a.onset_at / BIN  # bin k ends at (k + 1) * BIN; onset_at is where the onset bin starts
    assert 170 <= onset_bin <= 180
    assert a.primary_root_cause.cause == "traffic_surge"


def test_a_violation_belongs_to_the_latest_fault_started_before_its_detection():
    from aphrodite_sla.rca.fault_truth import RootCauseSignal, rca_lines

    faults = [("stall", 2400.0, 2445.0), ("traffic_surge", 2700.0, 3000.0)]
    found = [RootCauseSignal(2460.0, "ttft_ms", "engine_stall", 0.9),
             RootCauseSignal(2690.0, "request_latency_ms", "engine_stall", 0.8),  # before the surge began
             RootCauseSignal(2760.0, "ttft_ms", "traffic_surge", 0.9)]
    stall, surge = rca_lines(found, faults)
    assert "engine_stall (2/2 violations" in stall and "MATCH" in stall
    assert "traffic_surge (1/1 violations" in surge and "MATCH" in surge



def test_a_latency_violation_during_a_memory_leak_belongs_to_the_fault_before_it():
    from aphrodite_sla.rca.fault_truth import RootCauseSignal, rca_lines

    faults = [("stall", 2760.0, 2805.0), ("memory_leak", 3000.0, None)]
    found = [RootCauseSignal(2780.0, "engine_stalled", "engine_stall", 0.9),
             RootCauseSignal(3045.0, "request_latency_p95", "engine_stall", 0.9),  # the stall's backlog, after the leak began
             RootCauseSignal(3400.0, "process_memory_mb", "memory_leak", 0.9)]
    stall, leak = rca_lines(found, faults)
    assert "engine_stall (2/2 violations" in stall and "MATCH" in stall
    assert "memory_leak (1/1 violations" in leak and "MATCH" in leak

def test_an_incident_recovery_ended_is_judged_on_its_bad_bins_only():
    """KV usage at its limit for 20 s, then a prefix-cache reset freed it; the violation is analysed
    three minutes later (a sustained rule): the cause is the KV cache, not the preemptions that
    were zero before and so look extreme in any window."""
    rng = np.random.default_rng(4)
    n = 200
    kv = rng.normal(35.0, 5.0, n)
    kv[160:164] = 98.0
    preempt = np.zeros(n)
    preempt[160:165] = [9.6, 7.6, 6.0, 5.8, 12.0]
    ttft = rng.normal(17.0, 0.5, n)
    ttft[160:164] = [779.0, 1493.0, 1490.0, 1721.0]
    frame = _frame({"ttft_ms": ttft, "kv_cache_usage_percent": kv, "preemptions_per_s": preempt})
    a = _engine().analyze_frame(frame, "ttft_ms", n - 1)
    assert a.primary_root_cause.cause == "kv_cache_exhaustion"


def test_slower_steps_that_grew_the_batch_into_preemptions_are_the_cause():
    """The graph says preemptions slow steps (recomputation); here every step got slower first and
    the KV cache filled and preempted only later: the effect cannot precede its cause."""
    rng = np.random.default_rng(5)
    n = 200
    step = rng.normal(10.0, 0.2, n)
    step[170:] *= 2.0
    kv = rng.normal(35.0, 4.0, n)
    kv[176:] = np.linspace(60.0, 98.0, n - 176)
    preempt = np.zeros(n)
    preempt[180:] = 3.0
    ttft = rng.normal(20.0, 0.5, n)
    ttft[170:] += 25.0
    frame = _frame({"ttft_ms": ttft, "step_time_ms": step, "kv_cache_usage_percent": kv, "preemptions_per_s": preempt})
    a = _engine().analyze_frame(frame, "ttft_ms", n - 1)
    assert a.primary_root_cause.cause == "engine_slowdown"


def test_the_onset_scan_ignores_a_tiny_step_of_a_flat_series():
    from aphrodite_sla.rca.onset import change_point

    flat = np.full(60, 100.0)
    flat[52:] = 99.8  # goodput 0.2 points lower: in pooled standard deviations of a flat series, "huge"
    _, stat = change_point(-flat, +1)
    assert stat > 3.0
    _, stat = change_point(-flat, +1, floor=2.0)
    assert stat < 3.0
