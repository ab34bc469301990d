"""``NotificationsConfig``: the ``incident_response.notifications`` section (seed 003's shape) and
environment variables, validated with errors that name the bad key.

Shape::

    notifications:
      slack:        {enabled: true, webhook_url: "${SLACK_WEBHOOK_URL}", notify_on_severity: [medium, high, critical]}
      pagerduty:    {enabled: true, routing_key: "${PAGERDUTY_ROUTING_KEY}", notify_on_severity: [critical]}
      email:        {enabled: false, smtp_server: smtp.example.com, smtp_port: 587, from_address: ..., to_addresses: [...]}
      alertmanager: {enabled: true, url: "http://127.0.0.1:9093", resend_interval_seconds: 60}
      webhook:      {enabled: true, url: "http://127.0.0.1:8080/hook"}
      receivers:    {oncall-slack: {type: slack, webhook_url: "${ONCALL_SLACK_URL}"}}   # more, by name
      routing:      {low: [log], medium: [slack, log], high: [slack, log], critical: [pagerduty, slack, log]}
      outbox:       {database_url: "sqlite:///incidents.db", max_attempts: 10, ...}

Why secrets must be ``${VAR}``: a secret (a Slack URL carries its token, a PagerDuty routing key,
an SMTP password) is resolved from the environment at send time, so it is never in a file, a
log line or an outbox row. A literal secret is refused. Without ``routing``, each receiver's
``notify_on_severity`` (defaults from seed 003: LOW → log, MEDIUM → Slack, HIGH → Slack,
CRITICAL → PagerDuty + Slack) decides.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aphrodite_sla.config import ConfigError
from aphrodite_sla.events import INCIDENT_CHANGES
from aphrodite_sla.notify.model import SEVERITIES

SECTION = "incident_response.notifications"
RECEIVER_KINDS = ("log", "slack", "pagerduty", "email", "alertmanager", "webhook")
_SECRET_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

# key -> (python types accepted, required, secret). Secrets must be written ``${VAR}``.
_OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], bool, bool]]] = {
    "log": {},
    "slack": {"webhook_url": ((str,), True, True), "channel": ((str,), False, False)},
    "pagerduty": {"routing_key": ((str,), True, True), "url": ((str,), False, False), "source": ((str,), False, False)},
    "email": {
        "smtp_server": ((str,), True, False), "smtp_port": ((int,), False, False), "from_address": ((str,), True, False),
        "to_addresses": ((list,), True, False), "starttls": ((bool,), False, False), "username": ((str,), False, False),
        "password": ((str,), False, True), "tls_ca_file": ((str,), False, False),
    },
    "alertmanager": {"url": ((str,), True, False), "resend_interval_seconds": ((int, float), False, False)},
    "webhook": {"url": ((str,), True, False), "bearer_token": ((str,), False, True)},
}
# The seed's aliases for the PagerDuty key (``api_key``/``service_key``): the Events API v2 calls it
# the routing key (an integration key); either alias is accepted and means that.
_ALIASES = {"pagerduty": {"service_key": "routing_key", "api_key": "routing_key"}}
_DEFAULT_SEVERITIES = {
    "log": SEVERITIES,
    "slack": ("medium", "high", "critical"),
    "pagerduty": ("critical",),
    "email": ("critical",),
    "alertmanager": SEVERITIES,
    "webhook": SEVERITIES,
}
# What each kind is told by default. PagerDuty pages: only what changes the page (an assignment or
# a reminder would re-trigger it); an email for every reminder is noise.
_DEFAULT_CHANGES = {
    "pagerduty": ("opened", "escalated", "reopened", "acknowledged", "resolved", "closed"),
    "email": ("opened", "escalated", "reopened", "resolved"),
}
_COMMON = {"enabled", "type", "notify_on_severity", "changes", "timeout_seconds"}


@dataclass(frozen=True)
class ReceiverConfig:
    name: str
    kind: str
    severities: tuple[str, ...]
    changes: tuple[str, ...] = INCIDENT_CHANGES
    timeout_s: float = 10.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def secret_env(self, key: str) -> str | None:
        """The environment variable that holds secret option ``key`` (None when not set)."""
        value = self.options.get(key)
        m = _SECRET_REF.match(value) if isinstance(value, str) else None
        return m.group(1) if m else None


@dataclass(frozen=True)
class OutboxConfig:
    database_url: str | None = None  # None: the engine the caller passes (the incident store's)
    max_attempts: int = 12
    initial_backoff_s: float = 2.0
    max_backoff_s: float = 300.0
    poll_interval_s: float = 0.5
    workers: int = 4


@dataclass(frozen=True)
class NotificationsConfig:
    receivers: tuple[ReceiverConfig, ...] = (ReceiverConfig("log", "log", SEVERITIES),)
    routing: Mapping[str, tuple[str, ...]] | None = None  # severity -> receiver names; None: by receiver
    outbox: OutboxConfig = OutboxConfig()

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)

    def route(self, severity: str) -> tuple[str, ...]:
        """The receivers a change of ``severity`` goes to when the event names none."""
        if self.routing is not None:
            return self.routing.get(severity, ())
        return tuple(r.name for r in self.receivers if severity in r.severities)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None, *, section: str = SECTION) -> NotificationsConfig:
        if m is None:
            return cls()
        if not isinstance(m, Mapping):
            raise ConfigError(f"{section}: must be a table, got {type(m).__name__}")
        receivers: list[ReceiverConfig] = []
        for key, value in m.items():
            if key in ("routing", "outbox", "receivers"):
                continue
            if key not in RECEIVER_KINDS:
                raise ConfigError(f"{section}.{key}: unknown key (receivers: {', '.join(RECEIVER_KINDS)}; also receivers, routing, outbox)")
            rc = _receiver(f"{section}.{key}", key, key, value)
            if rc is not None:
                receivers.append(rc)
        extra = m.get("receivers", {})
        if not isinstance(extra, Mapping):
            raise ConfigError(f"{section}.receivers: must be a table of name -> receiver")
        for name, value in extra.items():
            where = f"{section}.receivers.{name}"
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ConfigError(f"{where}: a receiver name is 1-64 letters, digits, '_', '.', '-'")
            if not isinstance(value, Mapping) or value.get("type") not in RECEIVER_KINDS:
                raise ConfigError(f"{where}.type: must be one of {', '.join(RECEIVER_KINDS)}")
            rc = _receiver(where, name, value["type"], value)
            if rc is not None:
                receivers.append(rc)
        if not any(r.name == "log" for r in receivers) and "log" not in m:
            receivers.insert(0, ReceiverConfig("log", "log", SEVERITIES))  # the seed logs every severity
        names = [r.name for r in receivers]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"{section}.receivers.{dup}: the name is used twice")
        routing = _routing(f"{section}.routing", m.get("routing"), set(names))
        outbox = _outbox(f"{section}.outbox", m.get("outbox", {}))
        return cls(tuple(receivers), routing, outbox)

    def with_env(self, env: Mapping[str, str] | None = None) -> NotificationsConfig:
        """Environment overrides: ``INCIDENT_DATABASE_URL`` (the outbox's database),
        ``ALERTMANAGER_URL`` (adds an Alertmanager receiver); ``SLACK_WEBHOOK_URL``
        and ``PAGERDUTY_ROUTING_KEY`` (seed 003's variables) add Slack / PagerDuty when the file
        configures neither."""
        env = os.environ if env is None else env
        receivers = list(self.receivers)
        kinds = {r.kind for r in receivers}
        outbox = self.outbox
        if env.get("INCIDENT_DATABASE_URL"):
            outbox = replace(outbox, database_url=env["INCIDENT_DATABASE_URL"])
        added = {
            "alertmanager": ("ALERTMANAGER_URL", {"url": env.get("ALERTMANAGER_URL", "")}),
            "slack": ("SLACK_WEBHOOK_URL", {"webhook_url": "${SLACK_WEBHOOK_URL}"}),
            "pagerduty": ("PAGERDUTY_ROUTING_KEY", {"routing_key": "${PAGERDUTY_ROUTING_KEY}"}),
        }
        for kind, (var, options) in added.items():
            if env.get(var) and kind not in kinds:
                rc = _receiver(var, kind, kind, options)
                if rc is not None:
                    receivers.append(rc)
        return NotificationsConfig(tuple(receivers), self.routing, outbox)


def _receiver(where: str, name: str, kind: str, value: Any) -> ReceiverConfig | None:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table, got {type(value).__name__}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: must be true or false, got {enabled!r}")
    if not enabled:
        return None
    schema = _OPTIONS[kind]
    aliases = _ALIASES.get(kind, {})
    options: dict[str, Any] = {}
    raw: Any
    for key, raw in value.items():
        if key in _COMMON:
            continue
        target = aliases.get(key, key)
        if target not in schema:
            known = sorted([*schema, *aliases, *_COMMON])
            raise ConfigError(f"{where}.{key}: unknown key for a {kind} receiver (known: {', '.join(known)})")
        types, _required, secret = schema[target]
        if isinstance(raw, bool) and bool not in types:
            raise ConfigError(f"{where}.{key}: must be {'/'.join(t.__name__ for t in types)}, got {raw!r}")
        if not isinstance(raw, types):
            raise ConfigError(f"{where}.{key}: must be {'/'.join(t.__name__ for t in types)}, got {type(raw).__name__}")
        if secret and not _SECRET_REF.match(str(raw)):
            raise ConfigError(f"{where}.{key}: a secret comes from the environment: write \"${{VARIABLE}}\", not the value")
        if isinstance(raw, str) and target in ("url", "webhook_url") and not secret and not raw.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.{key}: must be an http:// or https:// URL, got {raw!r}")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and (not math.isfinite(raw) or raw <= 0):
            raise ConfigError(f"{where}.{key}: must be a finite number > 0, got {raw!r}")
        if target == "to_addresses" and (not isinstance(raw, list) or not raw or not all(isinstance(a, str) and "@" in a for a in raw)):
            raise ConfigError(f"{where}.{key}: must be a non-empty list of e-mail addresses")
        options[target] = raw
    for key, (_types, required, _secret) in schema.items():
        if required and key not in options:
            raise ConfigError(f"{where}.{key}: required for a {kind} receiver")
    severities = _names(f"{where}.notify_on_severity", value.get("notify_on_severity", _DEFAULT_SEVERITIES[kind]), SEVERITIES)
    changes = _names(f"{where}.changes", value.get("changes", _DEFAULT_CHANGES.get(kind, INCIDENT_CHANGES)), INCIDENT_CHANGES)
    timeout = value.get("timeout_seconds", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or not 0 < timeout <= 300:
        raise ConfigError(f"{where}.timeout_seconds: must be a number in (0, 300], got {timeout!r}")
    return ReceiverConfig(name, kind, severities, changes, float(timeout), options)


def _names(where: str, raw: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: must be a list of {', '.join(allowed)}")
    out = []
    for item in raw:
        v = item.lower() if isinstance(item, str) else item
        if v not in allowed:
            raise ConfigError(f"{where}: {item!r} is not one of {', '.join(allowed)}")
        out.append(v)
    return tuple(out)


def _routing(where: str, raw: Any, names: set[str]) -> Mapping[str, tuple[str, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a table of severity -> list of receivers")
    out: dict[str, tuple[str, ...]] = {}
    for severity, targets in raw.items():
        if severity not in SEVERITIES:
            raise ConfigError(f"{where}.{severity}: not a severity ({', '.join(SEVERITIES)})")
        if isinstance(targets, str) or not isinstance(targets, (list, tuple)):
            raise ConfigError(f"{where}.{severity}: must be a list of receiver names")
        for t in targets:
            if t not in names:
                raise ConfigError(f"{where}.{severity}: {t!r} is not a configured, enabled receiver ({', '.join(sorted(names))})")
        out[severity] = tuple(targets)
    return out


def _outbox(where: str, raw: Any) -> OutboxConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a table")
    known = {"database_url": str, "max_attempts": int, "initial_backoff_seconds": (int, float),
             "max_backoff_seconds": (int, float), "poll_interval_seconds": (int, float), "workers": int}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(known)})")
        if isinstance(value, bool) or not isinstance(value, known[key]):  # type: ignore[arg-type]
            raise ConfigError(f"{where}.{key}: wrong type, got {value!r}")
        if key != "database_url" and (not math.isfinite(value) or value <= 0):
            raise ConfigError(f"{where}.{key}: must be > 0, got {value!r}")
    d = OutboxConfig()
    cfg = OutboxConfig(
        raw.get("database_url"), int(raw.get("max_attempts", d.max_attempts)),
        float(raw.get("initial_backoff_seconds", d.initial_backoff_s)), float(raw.get("max_backoff_seconds", d.max_backoff_s)),
        float(raw.get("poll_interval_seconds", d.poll_interval_s)), int(raw.get("workers", d.workers)),
    )
    if cfg.max_backoff_s < cfg.initial_backoff_s:
        raise ConfigError(f"{where}.max_backoff_seconds: must be >= initial_backoff_seconds")
    return cfg
