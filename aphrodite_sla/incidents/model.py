"""The incident model (data only): severities, the eight statuses and their allowed transitions,
the sixteen incident types mapped onto an inference engine, timeline entries, the audit trail.

Why the transitions are a table of explicit states: every path that changes an incident (the
event-stream subscriber, the API, the CLI working on the store) goes through ``check_transition``,
so an incident cannot jump from DETECTED to CLOSED without being resolved, whoever asks.
Times are seconds on the monitor's clock (the simulator's clock in a simulation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class IncidentSeverity(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @classmethod
    def parse(cls, value: str) -> IncidentSeverity:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"unknown severity {value!r}; one of {', '.join(s.value for s in cls)}") from None


_SEVERITY_RANK = {IncidentSeverity.LOW: 0, IncidentSeverity.MEDIUM: 1, IncidentSeverity.HIGH: 2, IncidentSeverity.CRITICAL: 3}


class IncidentStatus(str, Enum):
    """The lifecycle, DETECTED first, CLOSED last (see ``TRANSITIONS``)."""

    DETECTED = "detected"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    MITIGATING = "mitigating"
    MONITORING = "monitoring"  # the fix is in; waiting for the SLAs to stay within bounds
    RESOLVED = "resolved"
    POSTMORTEM = "postmortem"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self not in (IncidentStatus.RESOLVED, IncidentStatus.POSTMORTEM, IncidentStatus.CLOSED)

    @classmethod
    def parse(cls, value: str) -> IncidentStatus:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"unknown status {value!r}; one of {', '.join(s.value for s in cls)}") from None


S = IncidentStatus
_OPEN_TARGETS = (S.ACKNOWLEDGED, S.INVESTIGATING, S.MITIGATING, S.MONITORING, S.RESOLVED)
TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    S.DETECTED: frozenset(_OPEN_TARGETS),
    S.ACKNOWLEDGED: frozenset({S.INVESTIGATING, S.MITIGATING, S.MONITORING, S.RESOLVED}),
    S.INVESTIGATING: frozenset({S.MITIGATING, S.MONITORING, S.RESOLVED}),
    S.MITIGATING: frozenset({S.INVESTIGATING, S.MONITORING, S.RESOLVED}),
    S.MONITORING: frozenset({S.MITIGATING, S.INVESTIGATING, S.RESOLVED}),
    S.RESOLVED: frozenset({S.POSTMORTEM, S.CLOSED, S.DETECTED}),  # DETECTED: reopened (it came back)
    S.POSTMORTEM: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}


class TransitionError(ValueError):
    """A status change the lifecycle does not allow (the message names both states)."""


def check_transition(current: IncidentStatus, target: IncidentStatus) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (final)"
        raise TransitionError(f"an incident cannot go from {current.value} to {target.value}; allowed: {allowed}")


class IncidentType(str, Enum):
    """The seeds' sixteen incident types, each read as what it means for an inference server."""

    ERROR_BURST = "error_burst"  # requests finishing with an error
    SERVICE_DOWN = "service_down"  # engine stalled / health checks failing / inference breaker open
    QUALITY_DROP = "quality_drop"  # corrupted outputs, failed output checks
    WORKFLOW_FAILURE = "workflow_failure"  # aborted requests (client or engine aborts)
    MEMORY_EXHAUSTION = "memory_exhaustion"  # host or GPU memory, KV cache pressure
    PERFORMANCE_DEGRADATION = "performance_degradation"  # latency SLAs, slow requests, regressions
    DISK_SPACE_LOW = "disk_space_low"  # model cache / log volume
    DATABASE_FAILURE = "database_failure"  # the incident store or another state store failing
    CACHE_FAILURE = "cache_failure"  # prefix cache hit rate collapsing
    NETWORK_PARTITION = "network_partition"  # replicas or the load balancer unreachable
    ZOMBIE_PROCESSES = "zombie_processes"  # orphaned engine workers
    RATE_LIMITING = "rate_limiting"  # requests shed by admission control
    CERTIFICATE_EXPIRY = "certificate_expiry"
    DEADLOCK = "deadlock"  # a stall with requests in flight and no progress
    SECURITY_BREACH = "security_breach"
    SLA_VIOLATION = "sla_violation"  # any other configured SLA

    @classmethod
    def parse(cls, value: str) -> IncidentType:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"unknown incident type {value!r}; one of {', '.join(t.value for t in cls)}") from None


