"""aphrodite-sla: exact SLA monitoring, anomaly and regression detection inside an LLM inference
server (Aphrodite Engine, vLLM).

Importing this package loads numpy only: numba is loaded by the evaluator (off the caller's
thread) and scipy when a regression test runs, so an engine's start-up does not pay for them.
"""
from aphrodite_sla.clock import ManualClock, system_clock
from aphrodite_sla.sla.anomaly import AnomalyDetector
from aphrodite_sla.sla.defaults import default_thresholds
from aphrodite_sla.sla.manager import SLAManager, create_production_sla_manager
from aphrodite_sla.sla.regression import RegressionResult, detect_regression
from aphrodite_sla.sla.threshold import (
    Direction,
    SLAStatus,
    SLAThreshold,
    SLAViolation,
    Statistic,
    ViolationSeverity,
)
from aphrodite_sla.store.metric_store import MetricStore
from aphrodite_sla.store.spec import DropReason, MetricSpec

__all__ = [
    "AnomalyDetector",
    "Direction",
    "DropReason",
    "ManualClock",
    "MetricSpec",
    "MetricStore",
    "RegressionResult",
    "SLAManager",
    "SLAStatus",
    "SLAThreshold",
    "SLAViolation",
    "Statistic",
    "ViolationSeverity",
    "create_production_sla_manager",
    "default_thresholds",
    "detect_regression",
    "system_clock",
]
__version__ = "0.1.0"
