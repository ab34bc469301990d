"""Alertmanager API v2: ``POST {url}/api/v2/alerts`` with one alert per incident change.

A firing alert is re-sent every ``resend_interval_seconds`` (the dispatcher asks
:meth:`resend` for the incidents whose last delivered change still fires): Alertmanager treats
an alert that is not refreshed as resolved after ``resolve_timeout`` (5 min by default), so the
interval must stay below it (default 60 s). A resolution is sent with ``endsAt``.
"""
from __future__ import annotations

from aphrodite_sla.notify.alert_format import alert
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

    def post(self, firing_or_resolved: list[IncidentFacts]) -> None:
        alerts = [alert(f, resolved_at=f.occurred_at if f.resolving else None) for f in firing_or_resolved]
        post_json(self.endpoint, alerts, timeout_s=self.config.timeout_s, accept=(200,))