class ResponseStage(str, Enum):
    """The seed's five response stages, recorded on the timeline as they are reached."""

    ASSESSMENT = "assessment"
    CONTAINMENT = "containment"
    INVESTIGATION = "investigation"
    REMEDIATION = "remediation"
    RECOVERY = "recovery"


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to an incident: when, what kind, what, who, in which stage."""

    at: float
    kind: str
    message: str
    actor: str = "system"
    stage: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "message": self.message, "actor": self.actor, "stage": self.stage,
                "data": dict(self.data)}


@dataclass(frozen=True)
class AuditEntry:
    """One change to an incident: who, when, what, and the detail (old -> new)."""

    at: float
    actor: str
    action: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "actor": self.actor, "action": self.action, "detail": self.detail}


def _minutes(start: float | None, end: float | None) -> float | None:
    if start is None or end is None or not (math.isfinite(start) and math.isfinite(end)):
        return None
    return max(0.0, end - start) / 60.0


@dataclass(frozen=True)
class Incident:
    """One incident. ``fingerprint`` deduplicates (one open incident per fingerprint, across the
    replicas of a fleet); ``correlation_id`` joins related events (the same SLA, the same root
    cause); ``first_bad_at`` is the first bad sample (MTTD starts there)."""

    incident_id: str
    fingerprint: str
    title: str
    severity: IncidentSeverity
    incident_type: IncidentType
    status: IncidentStatus
    detected_at: float
    first_bad_at: float
    updated_at: float
    correlation_id: str = ""
    description: str = ""
    replica: str = ""
    source: str = ""  # what opened it: sla | rule:<name> | recovery | breaker | deployment | manual
    labels: dict[str, str] = field(default_factory=dict)
    acknowledged_at: float | None = None
    acknowledged_by: str = ""
    assigned_to: str = ""
    mitigated_at: float | None = None
    recovered_at: float | None = None  # SLAs back within bounds (auto-resolve counts from here)
    resolved_at: float | None = None
    resolved_by: str = ""
    resolution_notes: str = ""
    closed_at: float | None = None
    stage: str = ResponseStage.ASSESSMENT.value
    root_cause: str = ""
    root_cause_detail: dict[str, Any] = field(default_factory=dict)
    escalation_level: int = 0
    escalated_at: float | None = None
    response_failed_at: float | None = None  # an automatic response failed (escalates after 30 min)
    reminded_at: float | None = None
    pending_approvals: tuple[str, ...] = ()  # recovery approval request ids waiting for a person
    event_count: int = 1
    last_change: str = "opened"
    timeline: tuple[TimelineEntry, ...] = ()
    audit: tuple[AuditEntry, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @property
    def mttd_minutes(self) -> float | None:
        """Mean time to detect (this incident's share): first bad sample to detection."""
        return _minutes(self.first_bad_at, self.detected_at)

    @property
    def mtta_minutes(self) -> float | None:
        return _minutes(self.detected_at, self.acknowledged_at)

    @property
    def mttr_minutes(self) -> float | None:
        """Time to resolve, from the first bad sample (what users felt)."""
        return _minutes(self.first_bad_at, self.resolved_at)

    def with_(self, **changes: Any) -> Incident:
        return replace(self, **changes)

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.incident_id, "fingerprint": self.fingerprint, "title": self.title, "severity": self.severity.value,
            "type": self.incident_type.value, "status": self.status.value, "detected_at": self.detected_at,
            "first_bad_at": self.first_bad_at, "updated_at": self.updated_at, "correlation_id": self.correlation_id,
            "description": self.description, "replica": self.replica, "source": self.source, "labels": dict(self.labels),
            "acknowledged_at": self.acknowledged_at, "acknowledged_by": self.acknowledged_by, "assigned_to": self.assigned_to,
            "mitigated_at": self.mitigated_at, "recovered_at": self.recovered_at, "resolved_at": self.resolved_at,
            "resolved_by": self.resolved_by, "resolution_notes": self.resolution_notes, "closed_at": self.closed_at,
            "stage": self.stage, "root_cause": self.root_cause, "escalation_level": self.escalation_level,
            "escalated_at": self.escalated_at, "response_failed_at": self.response_failed_at,
            "pending_approvals": list(self.pending_approvals), "event_count": self.event_count, "last_change": self.last_change,
            "mttd_minutes": self.mttd_minutes, "mtta_minutes": self.mtta_minutes, "mttr_minutes": self.mttr_minutes,
        }
        if full:
            out["root_cause_detail"] = dict(self.root_cause_detail)
            out["timeline"] = [t.to_dict() for t in self.timeline]
            out["audit"] = [a.to_dict() for a in self.audit]
        return out


