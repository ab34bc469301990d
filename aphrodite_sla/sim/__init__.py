"""Trace-driven LLM engine simulator with fault injection.

Produces the ``(scheduler_stats, iteration_stats)`` pairs vLLM v1 hands a StatLogger, from a
continuous-batching model of the engine, on a manual clock (an hour of engine time in seconds)::

    from aphrodite_sla.sim import EngineSimulator, SCENARIOS
    sim = EngineSimulator(SCENARIOS["latency_spike"], seed=1)
    sim.run(on_step=logger.record)      # logger.record(scheduler_stats, iteration_stats)
    sim.fault_log                       # [FaultEvent(fault, start_time, end_time, remedy), ...]

Recovery: the simulator answers AsyncLLM's actions (``reset_prefix_cache``, ``pause_generation`` /
``resume_generation``, ``abort``, ``sleep`` / ``wake_up``, ``check_health``) between steps, asks an
``AdmissionController`` about each arrival, and ends a fault early when an action remedies it
(``Fault.remedy``); ``SimulatedEngineClient(sim)`` is the same surface as async calls, safe from a
recovery thread.

Recorded traffic: ``load_trace(path)`` reads our CSV and the Azure, Mooncake and BurstGPT
public trace formats into a :class:`TraceArrivals` (scaled with ``time_scale``, ``thin``,
``loop``); ``time_scale_for_load`` puts it at a fraction of the engine's capacity for its mix;
``trace_scenario(trace, faults)`` replays it with any faults.

Importing this package loads numpy only (never vllm).
"""
from aphrodite_sla.sim.capacity import Capacity, measure_capacity, scale_to_load, time_scale_for_load
from aphrodite_sla.sim.config import EngineConfig, Scenario
from aphrodite_sla.sim.engine import ArrivalStats, EngineSimulator, FaultEvent, RemedyEvent, RunSummary, SimulatedEngineDeadError
from aphrodite_sla.sim.engine_client import SimulatedEngineClient
from aphrodite_sla.sim.faults import DEFAULT_MAGNITUDE, DEFAULT_REMEDY, Fault, FaultKind, Remedy
from aphrodite_sla.sim.scenarios import SCENARIOS, get_scenario, list_scenarios, trace_scenario
from aphrodite_sla.sim.stats import (
    FinishedRequestStats,
    FinishReason,
    IterationStats,
    PrefixCacheStats,
    SchedulerIterationDetails,
    SchedulerStats,
    StatsFactory,
)
from aphrodite_sla.sim.traces import FORMATS as TRACE_FORMATS
from aphrodite_sla.sim.traces import TraceFormatError, detect_format, load_trace
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
    "DEFAULT_REMEDY",
    "SCENARIOS",
    "TRACE_FORMATS",
    "ArrivalStats",
    "ArrivalStream",
    "BurstyArrivals",
    "Capacity",
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
    "Remedy",
    "RemedyEvent",
    "RunSummary",
    "Scenario",
    "SchedulerIterationDetails",
    "SchedulerStats",
    "SimulatedEngineClient",
    "SimulatedEngineDeadError",
    "StatsFactory",
    "TraceArrivals",
    "TraceFormatError",
    "Workload",
    "detect_format",
    "get_scenario",
    "list_scenarios",
    "load_trace",
    "load_trace_csv",
    "measure_capacity",
    "scale_to_load",
    "time_scale_for_load",
    "trace_scenario",
]
