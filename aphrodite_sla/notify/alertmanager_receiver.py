"""Alertmanager API v2: ``POST {url}/api/v2/alerts`` with one alert per incident change.

A firing alert is re-sent every ``resend_interval_seconds`` (the dispatcher asks
:meth:`resend` for the incidents whose last delivered change still fires): Alertmanager treats
an alert that is not refreshed as resolved after ``resolve_timeout`` (5 min by default), so the
interval must stay below it (default 60 s). A resolution is sent with ``endsAt``.

Severity is a label (Alertmanager routes on it), so a change of severity makes a new alert; the
previous label set is resolved in the same request (``send_after``), so one incident is one
active alert.
"""
from __future__ import annotations

from dataclasses import replace

from aphrodite_sla.notify.alert_format import alert, alert_labels
from aphrodite_sla.notify.model import IncidentFacts
from aphrodite_sla.notify.receiver import Receiver, post_json

DEFAULT_RESEND_S = 60.0


class AlertmanagerReceiver(Receiver):
    @property
    def resend_interval_s(self) -> float:
        return float(self.config.options.get("resend_interval_seconds", DEFAULT_RESEND_S))

    @property
    def endpoint(self) -> str:
        return str(self.config.options["url"]).rstrip("/") + "/api/v2/alerts"

    def send(self, facts: IncidentFacts) -> None:
        self.post([facts])

    def send_after(self, facts: IncidentFacts, previous: IncidentFacts | None) -> None:
        """Send ``facts``; when the incident's last delivered alert had other labels (its severity
        changed) and still fires, resolve that one in the same request."""
        batch = [facts]
        if previous is not None and not previous.resolving and alert_labels(previous) != alert_labels(facts):
            batch.insert(0, replace(previous, change="resolved", occurred_at=facts.occurred_at))
        self.post(batch)

    def post(self, firing_or_resolved: list[IncidentFacts]) -> None:
        alerts = [alert(f, resolved_at=f.occurred_at if f.resolving else None) for f in firing_or_resolved]
        post_json(self.endpoint, alerts, timeout_s=self.config.timeout_s, accept=(200,))
