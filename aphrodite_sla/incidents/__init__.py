"""Incidents: the lifecycle model, the store (SQLite / PostgreSQL), detection rules, escalation,
post-mortems, the REST API and the CLI, reacting to the monitor's event stream."""
from aphrodite_sla.incidents.model import (
    Incident,
    IncidentSeverity,
    IncidentStatus,
    IncidentType,
    ResponseStage,
    TransitionError,
)

__all__ = ["Incident", "IncidentSeverity", "IncidentStatus", "IncidentType", "ResponseStage", "TransitionError"]
