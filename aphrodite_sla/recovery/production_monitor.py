"""``ProductionMonitor``: the seed's production monitor — alerts, monitoring modes and the summary.

What is an alert (the source is the monitor's event stream, one subscription of ours):

==========================  ==========================  =================================
event                       alert name                  severity
==========================  ==========================  =================================
ViolationRaised             SLAViolation                the violation's (minor/major/critical)
StallDetected               EngineStalled               critical
PageRaised                  SLAPage                     the rule's (critical page, major ticket)
ViolationEscalated          SLAViolation, escalated     the new severity (always delivered)
AnomalyDetected             SLAAnomaly                  warning (early signal)
RegressionDetected          SLARegression               warning (early signal)
ResponseEscalated           ResponseEscalated           critical (a person has to look)
DeploymentEvent regressed   DeploymentRegression        major
  rolled_back / failed                                  warning / critical
==========================  ==========================  =================================

``ViolationResolved`` is not an alert: it ends the violation for the mode logic. A deployment's
``tracked``/``stable`` events are not alerts either.

Modes (``monitoring_mode``): a MAJOR or CRITICAL violation lifts NORMAL to HIGH_ALERT; a CRITICAL
while already in HIGH_ALERT, or an engine stall, lifts to EMERGENCY. The mode steps down one step
only after a calm period with no active violation (HIGH_ALERT 10 min, EMERGENCY 5 min), counted from
the later of the last resolution and the last mode change, and restarted by any new violation:
that is the hysteresis that keeps a flapping SLA from flapping the mode. MAINTENANCE is set by a
person (``set_mode``, optionally until a time) or by a window of the shared ``MaintenanceCalendar``;
in it alerts are recorded as suppressed and callbacks are not called, the SLAs are still recorded
and evaluated, and the monitor never changes the mode by itself until the planned end.

Dedup: one alert per fingerprint per cooldown of the current mode; repeats inside it raise the
delivered alert's ``count``. Callbacks run on the subscription's thread (never the evaluator's);
one that raises is counted and logged, and the others still run.
"""
from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.event_stream import EventStream, Subscription
from aphrodite_sla.events import (
    ANOMALY_ALERT,
    DEPLOYMENT_ALERT,
    ESCALATION_ALERT,
    MODE_ALERT,
    PAGE_ALERT,
    REGRESSION_ALERT,
    STALL_ALERT,
    VIOLATION_ALERT,
    AnomalyDetected,
    DeploymentEvent,
    MonitorEvent,
    MonitoringModeChanged,
    PageRaised,
    RegressionDetected,
    ResponseEscalated,
    StallDetected,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
    episode_id,
    fingerprint,
)
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.recovery.monitoring_mode import (
    STEP_DOWN,
    Alert,
    AlertSeverity,
    MaintenanceCalendar,
    MaintenanceWindow,
    ModeChange,
    MonitoringMode,
    SuppressedReason,
)
from aphrodite_sla.self_metrics import Component
from aphrodite_sla.sla.manager import SLAManager, create_production_sla_manager
from aphrodite_sla.sla.threshold import ViolationRule, ViolationSeverity

logger = logging.getLogger(__name__)

AlertCallback = Callable[[Alert], Any]
RecoveryStats = Callable[[], Mapping[str, Any]]

ALERT_LOG_S = 24 * 3600.0  # the alert log keeps a day (total_alerts_24h)
MAX_ALERT_LOG = 10_000  # and at most this many records, whatever the day held
RECENT_ALERTS = 10
MODE_HISTORY = 100
TICK_S = 5.0

_DEPLOYMENT_SEVERITY = {
    "regressed": AlertSeverity.MAJOR,
    "rolled_back": AlertSeverity.WARNING,
    "rollback_failed": AlertSeverity.CRITICAL,
}


@dataclass(frozen=True)
class _Candidate:
    """What one event would alert, before dedup and suppression."""

    key: str  # dedup identity
    fingerprint: str
    episode: str
    name: str
    sla: str | None
    severity: AlertSeverity
    message: str
    escalation: bool  # a ViolationEscalated: always delivered


