"""The ``log`` receiver: seed 003's "log" channel (every severity), a line on the
``aphrodite_sla.notifications`` logger at a level that follows the severity."""
from __future__ import annotations

import logging

from aphrodite_sla.notify.model import IncidentFacts
from aphrodite_sla.notify.receiver import Receiver

notification_log = logging.getLogger("aphrodite_sla.notifications")
_LEVELS = {"low": logging.INFO, "medium": logging.WARNING, "high": logging.ERROR, "critical": logging.CRITICAL}


class LogReceiver(Receiver):
    def send(self, facts: IncidentFacts) -> None:
        notification_log.log(_LEVELS.get(facts.severity, logging.WARNING), "incident %s %s [%s, L%d]: %s",
                             facts.incident_id, facts.change, facts.severity, facts.escalation_level, facts.title)
