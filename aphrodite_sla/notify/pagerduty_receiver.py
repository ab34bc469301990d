"""PagerDuty Events API v2: ``POST /v2/enqueue`` with the routing key (from the environment),
``event_action`` trigger / acknowledge / resolve and ``dedup_key`` = the incident's fingerprint,
so every change of one incident acts on one PagerDuty alert. 202 is accepted; 400 is permanent
(retrying a malformed event cannot help); 429, 5xx and network errors are retried."""
from __future__ import annotations

from typing import Any

from aphrodite_sla.notify.alert_format import SOURCE, rfc3339
from aphrodite_sla.notify.model import IncidentFacts
from aphrodite_sla.notify.receiver import Receiver, post_json

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


def event_action(change: str) -> str:
    if change == "acknowledged":
        return "acknowledge"
    if change in ("resolved", "closed"):
        return "resolve"
    return "trigger"


def pagerduty_event(facts: IncidentFacts, routing_key: str, source: str = SOURCE) -> dict[str, Any]:
    action = event_action(facts.change)
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": facts.fingerprint}
    if action == "trigger":
        event["payload"] = {
            "summary": f"[{facts.severity.upper()}] {facts.title}"[:1024],
            "source": source,
            "severity": _SEVERITY.get(facts.severity, "warning"),
            "timestamp": rfc3339(facts.occurred_at),
            "component": facts.labels.get("model_name", "") or "inference-engine",
            "group": facts.labels.get("replica", "") or SOURCE,
            "class": facts.incident_type,
            "custom_details": {"incident_id": facts.incident_id, "change": facts.change, "status": facts.status,
                               "escalation_level": facts.escalation_level, "summary": facts.summary, **dict(facts.annotations)},
        }
        if facts.url:
            event["links"] = [{"href": facts.url, "text": "Incident"}]
    return event


class PagerDutyReceiver(Receiver):
    def send(self, facts: IncidentFacts) -> None:
        url = str(self.config.options.get("url", EVENTS_URL))
        body = pagerduty_event(facts, self.secret("routing_key"), str(self.config.options.get("source", SOURCE)))
        post_json(url, body, timeout_s=self.config.timeout_s, accept=(202,))
