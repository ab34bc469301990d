"""Trace-driven LLM engine simulator with fault injection.

Produces the ``(scheduler_stats, iteration_stats)`` pairs vLLM v1 hands a StatLogger, from a
continuous-batching model of the engine, on a manual clock (an hour of engine time in seconds)::

    from aphrodite_sla.sim import EngineSimulator, SCENARIOS
    sim = EngineSimulator(SCENARIOS["latency_spike"], seed=1)
    sim.run(on_step=logger.record)      # logger.record(scheduler_stats, iteration_stats)
    sim.fault_log                       # [(fault, applied_at, ended_at), ...]

Importing this package loads numpy only (never vllm).
"""
from aphrodite_sla.sim.config import EngineConfig, Scenario
from aphrodite_sla.sim.engine import EngineSimulator, FaultEvent, RunSummary
from aphrodite_sla.sim.faults import DEFAULT_MAGNITUDE, Fault, FaultKind
from aphrodite_sla.sim.scenarios import SCENARIOS, get_scenario, list_scenarios
from aphrodite_sla.sim.stats import (
    FinishedRequestStats,
    FinishReason,
    IterationStats,
    PrefixCacheStats,
    SchedulerIterationDetails,
    SchedulerStats,
    StatsFactory,
)
from aphrodite_sla.sim.workload import (
    ArrivalStream,
    BurstyArrivals,
    DiurnalArrivals,
    LengthDist,
    PoissonArrivals,
    TraceArrivals,
    Workload,
    load_trace_csv,
)

__all__ = [
    "DEFAULT_MAGNITUDE",
    "SCENARIOS",
    "ArrivalStream",
    "BurstyArrivals",
    "DiurnalArrivals",
    "EngineConfig",
    "EngineSimulator",
    "Fault",
    "FaultEvent",
    "FaultKind",
    "FinishReason",
    "FinishedRequestStats",
    "IterationStats",
    "LengthDist",
    "PoissonArrivals",
    "PrefixCacheStats",
    "RunSummary",
    "Scenario",
    "SchedulerIterationDetails",
    "SchedulerStats",
    "StatsFactory",
    "TraceArrivals",
    "Workload",
    "get_scenario",
    "list_scenarios",
    "load_trace_csv",
]