@dataclass(frozen=True)
class _Delivery:
    alert_id: int
    at: float
    rank: int
    maintenance: bool


@dataclass(frozen=True)
class _Active:
    severity: ViolationSeverity
    stall: bool


class ProductionMonitor:
    """Alerts from the event stream, monitoring modes, and the production summary (see the module
    docstring). ``tick(now)`` does the periodic work (calendar, health check, de-escalation, log
    pruning); ``start_monitoring()`` runs it on a daemon thread of its own."""

    def __init__(
        self,
        manager: SLAManager,
        *,
        clock: Clock | None = None,
        events: EventStream | None = None,
        recovery_stats: RecoveryStats | None = None,
        calendar: MaintenanceCalendar | None = None,
        start_manager: bool = False,
        tick_s: float = TICK_S,
    ) -> None:
        if not isinstance(manager, SLAManager):
            raise ValueError(f"ProductionMonitor.manager: expected an SLAManager, got {type(manager).__name__}")
        if recovery_stats is not None and not callable(recovery_stats):
            raise ValueError("ProductionMonitor.recovery_stats: must be a callable returning a mapping, or None")
        if isinstance(tick_s, bool) or not isinstance(tick_s, (int, float)) or not math.isfinite(tick_s) or tick_s <= 0:
            raise ValueError(f"ProductionMonitor.tick_s: must be a finite number > 0, got {tick_s!r}")
        self.manager = manager
        self.clock: Clock = clock if clock is not None else manager.clock
        self.events = events if events is not None else manager.events
        self.recovery_stats = recovery_stats
        self.calendar = calendar if calendar is not None else MaintenanceCalendar()
        self.start_manager = start_manager
        self._lock = threading.RLock()
        self._callbacks: list[AlertCallback] = []
        self.callback_errors = 0
        self.duplicates = 0  # repeats folded into a delivered alert's count
        self._mode = MonitoringMode.NORMAL
        now = self.clock()
        self._mode_since = now
        self._mode_reason = "start"
        self._maintenance_until: float | None = None
        self._mode_history: list[ModeChange] = []
        self._active: dict[tuple[str, str], _Active] = {}
        self._calm_since: float | None = now
        self._last_health_check = -math.inf
        self._alerts: OrderedDict[int, Alert] = OrderedDict()
        self._next_alert_id = 1
        self._dedup: dict[str, _Delivery] = {}
        self._dropped_metrics: dict[str, int] = {}
        self._worker = PeriodicThread("aphrodite-sla-production-monitor", self.tick, float(tick_s))
        self._subscription: Subscription | None = self.events.subscribe(
            self.handle, ViolationRaised, ViolationEscalated, ViolationResolved, AnomalyDetected, RegressionDetected,
            ResponseEscalated, DeploymentEvent, name="production-monitor",
        )

    # -- configuration ---------------------------------------------------------------------
    def register_alert_callback(self, callback: AlertCallback) -> None:
        """``callback(alert)`` for every delivered alert, on the monitor's subscription thread."""
        if not callable(callback):
            raise ValueError(f"register_alert_callback.callback: must be callable, got {type(callback).__name__}")
        with self._lock:
            self._callbacks.append(callback)

    # -- recording -------------------------------------------------------------------------
    def record_metric(self, name: str, value: Any, timestamp: float | None = None) -> bool:
        """Record one sample into the SLA manager (an SLA name records into the series it reads).
        Never raises: a refused sample is counted per name; an unknown name is logged once."""
        try:
            ok = self.manager.record_measurement(name, value, timestamp)
        except Exception:  # the manager does not raise; this keeps the promise if that changes
            logger.exception("aphrodite-sla: record_metric(%r) failed", name)
            ok = False
        if ok:
            return True
        with self._lock:
            first = name not in self._dropped_metrics
            self._dropped_metrics[name] = self._dropped_metrics.get(name, 0) + 1
        if first and name not in self.manager.thresholds and self.manager.store.buffer(str(name)) is None:
            logger.warning(
                "aphrodite-sla: record_metric: unknown metric %r dropped (not an SLA or a registered series; SLAs: %s)",
                name, ", ".join(sorted(self.manager.thresholds)) or "none",
            )
        return False

    @property
    def dropped_metrics(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dropped_metrics)

    # -- lifecycle -------------------------------------------------------------------------
    def start_monitoring(self) -> None:
        """Start the periodic work (and the SLA manager's evaluator when this monitor owns it)."""
        if self.start_manager:
            self.manager.start_monitoring()
        self._worker.start()

    def stop_monitoring(self, timeout: float = 5.0) -> bool:
        stopped = self._worker.stop(timeout)
        if self.start_manager:
            stopped = self.manager.stop_monitoring(timeout) and stopped
        return stopped

    @property
    def is_monitoring(self) -> bool:
        return self._worker.is_running

    def close(self) -> None:
        """Stop and leave the event stream."""
        self.stop_monitoring()
        if self._subscription is not None:
            self.events.unsubscribe(self._subscription)
            self._subscription = None

    # -- modes -----------------------------------------------------------------------------
    @property
    def mode(self) -> MonitoringMode:
        return self._mode

    def mode_history(self) -> list[ModeChange]:
        with self._lock:
            return list(self._mode_history)

    def set_mode(self, mode: MonitoringMode | str, reason: str, by: str, *, until: float | None = None) -> ModeChange | None:
        """Change the mode by hand. ``until``: the planned end of a MAINTENANCE (the mode then
        returns to what the active violations warrant). Returns the change, None if unchanged."""
        try:
            new = MonitoringMode(mode)
        except ValueError:
            raise ValueError(f"set_mode.mode: unknown mode {mode!r}; expected one of {', '.join(m.value for m in MonitoringMode)}") from None
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"set_mode.reason: a non-empty string is required, got {reason!r}")
        if not isinstance(by, str) or not by.strip():
            raise ValueError(f"set_mode.by: a non-empty string is required, got {by!r}")
        now = self.clock()
        if until is not None:
            if new is not MonitoringMode.MAINTENANCE:
                raise ValueError("set_mode.until: only a MAINTENANCE mode has a planned end")
            if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until) or until <= now:
                raise ValueError(f"set_mode.until: must be a time after now ({now}), got {until!r}")
        with self._lock:
            change = self._change_mode(new, reason, by, now, until=until)
            if change is None and new is MonitoringMode.MAINTENANCE:
                self._maintenance_until = until
        return change

    def schedule_maintenance(self, start: float, end: float, reason: str = "", by: str = "") -> MaintenanceWindow:
        """Plan a MAINTENANCE window on the shared calendar (entered and left by ``tick``)."""
        return self.calendar.add(MaintenanceWindow(start, end, reason, by))

    def _change_mode(self, new: MonitoringMode, reason: str, by: str, now: float, *, until: float | None = None) -> ModeChange | None:
        old = self._mode
        if new is old:
            return None
        change = ModeChange(now, old, new, reason, by, until)
        self._mode, self._mode_since, self._mode_reason = new, now, reason
        self._maintenance_until = until if new is MonitoringMode.MAINTENANCE else None
        self._mode_history.append(change)
        del self._mode_history[:-MODE_HISTORY]
        logger.warning("aphrodite-sla: monitoring mode %s -> %s (%s, by %s)", old.value, new.value, reason, by)
        fp = fingerprint(MODE_ALERT)
        self.events.publish([MonitoringModeChanged(fp, episode_id(fp, now), now, old.value, new.value, reason)])
        return change

    def _warranted(self) -> MonitoringMode:
        """The mode the active violations call for on their own (used when maintenance ends)."""
        active = list(self._active.values())
        criticals = sum(1 for a in active if a.severity is ViolationSeverity.CRITICAL)
        if any(a.stall for a in active) or criticals >= 2:
            return MonitoringMode.EMERGENCY
        if any(a.severity.rank >= ViolationSeverity.MAJOR.rank for a in active):
            return MonitoringMode.HIGH_ALERT
        return MonitoringMode.NORMAL

    def _escalate_for(self, event: ViolationRaised | ViolationEscalated, now: float) -> None:
        mode = self._mode
        if mode is MonitoringMode.MAINTENANCE:
            return
        severity = event.violation.severity
        sla = event.violation.metric_name
        if isinstance(event, StallDetected) or event.violation.rule is ViolationRule.STALL:
            if mode is not MonitoringMode.EMERGENCY:
                self._change_mode(MonitoringMode.EMERGENCY, f"engine stalled ({sla})", "auto", now)
            return
        if severity is ViolationSeverity.CRITICAL and mode is MonitoringMode.HIGH_ALERT:
            self._change_mode(MonitoringMode.EMERGENCY, f"critical violation of {sla} while in high alert", "auto", now)
        elif severity.rank >= ViolationSeverity.MAJOR.rank and mode is MonitoringMode.NORMAL:
            self._change_mode(MonitoringMode.HIGH_ALERT, f"{severity.value} violation of {sla}", "auto", now)

    # -- events ----------------------------------------------------------------------------
    def handle(self, event: MonitorEvent) -> Alert | None:
        """Take one event from the stream (the subscription calls this; tests may too). Returns the
        alert recorded or folded, if the event was one."""
        at = float(event.occurred_at)
        with self._lock:
            if isinstance(event, ViolationResolved):  # keyed by (SLA, rule): a page and a violation of one SLA are apart
                self._active.pop((event.sla, event.violation.rule.value), None)
                if not self._active:
                    self._calm_since = at
                return None
            if isinstance(event, (ViolationRaised, ViolationEscalated)):
                v = event.violation
                self._active[(v.metric_name, v.rule.value)] = _Active(v.severity, isinstance(event, StallDetected) or v.rule is ViolationRule.STALL)
                self._calm_since = None
                self._escalate_for(event, at)
            candidate = _candidate(event)
            if candidate is None:
                return None
            alert, deliver = self._record(candidate, at)
            callbacks = list(self._callbacks) if deliver else []
        for callback in callbacks:
            try:
                callback(alert)
            except Exception as exc:  # one callback's failure must not break the monitor or the others
                with self._lock:
                    self.callback_errors += 1
                self.manager.self_metrics.error(
                    Component.SUBSCRIBER, f"alert callback {getattr(callback, '__qualname__', callback)!r} raised {type(exc).__name__}: {exc}",
                    exc_info=True,
                )
        return alert

    def _record(self, c: _Candidate, at: float) -> tuple[Alert, bool]:
        """Dedup and suppression under the lock; returns the alert and whether to deliver it."""
        mode = self._mode
        maintenance = mode is MonitoringMode.MAINTENANCE
        previous = self._dedup.get(c.key)
        within = previous is not None and at - previous.at < mode.policy.alert_cooldown_s and previous.alert_id in self._alerts
        if within and previous is not None and previous.maintenance == maintenance and c.severity.rank <= previous.rank and not c.escalation:
            folded = self._alerts[previous.alert_id]
            folded = replace(folded, count=folded.count + 1, last_seen=max(folded.last_seen, at))
            self._alerts[previous.alert_id] = folded
            self.duplicates += 1
            return folded, False
        escalated = c.escalation or (within and previous is not None and c.severity.rank > previous.rank)
        alert = Alert(
            self._next_alert_id, c.fingerprint, c.episode, c.name, c.sla, c.severity, c.message, escalated, mode, at, at,
            suppressed_reason=SuppressedReason.MAINTENANCE if maintenance else None,
        )
        self._next_alert_id += 1
        self._alerts[alert.alert_id] = alert
        while len(self._alerts) > MAX_ALERT_LOG:
            self._alerts.popitem(last=False)
        self._dedup[c.key] = _Delivery(alert.alert_id, at, c.severity.rank, maintenance)
        return alert, not maintenance

    # -- periodic work -----------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """The calendar, the health check when due, de-escalation, and pruning of the alert log."""
        at = self.clock() if now is None else float(now)
        window = self.calendar.active_at(at)
        with self._lock:
            if window is not None:
                if self._mode is not MonitoringMode.MAINTENANCE:
                    self._change_mode(MonitoringMode.MAINTENANCE, window.reason or "planned maintenance window", window.by or "calendar", at,
                                      until=window.end)
                elif self._maintenance_until is not None and self._maintenance_until < window.end:
                    self._maintenance_until = window.end  # an overlapping window extends a planned end
            elif self._mode is MonitoringMode.MAINTENANCE and self._maintenance_until is not None and at >= self._maintenance_until:
                self._calm_since = None if self._active else at
                self._change_mode(self._warranted(), "maintenance window ended", "calendar", at)
            if at - self._last_health_check >= self._mode.policy.health_check_interval_s:
                self._last_health_check = at
                self._reconcile(at)
            self._step_down(at)
            self._prune(at)

    def _reconcile(self, now: float) -> None:
        """The health check: take the active violations from the manager's latest snapshot (the
        authority; an event dropped from a full queue would otherwise leave the mode stuck)."""
        snap = self.manager.snapshot()
        if snap.sequence == 0:
            return
        active = {(v.metric_name, v.rule.value): _Active(v.severity, v.rule is ViolationRule.STALL) for v in snap.active_violations}
        if self._active and not active:
            self._calm_since = now
        elif active and not self._active:
            self._calm_since = None
        self._active = active  # severities too: the snapshot is never older than the events

    def _step_down(self, now: float) -> None:
        lower = STEP_DOWN.get(self._mode)
        calm = self._mode.policy.calm_period_s
        if lower is None or calm is None or self._active or self._calm_since is None:
            return
        calm_from = max(self._calm_since, self._mode_since)
        if now - calm_from >= calm:
            self._change_mode(lower, f"no active violation for {now - calm_from:.0f}s", "auto", now)

    def _prune(self, now: float) -> None:
        cutoff = now - ALERT_LOG_S
        while self._alerts:
            alert_id, alert = next(iter(self._alerts.items()))
            if alert.last_seen >= cutoff:
                break
            del self._alerts[alert_id]
        self._dedup = {k: d for k, d in self._dedup.items() if d.alert_id in self._alerts}

    # -- reading ---------------------------------------------------------------------------
    def alerts(self, since: float | None = None) -> list[Alert]:
        """The alert log (oldest first), optionally only alerts last seen at or after ``since``."""
        with self._lock:
            items = list(self._alerts.values())
        return items if since is None else [a for a in items if a.last_seen >= since]

    def get_production_summary(self, now: float | None = None) -> dict[str, Any]:
        """The seed's summary: mode, current health, components, and the day's alerts."""
        at = self.clock() if now is None else float(now)
        snap = self.manager.snapshot()
        compliance = [s.compliance_percent for s in snap.statuses.values() if s.compliance_percent is not None]
        active = snap.active_violations
        if snap.sequence == 0:
            status = "unknown"
        elif snap.engine_stalled or any(v.severity is ViolationSeverity.CRITICAL for v in active):
            status = "critical"
        elif active or snap.health.evaluation_failing:
            status = "degraded"
        else:
            status = "healthy"
        recovery = self._recovery_status()
        day = self.alerts(since=at - ALERT_LOG_S)
        by_severity = {s.value: 0 for s in AlertSeverity}
        for a in day:
            by_severity[a.severity.value] += 1
        with self._lock:
            mode, since, reason, until = self._mode, self._mode_since, self._mode_reason, self._maintenance_until
            callback_errors, duplicates, dropped = self.callback_errors, self.duplicates, dict(self._dropped_metrics)
        health = snap.health
        return {
            "monitoring_mode": mode.value,
            "mode_since": since,
            "mode_reason": reason,
            "maintenance_until": until,
            "current_health": {
                "status": status,
                "active_violations": len(active),
                "sla_compliance": round(sum(compliance) / len(compliance), 3) if compliance else None,
                "engine_stalled": snap.engine_stalled,
            },
            "component_status": {
                "sla_manager": {
                    "monitoring": self.manager.is_monitoring,
                    "slas": len(snap.thresholds) or len(self.manager.thresholds),
                    "evaluations": health.evaluations,
                    "last_evaluation_at": health.last_evaluation_at,
                    "evaluation_failing": health.evaluation_failing,
                    "errors_total": health.errors_total,
                    "dropped_metrics": dropped,
                },
                "production_monitor": {
                    "running": self.is_monitoring,
                    "callbacks": len(self._callbacks),
                    "callback_errors": callback_errors,
                    "duplicates_folded": duplicates,
                },
                "recovery_engine": recovery,
            },
            "total_alerts_24h": len(day),
            "suppressed_alerts_24h": sum(1 for a in day if a.suppressed_reason is not None),
            "alerts_by_severity": by_severity,
            "recent_alerts": [a.to_dict() for a in reversed(day[-RECENT_ALERTS:])],
            "recovery_success_rate": recovery.get("success_rate_percent") if recovery else None,
        }

    def _recovery_status(self) -> dict[str, Any] | None:
        if self.recovery_stats is None:
            return None
        try:
            return dict(self.recovery_stats())
        except Exception as exc:
            self.manager.self_metrics.error(Component.ENDPOINT, f"recovery_stats raised {type(exc).__name__}: {exc}")
            return {"error": f"{type(exc).__name__}: {exc}"}


