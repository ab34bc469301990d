"""A generic webhook that receives Alertmanager's v4 webhook payload (what Alertmanager itself
posts to its webhook receivers), so tools that already take Alertmanager webhooks take ours.
An optional bearer token (``bearer_token: "${VAR}"``) is sent in the Authorization header."""
from __future__ import annotations

from typing import Any

from aphrodite_sla.notify.alert_format import ZERO_TIME, alert_annotations, alert_labels, rfc3339
from aphrodite_sla.notify.model import IncidentFacts
from aphrodite_sla.notify.receiver import Receiver, post_json


def webhook_payload(facts: IncidentFacts, receiver: str) -> dict[str, Any]:
    status = "resolved" if facts.resolving else "firing"
    labels = alert_labels(facts)
    annotations = alert_annotations(facts)
    return {
        "version": "4",
        "groupKey": f'{{}}:{{incident_id="{facts.incident_id}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"incident_id": facts.incident_id},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": facts.url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(facts.started_at or facts.occurred_at),
            "endsAt": rfc3339(facts.occurred_at) if facts.resolving else ZERO_TIME,
            "generatorURL": facts.url,
            "fingerprint": facts.fingerprint,
        }],
    }


class WebhookReceiver(Receiver):
    def send(self, facts: IncidentFacts) -> None:
        token = self.optional_secret("bearer_token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        post_json(str(self.config.options["url"]), webhook_payload(facts, self.name), timeout_s=self.config.timeout_s, headers=headers)
