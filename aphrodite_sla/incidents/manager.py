"""``IncidentManager``: every change to an incident — open or join, acknowledge, assign, stage,
mitigate, escalate, resolve, close, reopen — written to the store with its timeline and audit entry,
then published as ``IncidentChanged``.

Why one place: the event-stream subscriber, the API, the CLI and the escalation tick all change
incidents; doing it here keeps the lifecycle (``check_transition``), the audit trail (who, when)
and the notification (one ``IncidentChanged`` per committed change, after the commit) the same
for all of them. Methods block on the store: call them off the engine's event loop.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aphrodite_sla.events import IncidentChanged
from aphrodite_sla.incidents.model import (
    AuditEntry,
    Incident,
    IncidentSeverity,
    IncidentStatus,
    IncidentType,
    ResponseStage,
    TimelineEntry,
    check_transition,
)
from aphrodite_sla.incidents.store import IncidentStore, new_incident_id

logger = logging.getLogger(__name__)

Publisher = Callable[[IncidentChanged], None]


@dataclass(frozen=True)
class Signal:
    """Something that may open an incident or join one: what the detectors saw."""

    fingerprint: str
    title: str
    severity: IncidentSeverity
    incident_type: IncidentType
    at: float
    first_bad_at: float | None = None
    correlation_id: str = ""
    description: str = ""
    source: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


class IncidentManager:
    """See the module docstring. ``publish`` receives each ``IncidentChanged`` (the event stream's
    publish, or nothing)."""

    def __init__(self, store: IncidentStore, *, clock: Callable[[], float], publish: Publisher | None = None,
                 flap_window_s: float = 600.0, correlation_window_s: float = 300.0, group_window_s: float = 120.0,
                 url_prefix: str = "") -> None:
        self.store = store
        self.clock = clock
        self._publish = publish
        self.flap_window_s = flap_window_s
        self.correlation_window_s = correlation_window_s
        self.group_window_s = group_window_s
        self.url_prefix = url_prefix
        self._lock = threading.RLock()  # one read-modify-write at a time in this process

    # -- opening ----------------------------------------------------------------------------------
    def signal(self, sig: Signal) -> tuple[Incident, str]:
        """Open an incident for ``sig`` or join the one it belongs to. Joins, in order: the open
        incident with the same fingerprint, the open incident with the same correlation id, an open
        incident of the same type detected less than ``correlation_window_s`` ago (one fault
        breaches p95 and p99, TTFT and goodput together), an open incident of any type detected less
        than ``group_window_s`` ago (one fault shows as several signals at once: a stall is the stall,
        failed health checks and a latency page within seconds; Alertmanager's group wait), the same
        fingerprint resolved less than ``flap_window_s`` ago (reopened: flapping input makes one
        incident). Returns the incident and what happened (opened | joined | reopened)."""
        with self._lock:
            existing = self.store.find_open(fingerprint=sig.fingerprint)
            if existing is None and sig.correlation_id:
                existing = self.store.find_open(correlation_id=sig.correlation_id)
            if existing is None and self.correlation_window_s > 0:
                existing = self.store.open_of_type(sig.incident_type.value, sig.at - self.correlation_window_s)
            if existing is None and self.group_window_s > 0:
                existing = self.store.open_of_type(None, sig.at - self.group_window_s)
            if existing is not None:
                return self._join(existing, sig), "joined"
            recent = self.store.latest_with(sig.fingerprint)
            target = self.store.get(recent.labels["merged_into"]) if recent is not None and "merged_into" in recent.labels else None
            if target is not None and target.is_open:  # merged by root cause: its signals join the survivor
                return self._join(target, sig), "joined"
            if (recent is not None and recent.status is IncidentStatus.RESOLVED and recent.resolved_at is not None
                    and sig.at - recent.resolved_at <= self.flap_window_s):
                return self._reopen(recent, sig), "reopened"
            return self._open(sig)

    def _open(self, sig: Signal) -> tuple[Incident, str]:
        first_bad = sig.first_bad_at if sig.first_bad_at is not None else sig.at
        incident = Incident(
            incident_id=new_incident_id(sig.at), fingerprint=sig.fingerprint, title=sig.title[:512], severity=sig.severity,
            incident_type=sig.incident_type, status=IncidentStatus.DETECTED, detected_at=sig.at, first_bad_at=min(first_bad, sig.at),
            updated_at=sig.at, correlation_id=sig.correlation_id, description=sig.description, replica=self.store.replica,
            source=sig.source, labels=dict(sig.labels), stage=ResponseStage.ASSESSMENT.value,
            timeline=(TimelineEntry(sig.at, "detected", sig.description or sig.title, "system", ResponseStage.ASSESSMENT.value, dict(sig.data)),
                      TimelineEntry(sig.at, "stage", f"assessment: {sig.severity.value} {sig.incident_type.value}", "system",
                                    ResponseStage.ASSESSMENT.value)),
            audit=(AuditEntry(sig.at, "system", "opened", f"{sig.source}: {sig.title}"),),
        )
        stored, created = self.store.create(incident)
        if not created:  # another replica opened it a moment ago
            return self._join(stored, sig), "joined"
        self._notify(stored, "opened")
        return stored, "opened"

    def _join(self, incident: Incident, sig: Signal) -> Incident:
        changes: dict[str, Any] = {"event_count": incident.event_count + 1, "updated_at": sig.at, "recovered_at": None}
        entry = TimelineEntry(sig.at, "event", sig.description or sig.title, "system", incident.stage, dict(sig.data))
        audit: list[AuditEntry] = []
        change = ""
        if sig.severity.rank > incident.severity.rank:
            changes["severity"] = sig.severity
            changes["title"] = sig.title[:512]  # what is worst names it
            audit.append(AuditEntry(sig.at, "system", "severity", f"{incident.severity.value} -> {sig.severity.value}"))
            change = "updated"
        if sig.first_bad_at is not None and sig.first_bad_at < incident.first_bad_at:
            changes["first_bad_at"] = sig.first_bad_at
        if incident.status is IncidentStatus.MONITORING:  # it came back before it was resolved
            changes["status"] = IncidentStatus.INVESTIGATING
            audit.append(AuditEntry(sig.at, "system", "status", "monitoring -> investigating: the problem came back"))
            change = change or "updated"
        if change:
            changes["last_change"] = change
        updated = incident.with_(**changes)
        self.store.save(updated, timeline=[entry], audit=audit, add_events=1)
        if change:
            self._notify(updated, change)
        return updated

    def _reopen(self, incident: Incident, sig: Signal) -> Incident:
        check_transition(incident.status, IncidentStatus.DETECTED)
        updated = incident.with_(status=IncidentStatus.DETECTED, resolved_at=None, resolved_by="", recovered_at=None, updated_at=sig.at,
                                 event_count=incident.event_count + 1, severity=max(incident.severity, sig.severity, key=lambda s: s.rank),
                                 last_change="reopened", escalation_level=0, escalated_at=None)
        self.store.save(updated, add_events=1, timeline=[TimelineEntry(sig.at, "reopened", f"came back within the flap window: {sig.title}", "system",
                                                         updated.stage, dict(sig.data))],
                        audit=[AuditEntry(sig.at, "system", "reopened", sig.title)])
        self._notify(updated, "reopened")
        return updated

    def create_manual(self, *, title: str, severity: IncidentSeverity, incident_type: IncidentType, description: str, by: str,
                      labels: Mapping[str, str] | None = None) -> Incident:
        """An incident a person reports (the API's and CLI's create): its own fingerprint."""
        now = self.clock()
        import secrets

        sig = Signal(f"manual-{secrets.token_hex(6)}", title, severity, incident_type, now, description=description, source=f"manual:{by}",
                     labels=labels or {})
        incident, _ = self._open(sig)
        return incident

    # -- changes ----------------------------------------------------------------------------------
    def get(self, incident_id: str) -> Incident:
        incident = self.store.get(incident_id)
        if incident is None:
            raise KeyError(incident_id)
        return incident

    def change(self, incident_id: str, *, by: str, action: str, message: str, status: IncidentStatus | None = None,
               stage: ResponseStage | None = None, notify: str | None = None, receivers: tuple[str, ...] = (),
               data: Mapping[str, Any] | None = None, **fields: Any) -> Incident:
        """Apply one change: a status transition (checked), a stage, fields; a timeline entry, an
        audit entry; then ``IncidentChanged(change=notify)`` when ``notify`` is given."""
        with self._lock:
            incident = self.get(incident_id)
            now = self.clock()
            changes: dict[str, Any] = dict(fields)
            detail = message
            if status is not None and status is not incident.status:
                check_transition(incident.status, status)
                changes["status"] = status
                detail = f"{incident.status.value} -> {status.value}: {message}"
            timeline = [TimelineEntry(now, action, message, by, (stage or ResponseStage(incident.stage)).value, dict(data or {}))]
            if stage is not None and stage.value != incident.stage:
                changes["stage"] = stage.value
                timeline.insert(0, TimelineEntry(now, "stage", f"{stage.value}", by, stage.value))
            changes["updated_at"] = now
            if notify:
                changes["last_change"] = notify
            updated = incident.with_(**changes)
            self.store.save(updated, timeline=timeline, audit=[AuditEntry(now, by, action, detail)])
        if notify:
            self._notify(updated, notify, actor=by, receivers=receivers)
        return updated

    def note(self, incident_id: str, *, by: str, kind: str, message: str, stage: ResponseStage | None = None,
             data: Mapping[str, Any] | None = None, **fields: Any) -> Incident:
        """A timeline entry (and fields) without a status change or notification."""
        return self.change(incident_id, by=by, action=kind, message=message, stage=stage, data=data, **fields)

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        """Someone owns it: escalation stops (an acknowledged incident is not escalated further)."""
        incident = self.get(incident_id)
        if incident.acknowledged_at is not None:
            return incident
        status = IncidentStatus.ACKNOWLEDGED if incident.status is IncidentStatus.DETECTED else None
        if not incident.is_open:
            raise ValueError(f"incident {incident_id} is {incident.status.value}: nothing to acknowledge")
        return self.change(incident_id, by=by, action="acknowledged", message=f"acknowledged by {by}", status=status,
                           notify="acknowledged", acknowledged_at=self.clock(), acknowledged_by=by)

    def assign(self, incident_id: str, assignee: str, by: str) -> Incident:
        return self.change(incident_id, by=by, action="assigned", message=f"assigned to {assignee}", notify="assigned", assigned_to=assignee)

    def set_status(self, incident_id: str, status: IncidentStatus, by: str, message: str = "") -> Incident:
        if status is IncidentStatus.RESOLVED:
            return self.resolve(incident_id, by, message)
        if status is IncidentStatus.CLOSED:
            return self.close(incident_id, by, message)
        notify = {IncidentStatus.MITIGATING: "mitigating"}.get(status, "updated")
        stage = {IncidentStatus.INVESTIGATING: ResponseStage.INVESTIGATION, IncidentStatus.MITIGATING: ResponseStage.REMEDIATION,
                 IncidentStatus.MONITORING: ResponseStage.RECOVERY}.get(status)
        extra: dict[str, Any] = {}
        if status is IncidentStatus.MITIGATING and self.get(incident_id).mitigated_at is None:
            extra["mitigated_at"] = self.clock()
        return self.change(incident_id, by=by, action="status", message=message or status.value, status=status, stage=stage,
                           notify=notify, **extra)

    def resolve(self, incident_id: str, by: str, notes: str = "") -> Incident:
        incident = self.get(incident_id)
        if incident.status is IncidentStatus.RESOLVED:
            return incident
        return self.change(incident_id, by=by, action="resolved", message=notes or f"resolved by {by}", status=IncidentStatus.RESOLVED,
                           stage=ResponseStage.RECOVERY, notify="resolved", resolved_at=self.clock(), resolved_by=by,
                           resolution_notes=notes or incident.resolution_notes)

    def close(self, incident_id: str, by: str, notes: str = "") -> Incident:
        return self.change(incident_id, by=by, action="closed", message=notes or f"closed by {by}", status=IncidentStatus.CLOSED,
                           notify="closed", closed_at=self.clock())

    # -- notification -----------------------------------------------------------------------------
    def event_for(self, incident: Incident, change: str, *, actor: str = "system", receivers: tuple[str, ...] = ()) -> IncidentChanged:
        summary = incident.description or incident.title
        if incident.root_cause:
            summary = f"{summary} (root cause: {incident.root_cause})"
        labels = {"incident_type": incident.incident_type.value, "severity": incident.severity.value, **dict(incident.labels)}
        if incident.replica:
            labels["replica"] = incident.replica
        annotations = {"status": incident.status.value, "stage": incident.stage}
        if incident.assigned_to:
            annotations["assigned_to"] = incident.assigned_to
        return IncidentChanged(
            fingerprint=incident.fingerprint, episode=incident.incident_id, occurred_at=incident.updated_at,
            incident_id=incident.incident_id, change=change, title=incident.title, severity=incident.severity.value,
            status=incident.status.value, incident_type=incident.incident_type.value, summary=summary, started_at=incident.detected_at,
            labels=labels, annotations=annotations, escalation_level=incident.escalation_level, receivers=receivers, actor=actor,
            url=f"{self.url_prefix}/api/incidents/{incident.incident_id}" if self.url_prefix else "",
        )

    def _notify(self, incident: Incident, change: str, *, actor: str = "system", receivers: tuple[str, ...] = ()) -> None:
        if self._publish is None:
            return
        try:
            self._publish(self.event_for(incident, change, actor=actor, receivers=receivers))
        except Exception:  # a broken subscriber must not undo a committed change
            logger.exception("aphrodite-sla incidents: publishing %s of %s failed", change, incident.incident_id)

    def republish_open(self, receivers_for: Callable[[Incident], tuple[str, ...]] | None = None) -> int:
        """Re-publish the last change of every open incident (start-up): a change committed just
        before a crash is still notified (subscribers deduplicate). ``receivers_for`` gives an
        escalation's receivers back."""
        count = 0
        for incident in self.store.open_incidents():
            receivers = receivers_for(incident) if receivers_for is not None else ()
            self._notify(incident, incident.last_change or "opened", receivers=receivers)
            count += 1
        return count