def _candidate(event: MonitorEvent) -> _Candidate | None:
    """Map an event to what it would alert (None: not an alert; see the module docstring)."""
    fp, ep = event.fingerprint, event.episode
    if isinstance(event, StallDetected):
        v = event.violation
        return _Candidate(fp, fp, ep, STALL_ALERT, v.metric_name, AlertSeverity.CRITICAL, v.message, False)
    if isinstance(event, PageRaised):
        v = event.violation
        return _Candidate(fp, fp, ep, PAGE_ALERT, v.metric_name, AlertSeverity(v.severity.value), v.message, False)
    if isinstance(event, (ViolationRaised, ViolationEscalated)):
        v = event.violation
        severity = AlertSeverity(v.severity.value)
        return _Candidate(fp, fp, ep, VIOLATION_ALERT, v.metric_name, severity, v.message, isinstance(event, ViolationEscalated))
    if isinstance(event, AnomalyDetected):
        sla = event.status.metric_name
        message = f"{sla}: anomaly score {event.score:.2f} ({event.kind})"
        return _Candidate(fp, fp, ep, ANOMALY_ALERT, sla, AlertSeverity.WARNING, message, False)
    if isinstance(event, RegressionDetected):
        return _Candidate(fp, fp, ep, REGRESSION_ALERT, event.sla, AlertSeverity.WARNING, event.result.message, False)
    if isinstance(event, ResponseEscalated):
        message = f"{event.subject}: failing since {event.failing_since:.0f}, automated response did not help: {event.detail}"
        return _Candidate(fp, fp, ep, ESCALATION_ALERT, None, AlertSeverity.CRITICAL, message, False)
    if isinstance(event, DeploymentEvent):
        deployment_severity = _DEPLOYMENT_SEVERITY.get(event.kind)
        if deployment_severity is None:
            return None
        message = f"deployment {event.deployment_id} {event.kind}: {event.detail}"
        return _Candidate(f"{fp}:{event.kind}", fp, ep, DEPLOYMENT_ALERT, None, deployment_severity, message, False)
    return None


def create_production_monitor(
    manager: SLAManager | None = None,
    *,
    clock: Clock | None = None,
    events: EventStream | None = None,
    recovery_stats: RecoveryStats | None = None,
    calendar: MaintenanceCalendar | None = None,
) -> ProductionMonitor:
    """The seed's factory. Without ``manager``, one with the seed's seven SLAs is built on
    ``clock`` (default: the system clock) and ``events``, and owned by the monitor
    (``start_monitoring`` starts its evaluator); with one, its clock is the default."""
    owns = manager is None
    if manager is None:
        manager = create_production_sla_manager(clock=clock or system_clock, events=events)
    return ProductionMonitor(manager, clock=clock, events=events, recovery_stats=recovery_stats, calendar=calendar, start_manager=owns)


__all__ = ["AlertCallback", "ProductionMonitor", "RecoveryStats", "create_production_monitor"]
