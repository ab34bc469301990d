"""What the recovery metrics show, copied once per scrape (data only).

Why a view: the Prometheus collector and ``/metrics/summary`` read recovery's state from other
threads than the ones changing it; one frozen copy per read keeps a scrape consistent (the counts,
the histogram and the states come from the same moment) and keeps the collector free of locks.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BreakerView:
    state: str
    code: int  # BREAKER_STATE_CODE: closed 0, half_open 1, open 2, forced_open 3, disabled 4
    rejected: int


@dataclass(frozen=True)
class RecoveryMetricsView:
    executions: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (procedure, status) -> count
    duration_buckets: tuple[tuple[float, int], ...] = ()  # (upper bound, cumulative count), +Inf last
    duration_sum_s: float = 0.0
    active: int = 0
    success_rate_percent: float | None = None
    approvals_pending: int = 0
    escalations: int = 0
    desired_replicas: int = 0
    breakers: Mapping[str, BreakerView] = field(default_factory=dict)
    degradation_level: int = 0
    degradation_name: str = "none"
    monitoring_mode: str = "normal"
    mode: str = "advisory"  # off | advisory | act
