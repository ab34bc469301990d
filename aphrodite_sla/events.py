"""The typed events of the monitor's one event stream (data only; ``event_stream`` delivers them).

Why typed events on one stream: everything that reacts — the seed's callbacks, the multiprocess
mirror, and later recovery, RCA, incidents and notifications — subscribes here, so nothing reacts
inside the evaluator or on the engine's event loop, and a new feature never has to be wired into
the components that detect.

Identity: ``fingerprint`` names the alert (what fired, for which SLA: the same for every episode,
like an Alertmanager fingerprint over an alert's labels); ``episode`` names one occurrence, from
raise to resolve, so every event of an episode shares it (incidents deduplicate on it).
Subscriptions match by class, so subscribing to ``ViolationRaised`` also receives ``PageRaised``
(a fast page rule fired: ``sla.pages``) and ``StallDetected`` (a stall is a page, raised by the
stall detector); subscribing to ``PageRaised`` receives every page and ticket, stalls included.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aphrodite_sla.sla.threshold import SLAStatus, SLAViolation, ViolationSeverity

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.recovery.model import RecoveryExecution
    from aphrodite_sla.sla.regression import RegressionResult
    from aphrodite_sla.snapshot import MonitorSnapshot, StallStatus


def fingerprint(alertname: str, **labels: str) -> str:
    """A stable 16-hex-digit identity of an alert: its name and labels, order-independent."""
    text = "\x1f".join([alertname, *(f"{k}={labels[k]}" for k in sorted(labels))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def episode_id(alert_fingerprint: str, started_at: float) -> str:
    """One occurrence of an alert: its fingerprint and the time it started (ms resolution)."""
    return f"{alert_fingerprint}-{int(round(started_at * 1000))}"


@dataclass(frozen=True)
class MonitorEvent:
    """What every event carries. ``occurred_at`` is on the monitor's clock (seconds)."""

    fingerprint: str
    episode: str
    occurred_at: float


# -- violations --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViolationRaised(MonitorEvent):
    """A new violation episode (the seed's violation callback fires here)."""

    violation: SLAViolation


@dataclass(frozen=True)
class ViolationEscalated(MonitorEvent):
    """The episode's severity rose past its previous peak (callbacks fire again, once per step up)."""

    violation: SLAViolation
    previous_severity: ViolationSeverity


@dataclass(frozen=True)
class ViolationResolved(MonitorEvent):
    """The episode ended: the statistic stayed recovered for the SLA's hysteresis time (or the
    stall ended). ``violation`` is its last state."""

    violation: SLAViolation
    started_at: float

    @property
    def sla(self) -> str:
        return self.violation.metric_name

    @property
    def duration_s(self) -> float:
        return self.occurred_at - self.started_at


@dataclass(frozen=True)
class PageRaised(ViolationRaised):
    """A fast page rule fired (``sla.pages``): a person is wanted now, not after the sustained
    rule's window. One per episode; ``rule`` says which (``violation.rule``). A ViolationRaised,
    so recovery, incidents and the seed's callbacks see it like any violation."""

    @property
    def rule(self) -> str:
        return self.violation.rule.value


@dataclass(frozen=True)
class PageResolved(ViolationResolved):
    """A page's episode ended (its condition stayed clear for the rule's hysteresis time)."""

    @property
    def rule(self) -> str:
        return self.violation.rule.value


@dataclass(frozen=True)
class StallDetected(PageRaised):
    """The engine made no progress for ``stall_after_s`` with requests in flight (always a page)."""

    status: StallStatus


@dataclass(frozen=True)
class StallCleared(PageResolved):
    """The engine progressed again (or went idle) after a stall."""

    status: StallStatus


# -- early warnings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnomalyDetected(MonitorEvent):
    """An SLA's anomaly score rose past the alert level (once per episode, with hysteresis)."""

    status: SLAStatus
    score: float
    kind: str  # which kind of change fired (the detector's explanation)


@dataclass(frozen=True)
class RegressionDetected(MonitorEvent):
    """An SLA's last window is significantly worse than the window before it (or a named
    baseline); raised once per regression episode."""

    sla: str
    result: RegressionResult


# -- publication -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotPublished(MonitorEvent):
    """An evaluation finished and published ``snapshot`` (for readers that push, such as the
    multiprocess mirror)."""

    snapshot: MonitorSnapshot


