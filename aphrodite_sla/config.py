"""Configuration for zero-code use inside an engine: a file named by ``APHRODITE_SLA_CONFIG`` (TOML or
JSON) and ``APHRODITE_SLA_*`` environment variables (which win over the file).

Why both: a plugin loaded by ``vllm serve`` gets no arguments of ours, so the environment is the
only channel; a file holds what does not fit in variables (custom SLAs).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aphrodite_sla.sla.defaults import default_thresholds, serving_thresholds
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.threshold import SLAThreshold
from aphrodite_sla.sla.warning_rules import WarningRulesConfig

ENV_FILE = "APHRODITE_SLA_CONFIG"
ENV_PREFIX = "APHRODITE_SLA_"


class ConfigError(ValueError):
    """A configuration value or file is malformed; the message names the source and the field."""


# Accepted ranges of the scalar settings: (low, high) inclusive. Why bounded: a zero-code install
# reads these from the environment, and a slip (1e-9 s between evaluations, a 10^9-minute window)
# must be an error naming the setting, not a CPU or memory exhaustion.
RANGES: dict[str, tuple[float, float]] = {
    "evaluation_interval_s": (0.5, 3600.0),
    "ttft_objective_ms": (1.0, 3_600_000.0),
    "tpot_objective_ms": (0.01, 600_000.0),
    "stall_after_s": (1.0, 86_400.0),
    "system_interval_s": (0.5, 3600.0),
    "recovery_cooldown_s": (0.0, 86_400.0),
    "recovery_approval_timeout_s": (1.0, 86_400.0),
    "recovery_max_concurrent": (1, 100),
    "recovery_root_cause_min_confidence": (0.0, 1.0),
    "fleet_replicas": (1, 100_000),
    "max_replicas": (0, 100_000),
    "memory_threshold_percent": (1.0, 100.0),
    "cpu_threshold_percent": (1.0, 100.0),
    "disk_threshold_percent": (1.0, 100.0),
}

# The built-in SLAs a zero-code install runs: "serving" (TTFT, time per output token and engine
# errors: sound for any LLM deployment) or "seed" (the specification's seven SLAs).
SLA_SETS = ("serving", "seed")
# What automated recovery does: nothing, say what it would do (dry run), or act on the engine.
RECOVERY_MODES = ("off", "advisory", "act")
# The lowest violation severity that activates graceful degradation by itself ("off": by hand only).
DEGRADATION_TRIGGERS = ("off", "minor", "major", "critical")


@dataclass(frozen=True)
class SLAConfig:
    """Everything the in-engine runtime needs. Defaults are safe for production: evaluation every
    5 s, the serving SLAs, health 503 only when the replica cannot serve, exporter off unless a port
    is given, HTTP bound to 127.0.0.1."""

    enabled: bool = True
    evaluation_interval_s: float = 5.0
    ttft_objective_ms: float = 2000.0
    tpot_objective_ms: float = 100.0
    abort_is_error: bool = False
    stall_after_s: float = 30.0
    system_sampler: bool = True
    system_interval_s: float = 5.0
    exporter_port: int = 0  # 0: no standalone exporter (inside an engine, use its /metrics)
    exporter_host: str = "127.0.0.1"
    sla_set: str = "serving"
    health_fail_on_critical_sla: bool = False  # 503 on a CRITICAL SLA violation too (default: 200, reported)
    numba_cache_dir: str = ""  # where numba caches compiled kernels ("": beside the package, else a temp dir)
    disabled_slas: tuple[str, ...] = ()
    thresholds: tuple[SLAThreshold, ...] = field(default=())
    # -- recovery (aphrodite_sla.recovery) ------------------------------------------------------
    recovery: str = "advisory"  # off | advisory (dry run: record what would be done) | act
    recovery_max_concurrent: int = 5
    recovery_cooldown_s: float = 300.0  # no second recovery for the same SLA within this time
    recovery_approval_timeout_s: float = 300.0  # a risky action nobody approved in time is denied
    # a confident RCA cause picks the procedure it recommends when that adds to what the SLA's ran
    # (recovery/root_cause.py); 0.8: RCA's calibrated confidence is right ~4 times in 5 there
    recovery_use_root_cause: bool = True
    recovery_root_cause_min_confidence: float = 0.8
    fleet_replicas: int = 1  # > 1: a load balancer can move traffic away, so draining this replica is allowed
    max_replicas: int = 0  # RESOURCE_SCALING may raise the desired-replicas gauge up to this (0: no higher than fleet_replicas)
    degradation: str = "critical"  # the lowest violation severity that degrades service by itself, or "off"
    auto_rollback: bool = True  # roll a regressed deployment back through the rollback hook
    self_healing: bool = True  # the maintenance tasks and resource checks
    memory_threshold_percent: float = 85.0
    cpu_threshold_percent: float = 80.0
    disk_threshold_percent: float = 90.0
    api_token: str = field(default="", repr=False)  # bearer token of the REST API's mutations ("": mutations refused)
    hooks: Mapping[str, Any] = field(default_factory=dict)  # action -> {"argv": [...]} or {"url": ...} (file only)
    # the fast page rules: the [page_rules] table of the file (sla/page_rules.py); APHRODITE_SLA_PAGE_RULES=false turns them off
    page_rules: PageRulesConfig = field(default_factory=PageRulesConfig)
    # when an SLA's anomaly warns: the [warning_rules] table of the file (sla/warning_rules.py)
    warning_rules: WarningRulesConfig = field(default_factory=WarningRulesConfig)
    incidents: bool = True  # the incident system (aphrodite_sla.incidents) with the runtime
    incidents_db: str = ""  # the incident store: a SQLite path or a database URL (wins over incident_response's)
    incident_response: Mapping[str, Any] = field(default_factory=dict)  # the seed's section (file only; incidents.config validates)

    def __post_init__(self) -> None:
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(f"SLAConfig.{name}: must be a number in [{low:g}, {high:g}], got {value!r}")
        if isinstance(self.exporter_port, bool) or not isinstance(self.exporter_port, int) or not 0 <= self.exporter_port <= 65535:
            raise ConfigError(f"SLAConfig.exporter_port: must be an integer in 0..65535, got {self.exporter_port!r}")
        for name in ("recovery_max_concurrent", "fleet_replicas", "max_replicas"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"SLAConfig.{name}: must be an integer, got {getattr(self, name)!r}")
        if self.recovery not in RECOVERY_MODES:
            raise ConfigError(f"SLAConfig.recovery: must be one of {', '.join(RECOVERY_MODES)}, got {self.recovery!r}")
        if self.degradation not in DEGRADATION_TRIGGERS:
            raise ConfigError(f"SLAConfig.degradation: must be one of {', '.join(DEGRADATION_TRIGGERS)}, got {self.degradation!r}")
        if not isinstance(self.page_rules, PageRulesConfig):
            raise ConfigError(f"SLAConfig.page_rules: must be a PageRulesConfig, got {type(self.page_rules).__name__}")
        if not isinstance(self.warning_rules, WarningRulesConfig):
            raise ConfigError(f"SLAConfig.warning_rules: must be a WarningRulesConfig, got {type(self.warning_rules).__name__}")
        if not isinstance(self.hooks, Mapping):
            raise ConfigError(f"SLAConfig.hooks: must be a table of action -> hook, got {type(self.hooks).__name__}")
        for name in ("enabled", "abort_is_error", "system_sampler", "health_fail_on_critical_sla", "auto_rollback", "self_healing",
                     "incidents", "recovery_use_root_cause"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"SLAConfig.{name}: must be true or false, got {getattr(self, name)!r}")
        if self.incident_response:
            from aphrodite_sla.incidents.config import IncidentConfigError, parse_incident_config

            try:
                parse_incident_config(self.incident_response)
            except IncidentConfigError as err:
                raise ConfigError(str(err)) from None
            from aphrodite_sla.notify.config import NotificationsConfig

            NotificationsConfig.from_mapping(self.incident_response.get("notifications"))  # ConfigError naming the key
        if self.sla_set not in SLA_SETS:
            raise ConfigError(f"SLAConfig.sla_set: must be one of {', '.join(SLA_SETS)}, got {self.sla_set!r}")
        known = {t.metric_name for t in (*builtin_thresholds(self.sla_set), *self.thresholds)}
        unknown = sorted(set(self.disabled_slas) - known)
        if unknown:
            raise ConfigError(
                f"SLAConfig.disabled_slas: unknown SLA {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
            )

    def active_thresholds(self) -> list[SLAThreshold]:
        """The built-in SLAs of ``sla_set`` and the configured ones (a configured SLA replaces a
        built-in one of the same name), minus ``disabled_slas``."""
        by_name = {t.metric_name: t for t in builtin_thresholds(self.sla_set)}
        by_name.update({t.metric_name: t for t in self.thresholds})
        return [t for name, t in by_name.items() if name not in self.disabled_slas]


def builtin_thresholds(sla_set: str) -> list[SLAThreshold]:
    return serving_thresholds() if sla_set == "serving" else default_thresholds()


_SCALARS = {f.name: f.type for f in fields(SLAConfig)
            if f.name not in ("thresholds", "disabled_slas", "hooks", "page_rules", "warning_rules", "incident_response")}


def _convert(name: str, raw: Any, source: str) -> Any:
    kind = _SCALARS[name]
    try:
        if kind in ("bool", bool):
            return _boolean(raw)
        if kind in ("int", int):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected an integer")
            return int(raw)
        if kind in ("float", float):
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        return str(raw)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"{source}: {name}: cannot use {raw!r} ({err})") from None


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{ENV_FILE}={path}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{ENV_FILE}={path}: not UTF-8 text (byte {err.start}: {raw[err.start:err.start + 1]!r})") from None
    suffix = path.suffix.lower()
    kind = "JSON" if suffix == ".json" else "YAML" if suffix in (".yaml", ".yml") else "TOML"
    try:
        data = json.loads(text) if kind == "JSON" else _yaml(path).safe_load(text) if kind == "YAML" else _toml().loads(text)
    except ValueError as err:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ConfigError(f"{ENV_FILE}={path}: not valid {kind}: {err}") from None
    except Exception as err:  # yaml.YAMLError (the seed's configuration is YAML)
        raise ConfigError(f"{ENV_FILE}={path}: not valid {kind}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{ENV_FILE}={path}: the top level must be a table/object")
    return data


def _yaml(path: Path) -> Any:
    try:
        import yaml
    except ModuleNotFoundError:
        raise ConfigError(f"{ENV_FILE}={path}: a YAML file needs PyYAML (pip install pyyaml), or use TOML/JSON") from None
    return yaml


def _toml() -> Any:
    """``tomllib`` (Python 3.11+) or its backport ``tomli`` (a dependency on 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def _thresholds(items: Any, source: str) -> tuple[SLAThreshold, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: thresholds: must be a list of tables")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: thresholds[{i}]: must be a table")
        try:
            out.append(SLAThreshold(**dict(item)))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: thresholds[{i}]: {err}") from None
    return tuple(out)


def load_config(environ: Mapping[str, str] | None = None) -> SLAConfig:
    """Build the configuration from the file (if ``APHRODITE_SLA_CONFIG`` is set) and the
    environment. Raises ``ConfigError`` naming the source and field of the first problem."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = env.get(ENV_FILE)
    if path:
        data = _read_file(Path(path))
        source = f"{ENV_FILE}={path}"
        for key, raw in data.items():
            if key == "thresholds":
                values["thresholds"] = _thresholds(raw, source)
            elif key == "disabled_slas":
                if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                    raise ConfigError(f"{source}: disabled_slas: must be a list of SLA names")
                values["disabled_slas"] = tuple(raw)
            elif key == "hooks":
                if not isinstance(raw, Mapping):
                    raise ConfigError(f"{source}: hooks: must be a table of action -> hook")
                values["hooks"] = dict(raw)
            elif key == "page_rules":
                try:
                    values["page_rules"] = PageRulesConfig.from_mapping(raw)
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"{source}: {err}") from None
            elif key == "warning_rules":
                try:
                    values["warning_rules"] = WarningRulesConfig.from_mapping(raw)
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"{source}: {err}") from None
            elif key == "incident_response":
                if not isinstance(raw, Mapping):
                    raise ConfigError(f"{source}: incident_response: must be a table")
                values["incident_response"] = dict(raw)
            elif key in _SCALARS:
                values[key] = _convert(key, raw, source)
            else:
                known = sorted([*_SCALARS, "thresholds", "disabled_slas", "hooks", "page_rules", "warning_rules", "incident_response"])
                raise ConfigError(f"{source}: unknown key {key!r}; known: {', '.join(known)}")
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_FILE:
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name == "disabled_slas":
            values[name] = tuple(s.strip() for s in raw.split(",") if s.strip())
        elif name == "page_rules":  # on or off; the rules' settings are the file's
            try:
                values[name] = replace(values.get(name, PageRulesConfig()), enabled=_boolean(raw))
            except ValueError as err:
                raise ConfigError(f"{key}: cannot use {raw!r} ({err})") from None
        elif name in _SCALARS:
            values[name] = _convert(name, raw, key)
        else:
            raise ConfigError(f"{key}: unknown setting; known: {', '.join(ENV_PREFIX + n.upper() for n in sorted(_SCALARS))}")
    try:
        return replace(SLAConfig(), **values)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None
