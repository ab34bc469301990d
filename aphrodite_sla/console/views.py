"""What the pages show, gathered from the running parts into plain data (no HTML here).

Why apart from the pages: the same overview feeds the page and its live fragment, and a part
that is missing (recovery off, no monitor in a standalone console, no notifier, no RCA result)
becomes ``None`` here, which the pages turn into a sentence saying what to do."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aphrodite_sla.console.charts import Chart, Line, Marker
from aphrodite_sla.console.filters import MAX_LISTED, IncidentFilter
from aphrodite_sla.console.notifications import NotificationSource
from aphrodite_sla.incidents.model import Incident
from aphrodite_sla.sla.evaluation_history import EvaluationHistory, quantile_key

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.incidents.service import IncidentSystem
    from aphrodite_sla.recovery.service import RecoverySystem

logger = logging.getLogger(__name__)
CHART_BEFORE_S = 600.0  # drawn before the onset
CHART_AFTER_S = 300.0  # and after the resolution (or up to now)


@dataclass
class ConsoleSources:
    """The parts the console reads; any but the incidents may be absent."""

    incidents: IncidentSystem
    recovery: RecoverySystem | None = None
    snapshot: Callable[[], Any] | None = None
    series: EvaluationHistory | None = None
    notifications: NotificationSource | None = None
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class SlaRow:
    name: str
    value: float | None
    bound: float
    compliance: float | None
    violated: bool
    severity: str
    burn: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Overview:
    health: str  # healthy | degraded | critical | unknown
    health_reasons: tuple[str, ...]
    mode: str
    slas: tuple[SlaRow, ...]
    open_by_severity: dict[str, int]
    open_total: int
    mttd_minutes: float | None
    mtta_minutes: float | None
    mttr_minutes: float | None
    evaluated_at: float | None
    monitored: bool = False  # a monitor runs in this process (its snapshots are readable)


def overview(src: ConsoleSources) -> Overview:
    view = src.incidents.metrics_view()
    open_by = dict(src.incidents.store.counts()["open_by_severity"])
    snap = src.snapshot() if src.snapshot is not None else None
    reasons: list[str] = []
    slas: list[SlaRow] = []
    health = "unknown"
    evaluated_at = None
    if snap is not None and snap.evaluated_at is not None:
        evaluated_at = snap.evaluated_at
        for name, st in sorted(snap.statuses.items()):
            budget = snap.budgets.get(name)
            slas.append(SlaRow(name, st.value if st.value is not None and math.isfinite(st.value) else None, st.bound,
                               st.compliance_percent, st.violated, st.severity.value if st.severity is not None else "",
                               dict(budget.burn_rates) if budget is not None else {}))
        violated = [r for r in slas if r.violated]
        critical = [r for r in violated if r.severity == "critical"]
        stalled = snap.stall is not None and snap.stall.stalled
        if stalled:
            reasons.append("the engine is stalled")
        reasons += [f"{r.name} violated ({r.severity or 'violation'})" for r in violated]
        if snap.health.evaluation_failing:
            reasons.append("the evaluator's last run failed")
        health = "critical" if critical or stalled else "degraded" if violated or snap.health.evaluation_failing else "healthy"
    elif snap is not None:
        reasons.append("no evaluation yet")
    if open_by.get("critical"):
        health = "critical"
        reasons.append(f"{open_by['critical']} critical incident(s) open")
    elif health in ("healthy", "unknown") and sum(open_by.values()):
        health = "degraded" if health == "healthy" else health
    mode = src.recovery.view.metrics.monitoring_mode if src.recovery is not None else "—"
    return Overview(health, tuple(reasons), mode, tuple(slas), open_by, sum(open_by.values()), view.mttd_minutes, view.mtta_minutes,
                    view.mttr_minutes, evaluated_at, snap is not None)


def incidents(src: ConsoleSources, flt: IncidentFilter) -> list[Incident]:
    page = src.incidents.store.page(status=list(flt.statuses) or None, severity=list(flt.severities) or None, incident_type=None,
                                    since=flt.since, replica=None, limit=MAX_LISTED, offset=0)
    return flt.apply(page.items)


@dataclass(frozen=True)
class TimelineRow:
    at: float
    incident_id: str
    title: str
    severity: str
    kind: str
    actor: str
    message: str


def recent_activity(src: ConsoleSources, flt: IncidentFilter, limit: int = 100) -> list[TimelineRow]:
    rows: list[TimelineRow] = []
    for inc in incidents(src, flt)[:50]:
        full = src.incidents.store.get(inc.incident_id)
        if full is None:
            continue
        rows += [TimelineRow(t.at, full.incident_id, full.title, full.severity.value, t.kind, t.actor, t.message) for t in full.timeline]
    return sorted(rows, key=lambda r: r.at, reverse=True)[:limit]


@dataclass(frozen=True)
class Component:
    name: str
    state: str  # ok | degraded | down | off | unknown
    detail: str


def components(src: ConsoleSources) -> list[Component]:
    out: list[Component] = []
    snap = src.snapshot() if src.snapshot is not None else None
    if snap is None:
        out.append(Component("engine", "unknown", "this console runs apart from the engine: open the engine's /console for live state"))
    else:
        stall = snap.stall
        if stall is None:
            out.append(Component("engine", "unknown", "no stall check yet"))
        else:
            out.append(Component("engine", "down" if stall.stalled else "ok",
                                 f"{stall.state.value}; {stall.running_requests} running, {stall.in_flight_requests} in flight"))
        h = snap.health
        state = "degraded" if h.evaluation_failing else "ok" if h.evaluations else "unknown"
        driver = "" if h.evaluator_running else "; no background thread (the caller drives evaluations, as the simulator does)"
        out.append(Component("evaluator", state, f"{h.evaluations} evaluations, last took {h.last_duration_s * 1000:.1f} ms{driver}"
                             + (f"; last error: {h.last_error}" if h.last_error else "")))
    rec = src.recovery
    if rec is None:
        out.append(Component("recovery engine", "off", "recovery is not running in this process"))
    else:
        m = rec.view.metrics  # the published view: no recovery lock taken, nothing computed here
        out.append(Component("recovery engine", "off" if m.mode == "off" else "ok",
                             f"{m.mode}, {m.active} running, {m.approvals_pending} waiting for approval"))
        for name, b in sorted(m.breakers.items()):
            out.append(Component(f"breaker {name}", "ok" if b.state == "closed" else "degraded" if b.state == "half_open" else "down",
                                 b.state))
        out.append(Component("degradation", "ok" if m.degradation_name == "none" else "degraded", f"level {m.degradation_name}"))
        out.append(Component("monitoring mode", "ok", m.monitoring_mode))
    notifier = src.notifications
    out.append(Component("notifier / outbox", "ok" if notifier is not None else "off",
                         "delivering" if notifier is not None else "no notifier in this process (notifications are not configured here)"))
    try:
        counts = src.incidents.store.counts()
        total = sum(counts["by_status"].values())
        out.append(Component("incident store", "ok", f"{src.incidents.store.engine.dialect.name}: "
                             f"{total} incidents, {src.incidents.errors} errors"))
    except Exception as err:
        out.append(Component("incident store", "down", f"cannot read the store: {type(err).__name__}: {err}"))
    return out


@dataclass(frozen=True)
class ApprovalRow:
    request_id: str
    action: str
    detail: str
    requested_at: float
    expires_at: float
    linked: bool


def pending_approvals(src: ConsoleSources, incident: Incident) -> list[ApprovalRow]:
    """Actions waiting for a person: those recovery linked to this incident, and, while it is open,
    the engine's other pending ones (a hand-run action carries no incident, and the person on call
    must see every risky action waiting on this engine), from recovery's published view."""
    rows: list[ApprovalRow] = []
    if src.recovery is not None:
        for req in src.recovery.view.pending_approvals:
            if not incident.is_open and req.request_id not in incident.pending_approvals:
                continue
            rows.append(ApprovalRow(req.request_id, req.action.value, req.detail, req.requested_at, req.expires_at,
                                    req.request_id in incident.pending_approvals))
    known = {r.request_id for r in rows}
    rows += [ApprovalRow(r, "", "waits in the engine's process", incident.detected_at, math.nan, True)
             for r in incident.pending_approvals if r not in known]
    return rows