# -- what recovery did (published by the recovery components, for incidents and notifications) -------
@dataclass(frozen=True)
class RecoveryStarted(MonitorEvent):
    """A procedure started for a violation episode (``fingerprint``/``episode`` are the violation's).
    ``reason``: why this procedure, when not the SLA's own (a root cause chose it)."""

    execution_id: str
    procedure_id: str
    sla: str
    reason: str = ""


@dataclass(frozen=True)
class RecoveryFinished(MonitorEvent):
    """A recovery execution ended (``execution`` is a copy; its status says how)."""

    execution: RecoveryExecution


@dataclass(frozen=True)
class ApprovalRequested(MonitorEvent):
    """A risky action waits for a person: approve or deny ``request_id`` before ``expires_at``
    (denied on timeout)."""

    request_id: str
    execution_id: str
    action: str
    expires_at: float


@dataclass(frozen=True)
class ApprovalDecided(MonitorEvent):
    """An approval was granted, denied, or expired (``decided_by`` is "timeout" then)."""

    request_id: str
    action: str
    approved: bool
    decided_by: str


@dataclass(frozen=True)
class BreakerStateChanged(MonitorEvent):
    """A circuit breaker changed state (values of ``BreakerState``)."""

    service: str
    old_state: str
    new_state: str
    reason: str = ""


@dataclass(frozen=True)
class DegradationChanged(MonitorEvent):
    """The graceful-degradation level changed ("none" when reverted), by whom and why."""

    old_level: str
    new_level: str
    reason: str
    changed_by: str


@dataclass(frozen=True)
class MonitoringModeChanged(MonitorEvent):
    """The production monitor's mode changed (values of ``MonitoringMode``)."""

    old_mode: str
    new_mode: str
    reason: str


@dataclass(frozen=True)
class ResponseEscalated(MonitorEvent):
    """An automated response (a self-healing check, a recovery) kept failing past the escalation
    time: a person has to look."""

    subject: str
    failing_since: float
    detail: str


@dataclass(frozen=True)
class DeploymentEvent(MonitorEvent):
    """A deployment was tracked, regressed against the previous one's baseline, passed its
    stabilisation period, or was rolled back (``kind``)."""

    deployment_id: str
    kind: str  # tracked | regressed | stable | rolled_back | rollback_failed
    detail: str


# -- incidents (published by the incident manager; notifications, the console and metrics react) -------
INCIDENT_CHANGES = (
    "opened", "updated", "acknowledged", "assigned", "mitigating", "escalated", "reminder", "resolved",
    "closed", "reopened",
)


@dataclass(frozen=True)
class IncidentChanged(MonitorEvent):
    """An incident was opened or changed (``change``, one of :data:`INCIDENT_CHANGES`).

    ``fingerprint`` is the incident's deduplication key (the same on every replica of a fleet: a
    notification's dedup key), ``episode`` the incident id. ``receivers`` names the receivers this
    change must reach explicitly (an escalation level's set); empty means "route by severity".
    Subscribers must be idempotent per (fingerprint, change, escalation_level): the incident
    manager re-publishes the last change of every open incident at start-up, so a change committed
    just before a crash is still delivered (at-least-once, deduplicated downstream)."""

    incident_id: str
    change: str
    title: str
    severity: str  # low | medium | high | critical
    status: str
    incident_type: str
    summary: str = ""
    started_at: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    escalation_level: int = 0
    receivers: tuple[str, ...] = ()
    actor: str = "system"
    url: str = ""


# -- root cause (published by the RCA subscriber after it analysed a violation episode) ----------------
@dataclass(frozen=True)
class RootCauseFound(MonitorEvent):
    """RCA analysed a violation episode (``fingerprint``/``episode`` are the violation's).
    ``analysis`` is the ``RCAAnalysis`` (its ``to_dict()`` is the JSON report); ``cause`` is the
    primary cause's name or "insufficient_evidence"."""

    sla: str
    cause: str
    category: str
    confidence: float
    analysis: Any


VIOLATION_ALERT = "SLAViolation"
PAGE_ALERT = "SLAPage"
STALL_ALERT = "EngineStalled"
ANOMALY_ALERT = "SLAAnomaly"
REGRESSION_ALERT = "SLARegression"
RECOVERY_ALERT = "SLARecovery"
BREAKER_ALERT = "CircuitBreakerOpen"
DEGRADATION_ALERT = "GracefulDegradation"
MODE_ALERT = "MonitoringMode"
ESCALATION_ALERT = "ResponseEscalated"
DEPLOYMENT_ALERT = "DeploymentRegression"
INCIDENT_ALERT = "Incident"
