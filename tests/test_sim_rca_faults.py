"""The simulator's fault kinds for RCA act through the engine's mechanics."""
from __future__ import annotations

import numpy as np
import pytest

from aphrodite_sla.sim import EngineSimulator, Fault, FaultKind, Scenario
from aphrodite_sla.sim.incident_cases import CAUSE_FAULTS, IncidentCase, simulate_case, violated

K = FaultKind


def run(fault: Fault, duration: float = 120.0, **workload) -> tuple[EngineSimulator, list]:
    from aphrodite_sla.sim import Workload

    sim = EngineSimulator(Scenario("t", "t", duration, workload=Workload(**workload), faults=(fault,)), seed=3)
    steps: list = []
    sim.run(on_step=lambda s, it: steps.append((s, it)))
    return sim, steps


def test_output_length_shift_lengthens_outputs():
    _, steps = run(Fault(K.OUTPUT_LENGTH_SHIFT, 60.0, 60.0, 3.0))
    before = [r.num_generation_tokens for s, it in steps if it.iteration_timestamp - steps[0][1].iteration_timestamp < 50
              for r in it.finished_requests if r.finish_reason.name != "LENGTH"]
    late = [r.num_generation_tokens for s, it in steps if it.iteration_timestamp - steps[0][1].iteration_timestamp > 90
            for r in it.finished_requests if r.finish_reason.name != "LENGTH"]
    assert np.median(late) > 2.0 * np.median(before)


def test_bad_configuration_caps_the_batch_and_counts_the_change():
    sim, steps = run(Fault(K.BAD_CONFIGURATION, 60.0, 60.0, 16.0))
    t0 = steps[0][1].iteration_timestamp
    during = [s.num_running_reqs for s, it in steps if 65 < it.iteration_timestamp - t0 < 115]
    assert max(during) <= 256 // 16 and sim.config_changes == 1


def test_client_error_burst_aborts_and_engine_errors_do_not_rise():
    _, steps = run(Fault(K.CLIENT_ERROR_BURST, 30.0, 90.0, 0.3))
    reasons = [r.finish_reason.name for s, it in steps for r in it.finished_requests]
    assert reasons.count("ABORT") > 0.15 * len(reasons) and reasons.count("ERROR") < 0.02 * len(reasons)


def test_neighbours_move_what_a_sampler_would_read():
    sim, _ = run(Fault(K.CPU_NOISY_NEIGHBOUR, 10.0, 500.0, 2.0), duration=30.0)
    assert sim.host_cpu_other_percent > 50.0
    sim, _ = run(Fault(K.GPU_MEMORY_NEIGHBOUR, 10.0, 500.0, 4.0), duration=30.0)
    assert sim.gpu_memory_other_percent > 40.0 and sim.kv_budget_blocks == 8192 // 4


def test_a_ramp_reaches_its_magnitude_in_steps():
    f = Fault(K.TRAFFIC_SURGE, 100.0, 300.0, 3.0, ramp_s=50.0)
    assert f.magnitude_at(100.0) == pytest.approx(1.2)
    assert 1.0 < f.magnitude_at(125.0) < 3.0 and f.magnitude_at(150.0) == 3.0
    assert len(f.ramp_boundaries()) == 9
    with pytest.raises(ValueError):
        Fault(K.TRAFFIC_SURGE, 0.0, 10.0, 2.0, ramp_s=-1.0)


@pytest.mark.parametrize("cause", ["traffic_surge", "engine_error_burst", "memory_leak"])
def test_cases_carry_ground_truth_and_break_their_sli(cause):
    data = simulate_case(IncidentCase(cause, 2, magnitude=CAUSE_FAULTS[cause][4][-1]))
    assert data.root_node == CAUSE_FAULTS[cause][1] and data.sli in data.series
    assert violated(data)


def test_a_healthy_window_does_not_break_its_sli():
    data = simulate_case(IncidentCase("healthy", 2))
    assert not violated(data)


def test_a_case_whose_baseline_the_engine_cannot_keep_up_with_is_rerun_at_a_lower_rate():
    """Long shared-prefix prompts at a bursty 28 req/s overflow the KV cache before any fault (the
    queue grows without bound): not a baseline an RCA case can start from."""
    from aphrodite_sla.sim.incident_cases import IncidentCase, keeps_up, simulate_case, simulate_incident

    case = IncidentCase("prefix_cache_thrash", 210, magnitude=0.7, ramp_s=45.0, load="bursty", rate=28.0)
    assert not keeps_up(simulate_case(case))
    data = simulate_incident(case)
    assert data.case.rate < case.rate
    assert keeps_up(data)
