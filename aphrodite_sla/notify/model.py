"""The data of notifications (no behaviour): one outbox row, its status, a delivery failure.

Why the row stores the event's facts and the receiver's *name* only: a secret (a Slack URL, a
PagerDuty routing key, an SMTP password) is resolved from the environment at send time, so the
outbox never holds one, and a rotated secret takes effect on the next attempt.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
RESOLVING_CHANGES = frozenset({"resolved", "closed"})
# Changes that may happen more than once at one escalation level (a second assignment, another
# reminder, a reopen after a resolve): their dedup key carries the change's time, so each
# occurrence notifies once; the others notify once per (fingerprint, change, level, receiver).
REPEATABLE_CHANGES = frozenset({"updated", "assigned", "reminder", "reopened", "mitigating"})


class NotificationStatus(str, enum.Enum):
    PENDING = "pending"  # waiting for its first or next attempt
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: attempts exhausted or a permanent refusal (HTTP 400)


@dataclass(frozen=True)
class IncidentFacts:
    """What a receiver needs of an ``IncidentChanged`` event, as stored in the outbox (JSON)."""

    fingerprint: str
    incident_id: str
    change: str
    title: str
    severity: str
    status: str
    incident_type: str
    occurred_at: float
    summary: str = ""
    started_at: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    escalation_level: int = 0
    actor: str = "system"
    url: str = ""

    @property
    def resolving(self) -> bool:
        return self.change in RESOLVING_CHANGES

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint, "incident_id": self.incident_id, "change": self.change, "title": self.title,
            "severity": self.severity, "status": self.status, "incident_type": self.incident_type,
            "occurred_at": self.occurred_at, "summary": self.summary, "started_at": self.started_at,
            "labels": dict(self.labels), "annotations": dict(self.annotations),
            "escalation_level": self.escalation_level, "actor": self.actor, "url": self.url,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IncidentFacts:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Notification:
    """One outbox row: ``facts`` to deliver to receiver ``receiver``."""

    id: int
    dedup_key: str
    receiver: str
    facts: IncidentFacts
    status: NotificationStatus
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: str = ""
    delivered_at: float | None = None


def dedup_key(facts: IncidentFacts, receiver: str) -> str:
    """(fingerprint, change, escalation level, receiver): a re-published change notifies once."""
    key = f"{facts.fingerprint}|{facts.change}|L{facts.escalation_level}|{receiver}"
    if facts.change in REPEATABLE_CHANGES:
        key += f"|{round(facts.occurred_at * 1000)}"
    return key


class DeliveryError(Exception):
    """A receiver did not take a notification. ``retryable``: False for a permanent refusal
    (a malformed request: retrying cannot help), True for timeouts, refusals and 429/5xx."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
