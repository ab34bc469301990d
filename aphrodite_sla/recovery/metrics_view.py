"""What readers see of recovery, published as one frozen view (data only).

Why published: the Prometheus collector, ``/health/production`` and ``/metrics/summary`` (the
last two answered on the engine's event loop by the middleware) must not take recovery's locks or
compute its statistics; ``RecoverySystem`` rebuilds this view off the loop — after every
evaluation and every recovery, breaker, degradation or mode event — and readers take the reference.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.recovery.approvals import ApprovalRequest
    from aphrodite_sla.recovery.model import RecoveryExecution


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
    root_cause_decisions: Mapping[tuple[str, bool], int] = field(default_factory=dict)  # (cause, acted) -> count


@dataclass(frozen=True)
class RecoveryView:
    """Everything a reader needs, from one moment: the metrics, the seed's fields of
    ``/health/production`` and ``/metrics/summary``, and what the console's incident page lists
    (actions waiting for a person; running and recent executions, copies, newest first)."""

    metrics: RecoveryMetricsView
    health: Mapping[str, Any]
    summary: Mapping[str, Any]
    pending_approvals: tuple[ApprovalRequest, ...] = ()
    executions: tuple[RecoveryExecution, ...] = ()
