"""``incident_response:`` — the seed's configuration shape (detection, remediation, notifications,
escalation, dashboard, retention), read from the same file as the monitor and validated here.

Why a parser of our own over the raw mapping: the monitor's ``SLAConfig`` keeps the section raw (so
the shared loader stays small), and errors must name the full key
(``incident_response.escalation.levels[2].timeout_minutes``). ``notifications`` stays a raw mapping:
the notifications package validates it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aphrodite_sla.incidents.store import DEFAULT_PATH, Retention

ROOT = "incident_response"


class IncidentConfigError(ValueError):
    """A bad ``incident_response`` value; the message names the key."""


@dataclass(frozen=True)
class EscalationLevel:
    """One level of the policy: after ``timeout_minutes`` without acknowledgement at this level,
    the incident moves to the next; ``receivers`` are the notification receivers of the level."""

    level: int
    name: str
    timeout_minutes: float
    receivers: tuple[str, ...]


# seed 004: L1 monitoring 15 min, L2 support 30, L3 engineering 45, L4 management 60, L5 executive 90
DEFAULT_LEVELS = (
    EscalationLevel(1, "monitoring", 15.0, ("monitoring",)),
    EscalationLevel(2, "support", 30.0, ("support",)),
    EscalationLevel(3, "engineering", 45.0, ("engineering",)),
    EscalationLevel(4, "management", 60.0, ("management",)),
    EscalationLevel(5, "executive", 90.0, ("executive",)),
)


@dataclass(frozen=True)
class EscalationConfig:
    enabled: bool = True
    levels: tuple[EscalationLevel, ...] = DEFAULT_LEVELS
    failed_response_minutes: float = 30.0  # seed 000: a failed automatic response escalates after this
    reminder_minutes: float = 30.0  # an acknowledged, still open incident is re-notified this often (0: never)
    min_severity: str = "high"  # incidents below this severity are not escalated


@dataclass(frozen=True)
class DetectionConfig:
    check_interval_seconds: float = 60.0
    event_retention_seconds: float = 3600.0
    max_events: int = 10_000
    flap_window_seconds: float = 600.0  # a resolved incident that fires again within this is reopened
    correlation_window_seconds: float = 300.0  # an open incident of the same type this recent absorbs a new signal
    group_window_seconds: float = 120.0  # an open incident of any type this recent absorbs a new signal (one fault, many signals)
    # anomaly and regression warnings join an open incident of their SLA; true: they open one too.
    # Why off: a warning says "something changed", not "users are hurt" (issue 14: no incidents on a
    # healthy day); the pages and violations open incidents.
    open_on_warnings: bool = False
    rules: Mapping[str, Any] = field(default_factory=dict)  # rule name -> overrides (threshold, window_seconds, enabled...)


@dataclass(frozen=True)
class RemediationConfig:
    safe_actions_only: bool = True
    require_approval_for: tuple[str, ...] = ("restart_service", "rollback")
    approval_timeout_seconds: float = 300.0


@dataclass(frozen=True)
class DashboardConfig:
    enabled: bool = True
    port: int = 8080
    refresh_interval_seconds: float = 30.0
    read_only_viewing: bool = True  # the console's pages without signing in (actions always need the token)


@dataclass(frozen=True)
class IncidentConfig:
    enabled: bool = True
    auto_remediation: bool = True
    auto_resolution: bool = False  # the seed's default: a person resolves
    auto_resolve_after_seconds: float = 300.0  # SLAs back within bounds this long -> resolved (auto_resolution)
    database_url: str = ""  # "" -> SQLite at store_path; postgresql+psycopg://... for a fleet
    store_path: str = DEFAULT_PATH
    replica: str = ""
    postmortem_on_resolve: bool = True
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    remediation: RemediationConfig = field(default_factory=RemediationConfig)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    retention: Retention = field(default_factory=Retention)
    notifications: Mapping[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        from aphrodite_sla.incidents.store import sqlite_url

        return self.database_url or sqlite_url(self.store_path)


def _number(where: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise IncidentConfigError(f"{where}: must be a number in [{low:g}, {high:g}], got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise IncidentConfigError(f"{where}: must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise IncidentConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise IncidentConfigError(f"{where}: must be a string, got {value!r}")
    return value


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise IncidentConfigError(f"{where}: must be a list of names, got {value!r}")
    return tuple(value)


def _section(where: str, value: Any, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise IncidentConfigError(f"{where}: must be a table, got {type(value).__name__}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise IncidentConfigError(f"{where}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
    return value


def parse_incident_config(raw: Mapping[str, Any] | None) -> IncidentConfig:
    """The ``incident_response`` table as an ``IncidentConfig`` (defaults for what is absent)."""
    if not raw:
        return IncidentConfig()
    top = _section(ROOT, raw, {"enabled", "auto_remediation", "auto_resolution", "auto_resolve_after_seconds", "database_url",
                               "store_path", "replica", "postmortem_on_resolve", "detection", "remediation", "notifications",
                               "escalation", "dashboard", "retention"})
    out: dict[str, Any] = {}
    for key in ("enabled", "auto_remediation", "auto_resolution", "postmortem_on_resolve"):
        if key in top:
            out[key] = _bool(f"{ROOT}.{key}", top[key])
    if "auto_resolve_after_seconds" in top:
        out["auto_resolve_after_seconds"] = _number(f"{ROOT}.auto_resolve_after_seconds", top["auto_resolve_after_seconds"], 0, 7 * 86400)
    for key in ("database_url", "store_path", "replica"):
        if key in top:
            out[key] = _str(f"{ROOT}.{key}", top[key])
    if "detection" in top:
        where = f"{ROOT}.detection"
        d = _section(where, top["detection"], {"check_interval_seconds", "event_retention_seconds", "max_events", "flap_window_seconds",
                                           "correlation_window_seconds", "group_window_seconds", "rules", "open_on_warnings"})
        det: dict[str, Any] = {}
        if "open_on_warnings" in d:
            det["open_on_warnings"] = _bool(f"{where}.open_on_warnings", d["open_on_warnings"])
        for key, (low, high) in {"check_interval_seconds": (0.1, 86400), "event_retention_seconds": (1, 7 * 86400),
                                 "flap_window_seconds": (0, 86400), "correlation_window_seconds": (0, 86400),
                                 "group_window_seconds": (0, 86400)}.items():
            if key in d:
                det[key] = _number(f"{where}.{key}", d[key], low, high)
        if "max_events" in d:
            det["max_events"] = _number(f"{where}.max_events", d["max_events"], 1, 10_000_000, integer=True)
        if "rules" in d:
            if not isinstance(d["rules"], Mapping):
                raise IncidentConfigError(f"{where}.rules: must be a table of rule name -> settings")
            det["rules"] = dict(d["rules"])
        out["detection"] = DetectionConfig(**det)
    if "remediation" in top:
        where = f"{ROOT}.remediation"
        r = _section(where, top["remediation"], {"safe_actions_only", "require_approval_for", "approval_timeout_seconds"})
        rem: dict[str, Any] = {}
        if "safe_actions_only" in r:
            rem["safe_actions_only"] = _bool(f"{where}.safe_actions_only", r["safe_actions_only"])
        if "require_approval_for" in r:
            rem["require_approval_for"] = _strings(f"{where}.require_approval_for", r["require_approval_for"])
            from aphrodite_sla.recovery.model import parse_action

            for k, name in enumerate(rem["require_approval_for"]):
                try:
                    parse_action(name)
                except ValueError as err:
                    raise IncidentConfigError(f"{where}.require_approval_for[{k}]: {err}") from None
        if "approval_timeout_seconds" in r:
            rem["approval_timeout_seconds"] = _number(f"{where}.approval_timeout_seconds", r["approval_timeout_seconds"], 1, 86400)
        out["remediation"] = RemediationConfig(**rem)
    if "notifications" in top:
        if not isinstance(top["notifications"], Mapping):
            raise IncidentConfigError(f"{ROOT}.notifications: must be a table")
        out["notifications"] = dict(top["notifications"])
    if "escalation" in top:
        out["escalation"] = _escalation(top["escalation"])
    if "dashboard" in top:
        where = f"{ROOT}.dashboard"
        b = _section(where, top["dashboard"], {"enabled", "port", "refresh_interval_seconds", "read_only_viewing"})
        dash: dict[str, Any] = {}
        for key in ("enabled", "read_only_viewing"):
            if key in b:
                dash[key] = _bool(f"{where}.{key}", b[key])
        if "port" in b:
            dash["port"] = _number(f"{where}.port", b["port"], 0, 65535, integer=True)
        if "refresh_interval_seconds" in b:
            dash["refresh_interval_seconds"] = _number(f"{where}.refresh_interval_seconds", b["refresh_interval_seconds"], 1, 3600)
        out["dashboard"] = DashboardConfig(**dash)
    if "retention" in top:
        where = f"{ROOT}.retention"
        t = _section(where, top["retention"], {"resolved_incidents_days", "event_history_days", "postmortems_days"})
        out["retention"] = Retention(**{k: _number(f"{where}.{k}", v, 0.001, 36500) for k, v in t.items()})
    return IncidentConfig(**out)


def _escalation(raw: Any) -> EscalationConfig:
    where = f"{ROOT}.escalation"
    e = _section(where, raw, {"enabled", "levels", "failed_response_minutes", "reminder_minutes", "min_severity"})
    out: dict[str, Any] = {}
    if "enabled" in e:
        out["enabled"] = _bool(f"{where}.enabled", e["enabled"])
    for key in ("failed_response_minutes", "reminder_minutes"):
        if key in e:
            out[key] = _number(f"{where}.{key}", e[key], 0, 7 * 1440)
    if "min_severity" in e:
        value = _str(f"{where}.min_severity", e["min_severity"]).lower()
        if value not in ("low", "medium", "high", "critical"):
            raise IncidentConfigError(f"{where}.min_severity: must be low, medium, high or critical, got {value!r}")
        out["min_severity"] = value
    if "levels" in e:
        levels = e["levels"]
        if not isinstance(levels, list) or not levels:
            raise IncidentConfigError(f"{where}.levels: must be a non-empty list of levels")
        parsed = []
        for i, item in enumerate(levels):
            at = f"{where}.levels[{i}]"
            lv = _section(at, item, {"name", "timeout_minutes", "receivers"})
            if "timeout_minutes" not in lv:
                raise IncidentConfigError(f"{at}.timeout_minutes: required")
            parsed.append(EscalationLevel(i + 1, _str(f"{at}.name", lv.get("name", f"L{i + 1}")),
                                          _number(f"{at}.timeout_minutes", lv["timeout_minutes"], 0.01, 7 * 1440),
                                          _strings(f"{at}.receivers", lv.get("receivers", []))))
        out["levels"] = tuple(parsed)
    return EscalationConfig(**out)
