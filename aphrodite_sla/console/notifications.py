"""The notifications section of the incident page, through a small protocol.

Why a protocol: the notifier (``aphrodite_sla.notify``) is built elsewhere and may be absent; the
console shows what was sent and its delivery state when an object with ``deliveries(incident_id)``
is attached to the incident system (as ``notifier`` or ``outbox``), and says so plainly when none is."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    channel: str  # slack, pagerduty, webhook, email, alertmanager ...
    receiver: str
    state: str  # pending, sent, failed, retrying, dropped
    at: float | None
    attempts: int = 0
    detail: str = ""


@runtime_checkable
class NotificationSource(Protocol):
    def deliveries(self, incident_id: str) -> Sequence[Any]: ...


def find_source(incidents: Any) -> NotificationSource | None:
    for name in ("notifier", "outbox", "notifications"):
        candidate = getattr(incidents, name, None)
        if isinstance(candidate, NotificationSource):
            return candidate
    return None


def deliveries_of(source: NotificationSource | None, incident_id: str) -> list[Delivery] | None:
    """The incident's deliveries (None: no notifier in this process). Records are read by
    attribute or key, so the notifier's own record type needs no adapter."""
    if source is None:
        return None
    try:
        raw = list(source.deliveries(incident_id))
    except Exception:  # a broken notifier must not take the incident page down
        logger.warning("aphrodite-sla console: the notifier's deliveries failed", exc_info=True)
        return []
    out = []
    for item in raw:
        def get(name: str, default: Any = "", item: Any = item) -> Any:
            return item.get(name, default) if isinstance(item, dict) else getattr(item, name, default)
        at = get("at", None) or get("updated_at", None) or get("created_at", None)
        out.append(Delivery(str(get("channel")), str(get("receiver")), str(get("state") or get("status")),
                            float(at) if isinstance(at, (int, float)) else None, int(get("attempts", 0) or 0), str(get("detail") or get("error"))))
    return out
