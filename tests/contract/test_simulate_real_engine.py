"""The simulator through vLLM's real stats path: real ``SchedulerStats`` / ``IterationStats`` /
``FinishedRequestStats`` objects, handed to vLLM's real ``StatLoggerManager``, which calls our
real StatLogger class, which feeds the simulation's runtime. (In the main venv the simulator falls
back to its own same-named dataclasses; here it must not.)"""
from __future__ import annotations

from aphrodite_sla.simulate import run_simulation


def test_simulation_runs_through_the_real_stat_logger_manager(vllm_api):
    seen: dict[str, object] = {}

    def through_vllm(runtime):
        class SimulationLogger(vllm_api.Ours):  # vLLM builds loggers as factory(config, engine_index)
            def __init__(self, config, engine_index=0):
                super().__init__(config, engine_index, production_monitor=runtime)
                seen["logger"] = self

        manager = vllm_api.StatLoggerManager(
            vllm_api.config(model="simulated"), engine_idxs=[0], custom_stat_loggers=[SimulationLogger],
            enable_default_loggers=False,
        )

        def record(sched, it):
            seen.setdefault("types", (type(sched), type(it)))
            manager.record(scheduler_stats=sched, iteration_stats=it, engine_idx=0)

        return record

    result = run_simulation("latency_spike", duration_s=1300, out=lambda s: None, step_logger=through_vllm)
    assert result.real_stats, "the simulator fell back to its own stats classes"
    sched_type, iter_type = seen["types"]
    assert sched_type is vllm_api.SchedulerStats and iter_type is vllm_api.IterationStats
    logger = seen["logger"]
    assert isinstance(logger, vllm_api.StatLoggerBase) and logger.model_name == "simulated"
    assert logger.recorder.counters.steps_recorded > 10_000 and logger.recorder.counters.bad_steps == 0
    (fault,) = result.faults
    assert fault.detected and fault.first_violation is not None
    assert 600 <= fault.first_violation.at_s < 600 + 300
