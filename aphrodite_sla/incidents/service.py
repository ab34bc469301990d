"""``IncidentSystem``: incidents for one ``MonitorContext`` — the store, the manager, the detection
rules, the escalation policy and the API, reacting to the monitor's event stream.

Why everything hangs off subscriptions: the detectors (SLA evaluator, stall detector, recovery,
RCA) never call us; we subscribe to their typed events, and each evaluation's
``SnapshotPublished`` is our tick (rules, escalation, auto-resolve, retention), so incident work
runs on our subscriber threads and never on the engine's loop or in the evaluator. The engine's
request outcomes arrive through ``record_engine_event``, an O(1) append.

The response workflow's five stages are written on the timeline as the monitor, recovery and RCA
report: assessment (opened), containment (degradation, breaker, recovery started), investigation
(root cause found), remediation (recovery actions, approvals), recovery (SLAs back within bounds,
resolved).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aphrodite_sla.events import (
    AnomalyDetected,
    ApprovalDecided,
    ApprovalRequested,
    BreakerStateChanged,
    DegradationChanged,
    DeploymentEvent,
    MonitorEvent,
    MonitoringModeChanged,
    RecoveryFinished,
    RecoveryStarted,
    RegressionDetected,
    ResponseEscalated,
    RootCauseFound,
    SnapshotPublished,
    StallDetected,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
    fingerprint,
)
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.incidents.config import IncidentConfig, parse_incident_config
from aphrodite_sla.incidents.escalation import EscalationPolicy
from aphrodite_sla.incidents.manager import IncidentManager, Signal
from aphrodite_sla.incidents.metrics import STATS_WINDOW_S, IncidentMetricsView
from aphrodite_sla.incidents.model import (
    Incident,
    IncidentSeverity,
    IncidentStatus,
    IncidentType,
    ResponseStage,
    TransitionError,
    severity_of_violation,
    type_for_sla,
)
from aphrodite_sla.incidents.postmortem import render_postmortem
from aphrodite_sla.incidents.rules import RuleEngine, rules_with_overrides
from aphrodite_sla.incidents.stats import incident_statistics
from aphrodite_sla.incidents.store import IncidentStore

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client.registry import Collector

    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.notify.local_receivers import LocalReceivers
    from aphrodite_sla.notify.notifier import Notifier
    from aphrodite_sla.snapshot import MonitorSnapshot

logger = logging.getLogger(__name__)

STREAM_EVENTS = (ViolationRaised, ViolationEscalated, ViolationResolved, AnomalyDetected, RegressionDetected, RecoveryStarted,
                 RecoveryFinished, ApprovalRequested, ApprovalDecided, BreakerStateChanged, DegradationChanged, MonitoringModeChanged,
                 ResponseEscalated, DeploymentEvent, RootCauseFound, SnapshotPublished)
PURGE_EVERY_S = 3600.0
VIEW_EVERY_S = 15.0  # the metrics view's statistics read the last 30 days: not at every evaluation


class IncidentSystem:
    """See the module docstring. Building it opens (and migrates) the store; ``start()``
    subscribes and re-publishes the last change of every open incident."""

    def __init__(self, config: IncidentConfig, store: IncidentStore, *, clock: Callable[[], float], events: Any = None,
                 recovery: Any = None, memory_threshold_percent: float = 85.0, disk_threshold_percent: float = 90.0,
                 api_token: str | None = None, notifier: Notifier | None = None) -> None:
        from aphrodite_sla.incidents.api import IncidentApi

        self.config = config
        self.store = store
        self.clock = clock
        self.events = events
        self.recovery = recovery
        self.memory_threshold = memory_threshold_percent
        self.disk_threshold = disk_threshold_percent
        publish = (lambda e: events.publish([e])) if events is not None else None
        self.manager = IncidentManager(store, clock=clock, publish=publish, flap_window_s=config.detection.flap_window_seconds,
                                      correlation_window_s=config.detection.correlation_window_seconds,
                                      group_window_s=config.detection.group_window_seconds)
        self.rules = RuleEngine(rules_with_overrides(config.detection.rules, store.rules()), retention_s=config.detection.event_retention_seconds,
                                max_events=config.detection.max_events, clock=clock)
        self.policy = EscalationPolicy(config.escalation)
        self.escalations_by_level: dict[int, int] = {}
        self.errors = 0
        self._last_tick = float("-inf")
        self._last_purge = float("-inf")
        self._last_view = float("-inf")
        self._subscription: Any = None
        self._lock = threading.Lock()
        self._view = IncidentMetricsView(levels=len(self.policy.levels))
        self.api = IncidentApi(self, api_token)
        self.notifier = notifier  # delivers our IncidentChanged events (aphrodite_sla.notify)
        self.local_receivers: LocalReceivers | None = None  # receivers a simulation started for us; closed with us
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def for_context(cls, context: MonitorContext, *, clock: Callable[[], float] | None = None,
                    config: IncidentConfig | None = None, notifier_env: Mapping[str, str] | None = None) -> IncidentSystem:
        """Incidents on ``context``'s stream, configured by its ``incident_response`` section
        (or ``config``); the notifier reads its secrets from ``notifier_env`` (default: the
        process environment)."""
        cfg = context.config
        config = config or parse_incident_config(getattr(cfg, "incident_response", None))
        where = getattr(cfg, "incidents_db", "")  # APHRODITE_SLA_INCIDENTS_DB: a path or a database URL
        if where:
            config = replace(config, database_url=where) if "://" in where else replace(config, store_path=where, database_url="")
        clock = clock or context.manager.clock
        store = IncidentStore(config.url, replica=config.replica, clock=clock)
        from aphrodite_sla.notify.config import NotificationsConfig
        from aphrodite_sla.notify.notifier import build_notifier

        # the outbox lives in the incident store's database (one file, one backup, one fleet database)
        notifier = build_notifier(NotificationsConfig.from_mapping(config.notifications).with_env(notifier_env), context.events,
                                  store.engine, env=notifier_env)
        return cls(config, store, clock=clock, events=context.events, recovery=context.recovery,
                   memory_threshold_percent=cfg.memory_threshold_percent, disk_threshold_percent=cfg.disk_threshold_percent,
                   api_token=cfg.api_token or None, notifier=notifier)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> int:
        """Subscribe to the stream (idempotent) and re-publish the open incidents' last changes;
        returns how many were re-published."""
        with self._lock:
            if self._subscription is None and self.events is not None:
                self._subscription = self.events.subscribe(self.on_event, *STREAM_EVENTS, name="incidents", queue_size=4096)
        if self.notifier is not None:  # first: it must be subscribed to receive the re-published changes
            self.notifier.start()
        return self.manager.republish_open(
            lambda i: self.policy.receivers(i.escalation_level) if i.last_change in ("escalated", "reminder") else ())

    def stop(self) -> None:
        with self._lock:
            sub, self._subscription = self._subscription, None
        if sub is not None and self.events is not None:
            self.events.unsubscribe(sub)
        if self.notifier is not None:
            self.notifier.stop()

    def collectors(self, model_name: str = "") -> list[Collector]:
        """The Prometheus collectors of incidents and (when present) their notifications."""
        from aphrodite_sla.incidents.metrics import IncidentCollector

        found: list[Collector] = [IncidentCollector(self.metrics_view, model_name=model_name)]
        if self.notifier is not None:
            from aphrodite_sla.export.notification_collector import NotificationCollector

            notifier = self.notifier
            found.append(NotificationCollector(lambda: notifier.stats, model_name))
        return found

    def close(self) -> None:
        self.stop()
        self.store.close()
        if self.local_receivers is not None:
            self.local_receivers.stop()
            self.local_receivers = None

    # -- engine events (any thread, O(1)) ---------------------------------------------------------
    def record_engine_event(self, kind: str, at: float | None = None, count: int = 1) -> bool:
        return self.rules.submit(kind, at, count)

    # -- reactions --------------------------------------------------------------------------------
    def on_event(self, event: MonitorEvent) -> None:
        """One stream event (on our subscriber thread). A failure is counted and logged; the next
        event is handled regardless."""
        try:
            self._dispatch(event)
        except Exception:
            self.errors += 1
            logger.exception("aphrodite-sla incidents: handling %s failed", type(event).__name__)

    def _dispatch(self, event: MonitorEvent) -> None:
        if isinstance(event, SnapshotPublished):
            self.tick(event.snapshot)
        elif isinstance(event, StallDetected):
            self.record_engine_event("health_check_failure", event.occurred_at)
            self._violation(event, IncidentType.DEADLOCK, "engine stalled")
        elif isinstance(event, (ViolationRaised, ViolationEscalated)):
            self._violation(event, type_for_sla(event.violation.metric_name), f"SLA {event.violation.metric_name} violated")
        elif isinstance(event, ViolationResolved):
            self._recovered(event)
        elif isinstance(event, (AnomalyDetected, RegressionDetected)) and not self._warning_counts(event):
            return
        elif isinstance(event, AnomalyDetected):
            sla = event.status.metric_name
            self.manager.signal(Signal(event.fingerprint, f"anomaly in {sla}", IncidentSeverity.LOW, type_for_sla(sla), event.occurred_at,
                                       correlation_id=f"sla:{sla}", description=f"{sla}: anomaly score {event.score:.2f} ({event.kind})",
                                       source="anomaly", labels={"sla": sla}))
        elif isinstance(event, RegressionDetected):
            self.manager.signal(Signal(event.fingerprint, f"regression in {event.sla}", IncidentSeverity.MEDIUM,
                                       IncidentType.PERFORMANCE_DEGRADATION, event.occurred_at, correlation_id=f"sla:{event.sla}",
                                       description=f"{event.sla} regressed against the previous window", source="regression",
                                       labels={"sla": event.sla}))
        else:
            self._response_event(event)

    def _warning_counts(self, event: AnomalyDetected | RegressionDetected) -> bool:
        """A warning opens an incident only when configured to; otherwise it joins its SLA's open one."""
        sla = event.status.metric_name if isinstance(event, AnomalyDetected) else event.sla
        return self.config.detection.open_on_warnings or self._incident_for(event, sla) is not None

    def _violation(self, event: ViolationRaised | ViolationEscalated, kind: IncidentType, title: str) -> None:
        v = event.violation
        sla = v.metric_name
        self.manager.signal(Signal(
            event.fingerprint, title, severity_of_violation(v.worst_severity.value), kind, event.occurred_at,
            first_bad_at=v.first_breach_time, correlation_id=f"sla:{sla}", description=v.message, source="sla",
            labels={"sla": sla}, data={"observed": v.observed_value, "bound": v.bound, "episode": event.episode},
        ))

    def _incident_for(self, event: MonitorEvent, sla: str = "") -> Incident | None:
        found = self.store.find_open(fingerprint=event.fingerprint)
        if found is None and sla:
            found = self.store.find_open(correlation_id=f"sla:{sla}")
        return found

    def _recovered(self, event: ViolationResolved) -> None:
        incident = self._incident_for(event, event.sla)
        if incident is None:
            return
        status = IncidentStatus.MONITORING if incident.status is not IncidentStatus.MONITORING else None
        wait = (f"auto-resolves after {self.config.auto_resolve_after_seconds:g} s within bounds" if self.config.auto_resolution
                else "waiting for a person to resolve")
        self.manager.change(incident.incident_id, by="monitor", action="recovered",
                            message=f"{event.sla} back within bounds after {event.duration_s:.0f} s; {wait}", status=status,
                            stage=ResponseStage.RECOVERY, notify="updated", recovered_at=event.occurred_at)

    def _response_event(self, event: MonitorEvent) -> None:
        m = self.manager
        if isinstance(event, RecoveryStarted):
            inc = self._incident_for(event, event.sla)
            if inc is not None:
                status = IncidentStatus.MITIGATING if inc.status in (IncidentStatus.DETECTED, IncidentStatus.ACKNOWLEDGED,
                                                                    IncidentStatus.INVESTIGATING) else None
                why = getattr(event, "reason", "")  # a root cause chose the procedure (recovery.root_cause)
                m.change(inc.incident_id, by="recovery", action="recovery_started",
                         message=f"procedure {event.procedure_id} started" + (f" — {why}" if why else ""),
                         status=status, stage=ResponseStage.CONTAINMENT, notify="mitigating" if status else None,
                         data={"execution_id": event.execution_id, **({"reason": why} if why else {})},
                         mitigated_at=inc.mitigated_at or event.occurred_at)
        elif isinstance(event, RecoveryFinished):
            ex = event.execution
            inc = self._incident_for(event, ex.sla)
            if inc is not None:
                outcome = ex.status.value
                failed = outcome == "failed"
                actions = ", ".join(f"{a.action.value}={a.outcome.value}" for a in ex.actions) or "no action"
                if outcome == "superseded":
                    actions += f" ({ex.reason})"
                m.note(inc.incident_id, by="recovery", kind="recovery_finished", message=f"recovery {outcome}: {actions}",
                       stage=ResponseStage.REMEDIATION, data={"execution_id": ex.execution_id, "status": outcome},
                       response_failed_at=event.occurred_at if failed else inc.response_failed_at)
        elif isinstance(event, ApprovalRequested):
            inc = self._incident_for(event)
            if inc is not None:
                m.note(inc.incident_id, by="recovery", kind="approval_requested",
                       message=f"{event.action} waits for approval (request {event.request_id}, denied at timeout)",
                       stage=ResponseStage.REMEDIATION, data={"request_id": event.request_id, "expires_at": event.expires_at},
                       pending_approvals=(*inc.pending_approvals, event.request_id))
        elif isinstance(event, ApprovalDecided):
            inc = self._incident_for(event)
            if inc is not None:
                verdict = "approved" if event.approved else "denied"
                m.note(inc.incident_id, by=event.decided_by, kind="approval_decided", message=f"{event.action} {verdict} by {event.decided_by}",
                       stage=ResponseStage.REMEDIATION, pending_approvals=tuple(r for r in inc.pending_approvals if r != event.request_id))
        elif isinstance(event, BreakerStateChanged):
            self._breaker(event)
        elif isinstance(event, (DegradationChanged, MonitoringModeChanged)):
            if isinstance(event, DegradationChanged):
                text = f"degradation {event.old_level} -> {event.new_level} by {event.changed_by}: {event.reason}"
            else:
                text = f"monitoring mode {event.old_mode} -> {event.new_mode}: {event.reason}"
            # degrading service contains the damage; reverting it is not a new stage
            stage = ResponseStage.CONTAINMENT if isinstance(event, DegradationChanged) and event.new_level != "none" else None
            for inc in self.store.open_incidents():
                m.note(inc.incident_id, by="recovery", kind=type(event).__name__, message=text, stage=stage)
        elif isinstance(event, ResponseEscalated):
            inc = self._incident_for(event) or self.manager.signal(Signal(
                event.fingerprint, f"automatic response failing: {event.subject}", IncidentSeverity.HIGH, IncidentType.SLA_VIOLATION,
                event.occurred_at, first_bad_at=event.failing_since, description=event.detail, source="recovery",
                labels={"subject": event.subject}))[0]
            m.note(inc.incident_id, by="recovery", kind="response_escalated", message=f"{event.subject}: {event.detail}",
                   response_failed_at=min(event.failing_since, inc.response_failed_at or event.failing_since))
        elif isinstance(event, DeploymentEvent):
            self._deployment(event)
        elif isinstance(event, RootCauseFound):
            self._root_cause(event)

    def _breaker(self, event: BreakerStateChanged) -> None:
        fp = fingerprint("CircuitBreakerOpen", service=event.service)
        if event.new_state in ("open", "forced_open"):
            self.record_engine_event("health_check_failure", event.occurred_at)
            self.manager.signal(Signal(fp, f"circuit breaker {event.service} open", IncidentSeverity.HIGH, IncidentType.SERVICE_DOWN,
                                       event.occurred_at, source="breaker", labels={"service": event.service},
                                       description=f"{event.service}: {event.old_state} -> {event.new_state} {event.reason}".rstrip()))
        elif event.new_state == "closed":
            inc = self.store.find_open(fingerprint=fp)
            if inc is not None:
                self.manager.change(inc.incident_id, by="breaker", action="recovered", message=f"{event.service} breaker closed",
                                    status=IncidentStatus.MONITORING if inc.status is not IncidentStatus.MONITORING else None,
                                    stage=ResponseStage.RECOVERY, notify="updated", recovered_at=event.occurred_at)

    def _deployment(self, event: DeploymentEvent) -> None:
        fp = fingerprint("DeploymentRegression", deployment=event.deployment_id)
        if event.kind in ("regressed", "rollback_failed"):
            sev = IncidentSeverity.CRITICAL if event.kind == "rollback_failed" else IncidentSeverity.HIGH
            self.manager.signal(Signal(fp, f"deployment {event.deployment_id} {event.kind.replace('_', ' ')}", sev,
                                       IncidentType.PERFORMANCE_DEGRADATION, event.occurred_at, description=event.detail, source="deployment",
                                       labels={"deployment": event.deployment_id}))
        else:
            inc = self.store.find_open(fingerprint=fp)
            if inc is not None:
                stage = ResponseStage.REMEDIATION if event.kind == "rolled_back" else None
                self.manager.note(inc.incident_id, by="deployment", kind=f"deployment_{event.kind}", message=event.detail, stage=stage)

    def _root_cause(self, event: RootCauseFound) -> None:
        inc = self._incident_for(event, event.sla)
        if inc is None:
            return
        detail: dict[str, Any] = {"cause": event.cause, "category": event.category, "confidence": event.confidence}
        to_dict = getattr(event.analysis, "to_dict", None)
        if callable(to_dict):
            try:
                detail["analysis"] = to_dict()
            except Exception:  # RCA's report is shown when it can be; the cause is kept anyway
                logger.debug("RCA analysis could not be serialised", exc_info=True)
        status = IncidentStatus.INVESTIGATING if inc.status in (IncidentStatus.DETECTED, IncidentStatus.ACKNOWLEDGED) else None
        known = inc.root_cause_detail.get("confidence") if isinstance(inc.root_cause_detail, dict) and inc.root_cause else None
        if event.cause == "insufficient_evidence" or (isinstance(known, (int, float)) and known >= event.confidence):
            # not a cause (or a weaker one than the incident has): on the timeline, never as the incident's root cause
            self.manager.note(inc.incident_id, by="rca", kind="root_cause",
                              message=f"RCA of {event.sla}: {event.cause} ({event.category}, confidence {event.confidence:.0%})",
                              stage=ResponseStage.INVESTIGATION, data=detail)
            return
        self.manager.change(inc.incident_id, by="rca", action="root_cause",
                            message=f"root cause: {event.cause} ({event.category}, confidence {event.confidence:.0%})", status=status,
                            stage=ResponseStage.INVESTIGATION, notify="updated", root_cause=event.cause, root_cause_detail=detail)
        self._merge_same_root_cause(inc.incident_id, event.cause)

    def _merge_same_root_cause(self, incident_id: str, cause: str) -> None:
        """One root cause, one incident: an older open incident with the same cause absorbs this
        one (resolved as merged; its later signals join the survivor)."""
        survivor = next((i for i in self.store.open_incidents(full=False) if i.root_cause == cause and i.incident_id != incident_id), None)
        if survivor is None:
            return
        merged = self.manager.get(incident_id)
        self.manager.note(survivor.incident_id, by="rca", kind="merged", message=f"{incident_id} ({merged.title}) has the same root cause {cause}",
                          stage=ResponseStage.INVESTIGATION)
        self.manager.change(incident_id, by="rca", action="merged", message=f"merged into {survivor.incident_id}: same root cause {cause}",
                            status=IncidentStatus.RESOLVED, notify="resolved", resolved_at=self.clock(), resolved_by="rca",
                            resolution_notes=f"merged into {survivor.incident_id}", labels={**merged.labels, "merged_into": survivor.incident_id})

    # -- the tick (each evaluation) ---------------------------------------------------------------
    def tick(self, snapshot: MonitorSnapshot | None = None, now: float | None = None) -> None:
        """Feed the snapshot's samples to the rules, open incidents for rules that fire, escalate
        and remind, auto-resolve, and purge by retention (hourly)."""
        now = self.clock() if now is None else now
        if snapshot is not None:
            self._sample(snapshot, now)
        for firing in self.rules.evaluate(now):
            rule = firing.rule
            self.manager.signal(Signal(rule.fingerprint, f"{rule.name}: {firing.count} {rule.event_kind} events in {rule.window_seconds:g} s",
                                       rule.severity, rule.incident_type, now, first_bad_at=firing.first_at, correlation_id=f"rule:{rule.name}",
                                       description=rule.description, source=f"rule:{rule.name}", labels={"rule": rule.name},
                                       data={"count": firing.count}))
        for name in self.rules.take_rearmed():
            cleared = self.rules.get(name)
            inc = self.store.find_open(fingerprint=cleared.fingerprint) if cleared is not None else None
            if cleared is not None and inc is not None and inc.recovered_at is None:
                self.manager.change(inc.incident_id, by="rules", action="recovered",
                                    message=f"{name}: the event count fell back below {cleared.threshold * cleared.rearm_ratio:g}",
                                    status=IncidentStatus.MONITORING if inc.status is not IncidentStatus.MONITORING else None,
                                    stage=ResponseStage.RECOVERY, notify="updated", recovered_at=now)
        for incident in self.store.open_incidents(full=False):  # the fields decide; changes re-read the rest
            try:
                self._advance(incident, now)
            except (TransitionError, KeyError) as err:  # changed meanwhile by a person or another replica
                logger.info("aphrodite-sla incidents: %s: %s", incident.incident_id, err)
        if now - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = now
            self.store.purge(self.config.retention, now)
        if now - self._last_view >= VIEW_EVERY_S:
            self._last_view = now
            self.refresh_view(now)

    # -- metrics ------------------------------------------------------------------------------------
    def metrics_view(self) -> IncidentMetricsView:
        """The latest view (the collector reads this reference; nothing is computed for it)."""
        return self._view

    def refresh_view(self, now: float | None = None) -> IncidentMetricsView:
        now = self.clock() if now is None else now
        stats = incident_statistics(self.store.all_incidents(since=now - STATS_WINDOW_S, full=False))
        counts = self.store.counts()
        self._view = IncidentMetricsView(
            open_by_severity=dict(counts["open_by_severity"]), by_status=dict(counts["by_status"]), mttd_minutes=stats["mttd_minutes"],
            mtta_minutes=stats["mtta_minutes"], mttr_minutes=stats["mttr_minutes"], escalations_by_level=dict(self.escalations_by_level),
            levels=len(self.policy.levels), rule_events_dropped=self.rules.dropped)
        return self._view

    def _sample(self, snapshot: MonitorSnapshot, now: float) -> None:
        if snapshot.stall is not None and snapshot.stall.stalled:
            self.record_engine_event("health_check_failure", now)
        for series, limit, kind in (("system_memory_percent", self.memory_threshold, "memory_high"),
                                    ("gpu_memory_used_percent", max(self.memory_threshold, 95.0), "memory_high"),
                                    ("disk_usage_percent", self.disk_threshold, "disk_low")):
            windows = [w for (name, _), w in snapshot.windows.items() if name == series and w.samples > 0]
            if windows and min(windows, key=lambda w: w.window_s).mean > limit:
                self.record_engine_event(kind, now)

    def _advance(self, incident: Incident, now: float) -> None:
        if (self.config.auto_resolution and incident.recovered_at is not None
                and now - incident.recovered_at >= self.config.auto_resolve_after_seconds):
            resolved = self.manager.resolve(incident.incident_id, "auto",
                                            f"SLAs within bounds for {self.config.auto_resolve_after_seconds:g} s: resolved automatically")
            self.write_postmortem(resolved)
            return
        step = self.policy.decide(incident, now)
        if step is None:
            return
        if step.kind == "escalate":
            self.escalations_by_level[step.level] = self.escalations_by_level.get(step.level, 0) + 1
            fields: dict[str, Any] = {"escalation_level": step.level, "escalated_at": now}
            if incident.response_failed_at is not None and now - incident.response_failed_at >= self.config.escalation.failed_response_minutes * 60:
                fields["response_failed_at"] = None
            self.manager.change(incident.incident_id, by="escalation", action="escalated", message=f"escalated to L{step.level}: {step.reason}",
                                notify="escalated", receivers=step.receivers, data={"receivers": list(step.receivers)}, **fields)
        else:
            self.manager.change(incident.incident_id, by="escalation", action="reminder", message=f"reminder: {step.reason}",
                                notify="reminder", receivers=step.receivers, reminded_at=now)

    # -- what people do (API, CLI) ----------------------------------------------------------------
    def resolve(self, incident_id: str, by: str, notes: str = "") -> Incident:
        incident = self.manager.resolve(incident_id, by, notes)
        self.write_postmortem(incident)
        return incident

    def write_postmortem(self, incident: Incident) -> str | None:
        if not self.config.postmortem_on_resolve:
            return None
        full = self.store.get(incident.incident_id) or incident
        markdown = render_postmortem(full)
        self.store.save_postmortem(full.incident_id, markdown, self.clock())
        return markdown

    def decide_approval(self, incident_id: str, request_id: str, approve: bool, by: str, reason: str = "") -> dict[str, Any]:
        """Approve or deny a risky action of this incident through recovery's approvals."""
        incident = self.manager.get(incident_id)
        if request_id not in incident.pending_approvals:
            raise KeyError(f"{request_id} is not pending on {incident_id}")
        if self.recovery is None:
            raise RuntimeError("recovery is not running in this process: decide through its /api/auto-recovery/approvals")
        book = self.recovery.engine.approvals
        (book.approve(request_id, by) if approve else book.deny(request_id, by, reason))
        self.manager.note(incident_id, by=by, kind="approval", message=f"{request_id} {'approved' if approve else 'denied'} by {by}",
                          stage=ResponseStage.REMEDIATION, pending_approvals=tuple(r for r in incident.pending_approvals if r != request_id))
        return dict(book.get(request_id).to_dict())

    def statistics(self, since: float | None = None) -> dict[str, Any]:
        stats = incident_statistics(self.store.all_incidents(since=since, full=False), self.store.counts())
        stats["escalations_by_level"] = {f"L{k}": v for k, v in sorted(self.escalations_by_level.items())}
        stats["rule_events_dropped"] = self.rules.dropped
        stats["errors"] = self.errors
        return stats