def executions(src: ConsoleSources, incident: Incident) -> list[Any]:
    """Recovery executions of this incident: named on its timeline, of its fingerprint or SLA, or
    run by hand while it was open (from recovery's published view: the page takes no lock)."""
    if src.recovery is None:
        return []
    ids = {str(t.data.get("execution_id")) for t in incident.timeline if t.data.get("execution_id")}
    sla = incident.labels.get("sla", "")
    end = incident.resolved_at or math.inf
    found = []
    for e in src.recovery.view.executions:
        manual = e.procedure_id.startswith("manual-") and incident.detected_at <= e.started_at <= end
        if e.execution_id in ids or (e.fingerprint and e.fingerprint == incident.fingerprint) or (sla and e.sla == sla) or manual:
            found.append(e)
    return sorted(found, key=lambda e: e.started_at)


CHARTS = (
    ("Request latency", "ms", "request_latency_ms"),
    ("Time to first token", "ms", "ttft_ms"),
)
GAUGES = (
    ("Error rate", "%", ("error_rate_percent", "request_error_percent", "error_rate")),
    ("KV-cache usage", "%", ("kv_cache_usage_percent",)),
    ("Throughput", "tokens/s", ("tokens_per_second",)),
)


def incident_charts(src: ConsoleSources, incident: Incident) -> list[Chart] | None:
    """The SLIs around the incident with onset, detection (and resolution) marked; None without
    the in-process series (a console apart from the engine)."""
    series = src.series
    if series is None:
        return None
    onset = min(incident.first_bad_at, incident.detected_at)
    last = series.last_at() or src.clock()
    end = min(last, (incident.resolved_at or last) + CHART_AFTER_S)
    start = onset - CHART_BEFORE_S
    markers = [Marker("onset", onset, "m-onset"), Marker("detected", incident.detected_at, "m-detected")]
    if incident.resolved_at is not None:
        markers.append(Marker("resolved", incident.resolved_at, "m-resolved"))
    charts = []
    for title, unit, name in CHARTS:
        lines = [Line(f"p{q}", series.between(quantile_key(name, q / 100), start, end), f"l{i}") for i, q in enumerate((50, 95, 99))]
        charts.append(Chart(f"{title} (p50, p95, p99)", unit, lines, markers, start, end))
    keys = set(series.keys())
    for title, unit, names in GAUGES:
        name = next((n for n in names if n in keys), names[0])
        charts.append(Chart(title, unit, [Line(name, series.between(name, start, end), "l1")], markers, start, end))
    return charts
