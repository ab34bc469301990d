"""The incidents REST API under ``/api/incidents`` and seed 004's escalation routes under
``/api/auto-recovery/escalation``, on recovery's router (bearer token for every change, compared in
constant time; no token configured -> changes refused; validated input, 4xx naming the field;
the OpenAPI description from the same route table).

Why the handlers may block: they read and write the store, so the ASGI middleware and the
standalone exporter call ``handle`` on a worker thread, never on the engine's event loop.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aphrodite_sla.export.endpoints import Response
from aphrodite_sla.incidents.model import IncidentSeverity, IncidentStatus, IncidentType, TransitionError
from aphrodite_sla.incidents.rules import EVENT_KINDS, DetectionRule, RuleError
from aphrodite_sla.recovery.api_routing import ApiError, ApiRequest, Field, Route, Router

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.incidents.service import IncidentSystem

INCIDENTS_PREFIX = "/api/incidents"
ESCALATION_PREFIX = "/api/auto-recovery/escalation"
MAX_PAGE = 500

_BY = Field(str, description="who does this (recorded in the audit trail)")
_SEVERITIES = tuple(s.value for s in IncidentSeverity)
_STATUSES = tuple(s.value for s in IncidentStatus)
_TYPES = tuple(t.value for t in IncidentType)
_LIST_QUERY = {
    "status": Field(str, description="comma-separated statuses, or 'open'"),
    "severity": Field(str, description="comma-separated severities"),
    "type": Field(str, choices=_TYPES),
    "since": Field(float, minimum=0, description="detected at or after (epoch seconds)"),
    "replica": Field(str),
    "limit": Field(int, minimum=1, maximum=MAX_PAGE, description="page size (default 50)"),
    "offset": Field(int, minimum=0, maximum=10_000_000),
}
_RULE_FIELDS = {
    "name": Field(str), "event_kind": Field(str, description=f"built-in kinds: {', '.join(EVENT_KINDS)}"),
    "threshold": Field(int, minimum=1, maximum=1_000_000), "window_seconds": Field(float, minimum=1, maximum=86_400),
    "severity": Field(str, choices=_SEVERITIES), "incident_type": Field(str, choices=_TYPES), "description": Field(str),
    "enabled": Field(bool), "rearm_ratio": Field(float, minimum=0, maximum=0.999), "by": _BY,
}


def _csv(value: str | None, allowed: tuple[str, ...], name: str) -> list[str] | None:
    if not value:
        return None
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ApiError(400, f"query: {name} {bad[0]!r} is not one of {', '.join(allowed)}")
    return items


class IncidentApi:
    """The routes of one ``IncidentSystem``."""

    def __init__(self, system: IncidentSystem, token: str | None) -> None:
        self.system = system
        self.router = Router(INCIDENTS_PREFIX, self._incident_routes(), token)
        self.escalation_router = Router(ESCALATION_PREFIX, self._escalation_routes(), token)

    def owns(self, path: str) -> bool:
        return self.router.owns(path) or self.escalation_router.owns(path)

    def handle(self, request: ApiRequest) -> Response:
        router = self.escalation_router if self.escalation_router.owns(request.path) else self.router
        return router.handle(request)

    def openapi_paths(self) -> dict[str, Any]:
        return {**self.router.openapi_paths(), **self.escalation_router.openapi_paths()}

    # -- routes -----------------------------------------------------------------------------------
    def _incident_routes(self) -> list[Route]:
        s = self.system
        m = s.manager

        def listing(p: dict[str, str], b: dict[str, Any]) -> Any:
            status = p.get("status")
            statuses = [st.value for st in IncidentStatus if st.is_open] if status == "open" else _csv(status, _STATUSES, "status")
            limit, offset = int(p.get("limit", 50)), int(p.get("offset", 0))
            page = s.store.page(status=statuses, severity=_csv(p.get("severity"), _SEVERITIES, "severity"), incident_type=p.get("type"),
                                since=float(p["since"]) if "since" in p else None, replica=p.get("replica"), limit=limit, offset=offset)
            nxt = offset + limit if offset + limit < page.total else None
            return {"incidents": [i.to_dict(full=False) for i in page.items], "total": page.total, "limit": limit, "offset": offset,
                    "next_offset": nxt}

        def create(p: dict[str, str], b: dict[str, Any]) -> Any:
            labels = b.get("labels", {})
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
                raise ApiError(400, "body: field 'labels' must map strings to strings")
            incident = m.create_manual(title=b["title"], severity=IncidentSeverity(b["severity"]),
                                       incident_type=IncidentType(b.get("type", IncidentType.SLA_VIOLATION.value)),
                                       description=b.get("description", ""), by=_by(b), labels=labels)
            return 201, incident.to_dict()

        def get(p: dict[str, str], b: dict[str, Any]) -> Any:
            return _found(s.store.get(p["id"]), p["id"]).to_dict()

        def timeline(p: dict[str, str], b: dict[str, Any]) -> Any:
            incident = _found(s.store.get(p["id"]), p["id"])
            return {"id": incident.incident_id, "timeline": [t.to_dict() for t in incident.timeline],
                    "audit": [a.to_dict() for a in incident.audit]}

        def postmortem(p: dict[str, str], b: dict[str, Any]) -> Any:
            incident = _found(s.store.get(p["id"]), p["id"])
            text = s.store.postmortem(incident.incident_id)
            if text is None:
                from aphrodite_sla.incidents.postmortem import render_postmortem

                text = render_postmortem(incident)
                return {"id": incident.incident_id, "stored": False, "markdown": text}
            return {"id": incident.incident_id, "stored": True, "markdown": text}

        def act(fn: Callable[[dict[str, str], dict[str, Any]], Any]) -> Callable[[dict[str, str], dict[str, Any]], Any]:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                try:
                    return fn(p, b).to_dict()
                except KeyError:
                    raise ApiError(404, f"unknown incident {p['id']!r}") from None
                except (TransitionError, ValueError) as err:
                    raise ApiError(409, str(err)) from None
            return handler

        def decide(approve: bool) -> Callable[[dict[str, str], dict[str, Any]], Any]:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                try:
                    return s.decide_approval(p["id"], p["request"], approve, _by(b), b.get("reason", ""))
                except KeyError as err:
                    raise ApiError(404, str(err).strip("'\"")) from None
                except (RuntimeError, ValueError) as err:
                    raise ApiError(409, str(err)) from None
            return handler

        def stats(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.statistics(float(p["since"]) if "since" in p else None)

        def export(p: dict[str, str], b: dict[str, Any]) -> Any:
            items = s.store.all_incidents(since=float(p["since"]) if "since" in p else None)
            return {"exported_at": s.clock(), "count": len(items), "incidents": [i.to_dict() for i in items]}

        def submit_event(p: dict[str, str], b: dict[str, Any]) -> Any:
            at = b.get("at")
            if at is not None and not math.isfinite(at):
                raise ApiError(400, "body: field 'at' must be finite")
            if not s.record_engine_event(b["kind"], at, int(b.get("count", 1))):
                raise ApiError(400, "body: the event could not be recorded")
            return 202, {"accepted": int(b.get("count", 1)), "kind": b["kind"]}

        def rules(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"rules": [dict(st.rule.to_dict(), count=st.count, armed=st.armed, fired_total=st.fired_total) for st in s.rules.states()]}

        def rule(p: dict[str, str], b: dict[str, Any]) -> Any:
            found = s.rules.get(p["name"])
            if found is None:
                raise ApiError(404, f"unknown rule {p['name']!r}")
            return found.to_dict()

        def create_rule(p: dict[str, str], b: dict[str, Any]) -> Any:
            fields = {k: v for k, v in b.items() if k != "by"}
            if "name" not in fields:
                raise ApiError(400, "body: field 'name' is required")
            if s.rules.get(fields["name"]) is not None:
                raise ApiError(409, f"rule {fields['name']!r} exists: update it with POST {INCIDENTS_PREFIX}/rules/{fields['name']}")
            try:
                created = s.rules.put(DetectionRule.from_dict(fields))
            except RuleError as err:
                raise ApiError(400, f"body: {err}") from None
            s.store.save_rule(created.name, created.to_dict(), s.clock(), _by(b))
            return 201, created.to_dict()

        def update_rule(changes: dict[str, Any] | None = None) -> Callable[[dict[str, str], dict[str, Any]], Any]:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                fields = changes if changes is not None else {k: v for k, v in b.items() if k not in ("by", "name")}
                try:
                    updated = s.rules.update(p["name"], fields)
                except KeyError:
                    raise ApiError(404, f"unknown rule {p['name']!r}") from None
                except RuleError as err:
                    raise ApiError(400, f"body: {err}") from None
                s.store.save_rule(updated.name, updated.to_dict(), s.clock(), _by(b))
                return updated.to_dict()
            return handler

        by = {"by": _BY}
        return [
            Route("GET", "/", listing, "List incidents (filters, pagination; newest first)", query=_LIST_QUERY),
            Route("POST", "/", create, "Report an incident by hand", mutating=True, body={
                "title": Field(str, required=True), "severity": Field(str, required=True, choices=_SEVERITIES),
                "type": Field(str, choices=_TYPES), "description": Field(str), "labels": Field(dict), "by": _BY}),
            Route("GET", "/stats", stats, "Statistics: counts, MTTD/MTTA/MTTR, escalations", query={"since": Field(float, minimum=0)}),
            Route("GET", "/export", export, "Every incident with its timeline and audit trail (JSON)", query={"since": Field(float, minimum=0)}),
            Route("POST", "/events", submit_event, "Submit a detection event (counted by the rules)", mutating=True, body={
                "kind": Field(str, required=True, description=f"built-in kinds: {', '.join(EVENT_KINDS)}"),
                "count": Field(int, minimum=1, maximum=10_000), "at": Field(float, minimum=0)}),
            Route("GET", "/rules", rules, "Detection rules with their current counts"),
            Route("POST", "/rules", create_rule, "Create a detection rule", mutating=True, body=_RULE_FIELDS),
            Route("GET", "/rules/{name}", rule, "One detection rule"),
            Route("POST", "/rules/{name}", update_rule(), "Update a detection rule", mutating=True, body=_RULE_FIELDS),
            Route("POST", "/rules/{name}/enable", update_rule({"enabled": True}), "Enable a rule", mutating=True, body=by),
            Route("POST", "/rules/{name}/disable", update_rule({"enabled": False}), "Disable a rule", mutating=True, body=by),
            Route("GET", "/{id}", get, "One incident with its timeline and audit trail"),
            Route("GET", "/{id}/timeline", timeline, "An incident's timeline and audit trail"),
            Route("GET", "/{id}/postmortem", postmortem, "The incident's post-mortem (markdown)"),
            Route("POST", "/{id}/acknowledge", act(lambda p, b: m.acknowledge(p["id"], _by(b))), "Acknowledge (stops escalation)",
                  mutating=True, body=by),
            Route("POST", "/{id}/assign", act(lambda p, b: m.assign(p["id"], b["assignee"], _by(b))), "Assign to someone",
                  mutating=True, body={"assignee": Field(str, required=True), "by": _BY}),
            Route("POST", "/{id}/status", act(lambda p, b: m.set_status(p["id"], IncidentStatus(b["status"]), _by(b), b.get("message", ""))),
                  "Move to another status (the lifecycle's transitions only)", mutating=True,
                  body={"status": Field(str, required=True, choices=_STATUSES), "message": Field(str), "by": _BY}),
            Route("POST", "/{id}/resolve", act(lambda p, b: s.resolve(p["id"], _by(b), b.get("notes", ""))), "Resolve (writes the post-mortem)",
                  mutating=True, body={"notes": Field(str), "by": _BY}),
            Route("POST", "/{id}/close", act(lambda p, b: m.close(p["id"], _by(b), b.get("notes", ""))), "Close a resolved incident",
                  mutating=True, body={"notes": Field(str), "by": _BY}),
            Route("POST", "/{id}/approvals/{request}/approve", decide(True), "Approve an action waiting on this incident", mutating=True,
                  body=by),
            Route("POST", "/{id}/approvals/{request}/deny", decide(False), "Deny an action waiting on this incident", mutating=True,
                  body={"reason": Field(str), "by": _BY}),
        ]

    def _escalation_routes(self) -> list[Route]:
        s = self.system
        m = s.manager

        def status(p: dict[str, str], b: dict[str, Any]) -> Any:
            open_incidents = s.store.open_incidents()
            return {**s.policy.status(), "open_incidents": len(open_incidents),
                    "escalated": len([i for i in open_incidents if i.escalation_level > 0]),
                    "unacknowledged": len([i for i in open_incidents if i.acknowledged_at is None]),
                    "escalations_by_level": {f"L{k}": v for k, v in sorted(s.escalations_by_level.items())}}

        def active(p: dict[str, str], b: dict[str, Any]) -> Any:
            items = [i for i in s.store.open_incidents() if i.escalation_level > 0]
            return {"active": [dict(i.to_dict(full=False), receivers=list(s.policy.receivers(i.escalation_level))) for i in items]}

        def act(fn: Callable[[str, str], Any]) -> Callable[[dict[str, str], dict[str, Any]], Any]:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                try:
                    return fn(p["id"], _by(b)).to_dict(full=False)
                except KeyError:
                    raise ApiError(404, f"unknown incident {p['id']!r}") from None
                except (TransitionError, ValueError) as err:
                    raise ApiError(409, str(err)) from None
            return handler

        return [
            Route("GET", "/status", status, "Escalation policy and counts"),
            Route("GET", "/active", active, "Open incidents that are escalated, with their level's receivers"),
            Route("POST", "/{id}/acknowledge", act(m.acknowledge), "Acknowledge an escalated incident (stops escalation)", mutating=True,
                  body={"by": _BY}),
            Route("POST", "/{id}/resolve", act(lambda i, by: s.resolve(i, by, "resolved through the escalation API")),
                  "Resolve an escalated incident", mutating=True, body={"by": _BY}),
        ]


def _by(body: dict[str, Any]) -> str:
    return str(body.get("by") or "api")


def _found(value: Any, incident_id: str) -> Any:
    if value is None:
        raise ApiError(404, f"unknown incident {incident_id!r}")
    return value


def combined_handler(incidents: IncidentApi | None, recovery: Callable[[ApiRequest], Response] | None) -> Callable[[ApiRequest], Response]:
    """One handler for the exporter: incidents' and escalation routes first, recovery's for the rest."""
    import json

    def handle(request: ApiRequest) -> Response:
        if incidents is not None and incidents.owns(request.path):
            return incidents.handle(request)
        if recovery is not None:
            return recovery(request)
        return Response(404, "application/json", json.dumps({"error": f"not found: {request.path}"}).encode())

    return handle
