"""An incident change as an Alertmanager alert (labels, annotations, times): shared by the
Alertmanager API v2 receiver and the webhook receiver (Alertmanager's v4 webhook payload).

Identity in Alertmanager is the label set, so labels hold only what names the incident
(alertname, incident id and type, severity, the incident's own labels); everything that changes
with each update (status, summary, escalation level, actor) is an annotation.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from aphrodite_sla.notify.model import IncidentFacts

SOURCE = "aphrodite-sla"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not set" for endsAt in webhook payloads
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def label_name(name: str) -> str:
    """A valid Prometheus label name (invalid characters become '_', a leading digit gets '_')."""
    clean = _LABEL_NAME.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


def alert_labels(facts: IncidentFacts) -> dict[str, str]:
    labels = {label_name(k): str(v) for k, v in facts.labels.items()}
    labels.update({
        "alertname": labels.get("alertname") or facts.incident_type or "SLAIncident",
        "incident_id": facts.incident_id,
        "incident_type": facts.incident_type,
        "severity": facts.severity,
        "source": SOURCE,
    })
    return labels


def alert_annotations(facts: IncidentFacts) -> dict[str, str]:
    annotations = {label_name(k): str(v) for k, v in facts.annotations.items()}
    annotations.update({
        "summary": facts.title,
        "description": facts.summary or facts.title,
        "status": facts.status,
        "change": facts.change,
        "escalation_level": str(facts.escalation_level),
        "actor": facts.actor,
    })
    return annotations


def alert(facts: IncidentFacts, *, resolved_at: float | None = None) -> dict[str, Any]:
    """One alert for ``POST /api/v2/alerts``: ``endsAt`` set when the incident resolved (the alert
    resolves now), absent while it fires (Alertmanager then expires it after ``resolve_timeout``
    unless re-sent)."""
    body: dict[str, Any] = {
        "labels": alert_labels(facts),
        "annotations": alert_annotations(facts),
        "startsAt": rfc3339(facts.started_at or facts.occurred_at),
    }
    if facts.url:
        body["generatorURL"] = facts.url
    if resolved_at is not None:
        body["endsAt"] = rfc3339(resolved_at)
    return body
