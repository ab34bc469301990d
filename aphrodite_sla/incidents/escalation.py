"""Escalation policy (seed 004's L1–L5, seed 000's failed-response rule) as a pure decision.

Why pure: ``decide(incident, now)`` says what is due — escalate to a level, remind, or nothing —
and the incident system carries it out through the manager (store, timeline, ``IncidentChanged``
with the level's receivers). The rules are then tested with plain values and a clock.

Rules: an open incident at or above ``min_severity`` goes to L1 when detected; each level's
timeout without acknowledgement moves it to the next; acknowledgement stops escalation; an
automatic response that failed escalates one level after ``failed_response_minutes`` (whatever
the severity); an acknowledged or top-level incident still open is reminded every
``reminder_minutes``.
"""
from __future__ import annotations

from dataclasses import dataclass

from aphrodite_sla.incidents.config import EscalationConfig, EscalationLevel
from aphrodite_sla.incidents.model import Incident, IncidentSeverity


@dataclass(frozen=True)
class EscalationStep:
    kind: str  # escalate | remind
    level: int
    receivers: tuple[str, ...]
    reason: str


class EscalationPolicy:
    def __init__(self, config: EscalationConfig) -> None:
        self.config = config
        self.levels: tuple[EscalationLevel, ...] = config.levels
        self.min_severity = IncidentSeverity(config.min_severity)

    def level(self, number: int) -> EscalationLevel | None:
        return self.levels[number - 1] if 1 <= number <= len(self.levels) else None

    def receivers(self, number: int) -> tuple[str, ...]:
        level = self.level(number)
        return level.receivers if level is not None else ()

    def decide(self, incident: Incident, now: float) -> EscalationStep | None:
        if not self.config.enabled or not incident.is_open:
            return None
        top = len(self.levels)
        current = incident.escalation_level
        failed_after = self.config.failed_response_minutes * 60.0
        if incident.response_failed_at is not None and now - incident.response_failed_at >= failed_after and current < top:
            nxt = current + 1
            return EscalationStep("escalate", nxt, self.receivers(nxt),
                                  f"an automatic response failed {failed_after / 60:g} min ago and the incident is still open")
        if incident.acknowledged_at is None and incident.severity.rank >= self.min_severity.rank:
            if current == 0:
                return EscalationStep("escalate", 1, self.receivers(1), f"{incident.severity.value} incident detected")
            level = self.level(current)
            since = incident.escalated_at if incident.escalated_at is not None else incident.detected_at
            if level is not None and current < top and now - since >= level.timeout_minutes * 60.0:
                return EscalationStep("escalate", current + 1, self.receivers(current + 1),
                                      f"not acknowledged within L{current} ({level.name}) timeout of {level.timeout_minutes:g} min")
            if current < top:
                return None
        remind_s = self.config.reminder_minutes * 60.0
        if remind_s > 0 and (incident.acknowledged_at is not None or current >= top) and current > 0:
            last = max(x for x in (incident.reminded_at, incident.escalated_at, incident.acknowledged_at, incident.detected_at) if x is not None)
            if now - last >= remind_s:
                open_min = (now - incident.detected_at) / 60
                return EscalationStep("remind", current, self.receivers(current), f"still {incident.status.value} after {open_min:.0f} min")
        return None

    def status(self) -> dict[str, object]:
        return {"enabled": self.config.enabled, "min_severity": self.min_severity.value,
                "failed_response_minutes": self.config.failed_response_minutes, "reminder_minutes": self.config.reminder_minutes,
                "levels": [{"level": lv.level, "name": lv.name, "timeout_minutes": lv.timeout_minutes, "receivers": list(lv.receivers)}
                           for lv in self.levels]}
