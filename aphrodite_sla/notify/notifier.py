"""``Notifier``: subscribes to ``IncidentChanged`` and turns each change into outbox rows, one
per receiver it must reach; the dispatcher delivers them.

Why enqueue on the subscriber's thread: the event stream gives this subscription its own thread,
so the database write (a few ms; an fsync on SQLite) never touches the evaluator or the engine's
loop, and when ``on_event`` returns the change is durable. Which receivers: the event's explicit
``receivers`` (an escalation level's set) when it names any, else routing by severity; then each
receiver's ``changes`` filter. Bad events (unknown severity, no fingerprint, an unknown receiver
name) are counted drops, never exceptions into the stream.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from aphrodite_sla.event_stream import EventStream, Subscription
from aphrodite_sla.events import INCIDENT_CHANGES, IncidentChanged
from aphrodite_sla.notify.alertmanager_receiver import AlertmanagerReceiver
from aphrodite_sla.notify.config import NotificationsConfig, ReceiverConfig
from aphrodite_sla.notify.dispatcher import Dispatcher
from aphrodite_sla.notify.email_receiver import EmailReceiver
from aphrodite_sla.notify.log_receiver import LogReceiver
from aphrodite_sla.notify.model import SEVERITIES, IncidentFacts
from aphrodite_sla.notify.outbox import Outbox, create_engine
from aphrodite_sla.notify.pagerduty_receiver import PagerDutyReceiver
from aphrodite_sla.notify.receiver import Receiver
from aphrodite_sla.notify.slack_receiver import SlackReceiver
from aphrodite_sla.notify.stats import NotificationStats
from aphrodite_sla.notify.webhook_receiver import WebhookReceiver

logger = logging.getLogger(__name__)
DEFAULT_DATABASE_URL = "sqlite:///aphrodite-sla-incidents.db"
# Waits between enqueue attempts (None: the last attempt). A change that still cannot be written is
# a counted drop; the incident manager re-publishes open incidents' last change at its next start.
ENQUEUE_RETRY_S: tuple[float | None, ...] = (0.2, 1.0, None)
RECEIVER_CLASSES: dict[str, type[Receiver]] = {
    "log": LogReceiver, "slack": SlackReceiver, "pagerduty": PagerDutyReceiver, "email": EmailReceiver,
    "alertmanager": AlertmanagerReceiver, "webhook": WebhookReceiver,
}


def make_receiver(config: ReceiverConfig, env: Mapping[str, str] | None = None) -> Receiver:
    return RECEIVER_CLASSES[config.kind](config, env)


def facts_of(event: IncidentChanged) -> IncidentFacts:
    return IncidentFacts(
        fingerprint=event.fingerprint, incident_id=event.incident_id, change=event.change, title=event.title,
        severity=event.severity.lower(), status=event.status, incident_type=event.incident_type, occurred_at=float(event.occurred_at),
        summary=event.summary, started_at=float(event.started_at), labels={str(k): str(v) for k, v in event.labels.items()},
        annotations={str(k): str(v) for k, v in event.annotations.items()}, escalation_level=int(event.escalation_level),
        actor=event.actor, url=event.url,
    )


class Notifier:
    def __init__(self, config: NotificationsConfig, events: EventStream | None, outbox: Outbox, receivers: Mapping[str, Receiver],
                 dispatcher: Dispatcher) -> None:
        self.config = config
        self.events = events
        self.outbox = outbox
        self.receivers = dict(receivers)
        self.dispatcher = dispatcher
        self._subscription: Subscription | None = None
        self._unknown_logged: set[str] = set()  # receiver names already warned about

    def start(self) -> None:
        """Subscribe to incident changes and start delivering (rows left by an earlier process too)."""
        if self.events is not None and self._subscription is None:
            self._subscription = self.events.subscribe(self.on_event, IncidentChanged, name="notifier")
        self.dispatcher.start()

    def deliveries(self, incident_id: str) -> list[dict[str, Any]]:
        """What was sent about ``incident_id``, to which receiver, and its delivery state (the
        console's notifications section reads this)."""
        out = []
        for n in self.outbox.of_incident(incident_id):
            receiver = self.receivers.get(n.receiver)
            out.append({"channel": receiver.config.kind if receiver is not None else n.receiver, "receiver": n.receiver,
                         "state": f"{n.facts.change}: {n.status.value}", "at": n.delivered_at or n.created_at,
                         "attempts": n.attempts, "detail": n.last_error})
        return out

    def stop(self, timeout: float = 10.0) -> None:
        if self.events is not None and self._subscription is not None:
            self.events.unsubscribe(self._subscription)
            self._subscription = None
        self.dispatcher.stop(timeout)

    def on_event(self, event: IncidentChanged) -> list[str]:
        """Enqueue ``event`` for its receivers (durable on return); returns the new dedup keys."""
        problem = _invalid(event)
        if problem:
            self._drop(problem, f"incident change dropped ({problem}): {event!r:.300}")
            return []
        facts = facts_of(event)
        targets = self.targets(facts, tuple(event.receivers))
        for delay in ENQUEUE_RETRY_S:
            try:
                new = self.outbox.enqueue(facts, targets)
            except Exception as exc:  # the database is briefly locked or unreachable: try again shortly
                if delay is None:
                    self._drop("enqueue_failed", f"incident {facts.incident_id} {facts.change} not enqueued: {type(exc).__name__}: {exc}")
                    return []
                time.sleep(delay)
                continue
            if new:
                self.dispatcher.wake()
            return new
        return []

    def targets(self, facts: IncidentFacts, explicit: tuple[str, ...] = ()) -> list[str]:
        """Explicit receivers (an escalation level's) override routing; those not configured are
        counted drops, and when none of them is configured the change goes by severity instead,
        so a level naming teams nobody configured still reaches someone."""
        names = [n for n in explicit if n in self.receivers]
        for name in explicit:
            if name not in self.receivers:  # counted every time, logged once per name (escalation repeats it)
                self.dispatcher.dropped["unknown_receiver"] += 1
                if name not in self._unknown_logged:
                    self._unknown_logged.add(name)
                    logger.warning("aphrodite-sla: escalation receiver %r is not configured (incident %s): its changes go by "
                                   "severity routing; configure it under incident_response.notifications.receivers", name,
                                   facts.incident_id)
        if not names:
            names = list(self.config.route(facts.severity))
        return [n for n in names if n in self.receivers and self.receivers[n].wants(facts.change)]

    def _drop(self, reason: str, message: str) -> None:
        self.dispatcher.dropped[reason] += 1
        logger.warning("aphrodite-sla: %s", message)

    @property
    def stats(self) -> NotificationStats:
        return self.dispatcher.stats

    def wait_delivered(self, timeout: float = 10.0) -> bool:
        """Wait until no row is pending (tests, the demo, a graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(s.pending for s in self.dispatcher.refresh_stats().receivers.values()):
                return True
            self.dispatcher.wake()
            time.sleep(0.05)
        return False


def _invalid(event: IncidentChanged) -> str:
    if not event.fingerprint or not event.incident_id:
        return "missing_identity"
    if not isinstance(event.severity, str) or event.severity.lower() not in SEVERITIES:
        return "bad_severity"
    if event.change not in INCIDENT_CHANGES:
        return "bad_change"
    for t in (event.occurred_at, event.started_at):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t != t or t in (float("inf"), float("-inf")) or t < 0:
            return "bad_time"
    if isinstance(event.escalation_level, bool) or not isinstance(event.escalation_level, int) or event.escalation_level < 0:
        return "bad_escalation_level"
    if not isinstance(event.labels, Mapping) or not isinstance(event.annotations, Mapping):
        return "bad_labels"
    if isinstance(event.receivers, str) or not all(isinstance(r, str) for r in event.receivers):
        return "bad_receivers"
    return ""


def build_notifier(config: NotificationsConfig, events: EventStream | None, engine_or_url: sa.Engine | str | None = None, *,
                   env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time) -> Notifier:
    """The notifier for ``config``: the outbox in ``engine_or_url`` (the incident store's engine or
    URL; else ``config.outbox.database_url``; else a SQLite file in the working directory), its
    receivers and dispatcher. Call ``start()`` to subscribe and deliver, ``stop()`` at shutdown."""
    target = engine_or_url if engine_or_url is not None else (config.outbox.database_url or DEFAULT_DATABASE_URL)
    engine = create_engine(target) if isinstance(target, str) else target
    receivers = {r.name: make_receiver(r, env if env is not None else None) for r in config.receivers}
    lease_s = max((r.timeout_s for r in config.receivers), default=10.0) + 5.0
    outbox = Outbox(engine, clock=clock, lease_s=lease_s)
    dispatcher = Dispatcher(outbox, receivers, config.outbox, clock=clock)
    return Notifier(config, events, outbox, receivers, dispatcher)


__all__ = ["Notifier", "build_notifier", "facts_of", "make_receiver"]
