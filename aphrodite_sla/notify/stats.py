"""``NotificationStats``: what the metrics collector reads (a published copy, rebuilt by the
dispatcher off the engine's loop, so a scrape never queries the database)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReceiverStats:
    sent: int = 0  # delivered rows
    failed: int = 0  # rows given up on
    pending: int = 0  # rows waiting for a first or next attempt
    failed_attempts: int = 0  # attempts that failed (each retried or given up), since start
    resends: int = 0  # Alertmanager re-sends of firing alerts, since start


@dataclass(frozen=True)
class NotificationStats:
    receivers: dict[str, ReceiverStats] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # changes not enqueued, by reason
