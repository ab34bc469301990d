"""The notification demo (``aphrodite-sla notify demo``, run by ``make demo``): local Slack,
PagerDuty, webhook and SMTP receivers on 127.0.0.1, a notifier with its outbox in a SQLite file,
and incident life cycles published as ``IncidentChanged`` events — exactly what the incident
manager publishes — with the Slack receiver down for the first seconds, so the table shows
retries and one delivery per receiver and change.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import IncidentChanged
from aphrodite_sla.notify.config import NotificationsConfig
from aphrodite_sla.notify.local_receivers import LocalReceivers
from aphrodite_sla.notify.model import Notification
from aphrodite_sla.notify.notifier import build_notifier


@dataclass(frozen=True)
class DemoOutcome:
    rows: list[Notification]
    slack: int
    pagerduty: int
    webhook: int
    emails: int


def _change(incident: str, change: str, severity: str, t: float, title: str, level: int = 0) -> IncidentChanged:
    return IncidentChanged(
        fingerprint=f"demo-{incident}", episode=incident, occurred_at=t, incident_id=incident, change=change, title=title,
        severity=severity, status={"opened": "detected", "resolved": "resolved"}.get(change, "investigating"),
        incident_type="performance_degradation", summary=title, started_at=t, labels={"model_name": "demo-model"},
        escalation_level=level,
    )


def run_notification_demo(database: Path, *, slack_down_s: float = 2.0, out: Callable[[str], None] = print) -> DemoOutcome:
    for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):  # a fresh outbox each run: the
        stale.unlink(missing_ok=True)  # demo's dedup keys repeat, and an old row would hide a new delivery
    receivers = LocalReceivers.start()
    receivers.slack.stop()  # Slack is down at first: its notifications wait in the outbox and are retried
    section = {**receivers.notifications_config(),
               "outbox": {"initial_backoff_seconds": 0.3, "max_backoff_seconds": 1.0, "poll_interval_seconds": 0.05}}
    events = EventStream()
    notifier = build_notifier(NotificationsConfig.from_mapping(section), events, f"sqlite:///{database}", env=receivers.env)
    notifier.start()
    try:
        now = time.time()
        events.publish([
            _change("INC-DEMO-1", "opened", "high", now, "TTFT p95 above its SLA"),
            _change("INC-DEMO-2", "opened", "critical", now, "engine stalled with requests in flight"),
            _change("INC-DEMO-2", "escalated", "critical", now + 1, "engine stalled with requests in flight", level=2),
            _change("INC-DEMO-2", "acknowledged", "critical", now + 2, "engine stalled with requests in flight", level=2),
        ])
        time.sleep(slack_down_s)
        receivers.slack.start()
        events.publish([_change("INC-DEMO-1", "resolved", "high", now + 3, "TTFT p95 above its SLA"),
                        _change("INC-DEMO-2", "resolved", "critical", now + 4, "engine stalled with requests in flight", level=2)])
        events.drain(10)
        delivered = notifier.wait_delivered(30)
        rows = notifier.outbox.notifications()
    finally:
        notifier.stop()
        receivers.stop()
    out(f"notifications (outbox {database}):")
    out(f"  {'incident':<11} {'change':<13} {'receiver':<10} {'status':<10} attempts")
    for n in rows:
        out(f"  {n.facts.incident_id:<11} {n.facts.change:<13} {n.receiver:<10} {n.status.value:<10} {n.attempts}")
    outcome = DemoOutcome(rows, len(receivers.slack.bodies()), len(receivers.pagerduty.bodies()), len(receivers.webhook.bodies()),
                          len(receivers.smtp.messages))
    out(f"local receivers got: Slack {outcome.slack}, PagerDuty {outcome.pagerduty}, webhook {outcome.webhook}, e-mail {outcome.emails}"
        + ("" if delivered else "  (some still pending)"))
    return outcome