def severity_of_violation(severity: str) -> IncidentSeverity:
    """An SLA violation's severity (minor / major / critical) as an incident severity."""
    return {"minor": IncidentSeverity.MEDIUM, "major": IncidentSeverity.HIGH, "critical": IncidentSeverity.CRITICAL}.get(
        str(severity).lower(), IncidentSeverity.MEDIUM)


# The SLA series each incident type reads as, for incidents opened from SLA violations.
SLA_TYPES: dict[str, IncidentType] = {
    "request_error_percent": IncidentType.ERROR_BURST,
    "error_rate": IncidentType.ERROR_BURST,
    "goodput_percent": IncidentType.PERFORMANCE_DEGRADATION,
    "ttft_ms": IncidentType.PERFORMANCE_DEGRADATION,
    "ttft_p95": IncidentType.PERFORMANCE_DEGRADATION,
    "tpot_ms": IncidentType.PERFORMANCE_DEGRADATION,
    "itl_ms": IncidentType.PERFORMANCE_DEGRADATION,
    "request_latency_ms": IncidentType.PERFORMANCE_DEGRADATION,
    "queue_time_ms": IncidentType.PERFORMANCE_DEGRADATION,
    "tokens_per_second": IncidentType.PERFORMANCE_DEGRADATION,
    "system_memory_percent": IncidentType.MEMORY_EXHAUSTION,
    "gpu_memory_used_percent": IncidentType.MEMORY_EXHAUSTION,
    "kv_cache_usage_percent": IncidentType.MEMORY_EXHAUSTION,
    "disk_usage_percent": IncidentType.DISK_SPACE_LOW,
    "prefix_cache_hit_percent": IncidentType.CACHE_FAILURE,
    "engine_stall": IncidentType.DEADLOCK,
}


def type_for_sla(sla: str) -> IncidentType:
    if sla in SLA_TYPES:
        return SLA_TYPES[sla]
    for key, kind in SLA_TYPES.items():
        if key in sla:
            return kind
    if sla.endswith("_ms") or "latency" in sla or sla.startswith("lat_"):  # any other latency SLA
        return IncidentType.PERFORMANCE_DEGRADATION
    return IncidentType.SLA_VIOLATION


__all__ = [
    "TRANSITIONS",
    "AuditEntry",
    "Incident",
    "IncidentSeverity",
    "IncidentStatus",
    "IncidentType",
    "ResponseStage",
    "TimelineEntry",
    "TransitionError",
    "check_transition",
    "severity_of_violation",
    "type_for_sla",
]
