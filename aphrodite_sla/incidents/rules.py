"""Detection rules: count engine events of a kind in a sliding window (seeds 001/003's seven rules).

Why counting rules beside the SLA evaluator: an SLA needs a window's worth of samples to breach a
percentile, while "ten requests errored in five minutes" or "five failed health checks in a
minute" is a fact worth an incident on its own, at any traffic. Events come from the engine
(errored and aborted requests by finish reason, slow requests, corrupted outputs), the stall
detector, the system sampler (memory, disk) and the API; ``submit`` is an O(1) append under a lock
and never raises, so feeders on any thread can call it.

Flap suppression: a rule fires when its count reaches ``threshold`` and is then disarmed; it is
re-armed only when the count falls to ``threshold * rearm_ratio`` or below (hysteresis), so a
count hovering at the threshold fires once. A firing that comes back while its incident is open
joins it (the incident manager deduplicates by fingerprint).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from aphrodite_sla.events import fingerprint
from aphrodite_sla.incidents.model import IncidentSeverity, IncidentType

RULE_ALERT = "IncidentRule"
EVENT_KINDS = ("request_error", "health_check_failure", "quality_check_failure", "request_aborted", "memory_high", "slow_request",
               "disk_low")


class RuleError(ValueError):
    """A rule definition or update that cannot be used (the message names the field)."""


@dataclass(frozen=True)
class DetectionRule:
    name: str
    event_kind: str
    threshold: int
    window_seconds: float
    severity: IncidentSeverity
    incident_type: IncidentType
    description: str = ""
    enabled: bool = True
    rearm_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not self.name or not all(ch.isalnum() or ch in "_-." for ch in self.name) or len(self.name) > 64:
            raise RuleError(f"rule name: letters, digits, _ - . only (1-64 characters), got {self.name!r}")
        if not self.event_kind or len(self.event_kind) > 64:
            raise RuleError(f"{self.name}.event_kind: must be a non-empty name, got {self.event_kind!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or not 1 <= self.threshold <= 1_000_000:
            raise RuleError(f"{self.name}.threshold: must be an integer in [1, 1000000], got {self.threshold!r}")
        w = self.window_seconds
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 1 <= w <= 86_400:
            raise RuleError(f"{self.name}.window_seconds: must be in [1, 86400], got {w!r}")
        r = self.rearm_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < 1:
            raise RuleError(f"{self.name}.rearm_ratio: must be in [0, 1), got {r!r}")
        if not isinstance(self.enabled, bool):
            raise RuleError(f"{self.name}.enabled: must be true or false, got {self.enabled!r}")

    @property
    def fingerprint(self) -> str:
        return fingerprint(RULE_ALERT, rule=self.name)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["severity"], out["incident_type"] = self.severity.value, self.incident_type.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: DetectionRule | None = None) -> DetectionRule:
        """A rule from a mapping (the API, the CLI, the configuration); with ``base``, an update of
        it (only the given fields change). Unknown fields and bad values are ``RuleError``s."""
        known = {"name", "event_kind", "threshold", "window_seconds", "severity", "incident_type", "description", "enabled", "rearm_ratio"}
        name = str(data.get("name", base.name if base else ""))
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuleError(f"{name or 'rule'}.{unknown[0]}: unknown field; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = dict(data)
        try:
            if "severity" in values:
                values["severity"] = IncidentSeverity.parse(values["severity"])
            if "incident_type" in values:
                values["incident_type"] = IncidentType.parse(values["incident_type"])
        except ValueError as err:
            raise RuleError(f"{name}: {err}") from None
        if isinstance(values.get("window_seconds"), int) and not isinstance(values.get("window_seconds"), bool):
            values["window_seconds"] = float(values["window_seconds"])
        if isinstance(values.get("threshold"), float) and values["threshold"].is_integer():
            values["threshold"] = int(values["threshold"])
        if base is not None:
            values.pop("name", None)
            return replace(base, **values)
        missing = sorted({"name", "event_kind", "threshold", "window_seconds", "severity", "incident_type"} - set(values))
        if missing:
            raise RuleError(f"{name or 'rule'}: missing field(s) {', '.join(missing)}")
        return cls(**values)


def builtin_rules() -> list[DetectionRule]:
    """The seeds' seven rules with their thresholds and windows, fed by an inference engine."""
    sev, typ = IncidentSeverity, IncidentType
    return [
        DetectionRule("error_burst", "request_error", 10, 300.0, sev.HIGH, typ.ERROR_BURST,
                      "10 or more requests finished with an error within 5 minutes"),
        DetectionRule("service_down", "health_check_failure", 5, 60.0, sev.CRITICAL, typ.SERVICE_DOWN,
                      "5 or more failed health checks (engine stalled, inference breaker open) within 1 minute"),
        DetectionRule("quality_drop", "quality_check_failure", 5, 600.0, sev.MEDIUM, typ.QUALITY_DROP,
                      "5 or more corrupted outputs or failed output checks within 10 minutes"),
        DetectionRule("workflow_failure_spike", "request_aborted", 8, 300.0, sev.HIGH, typ.WORKFLOW_FAILURE,
                      "8 or more aborted requests within 5 minutes"),
        DetectionRule("memory_exhaustion", "memory_high", 3, 120.0, sev.CRITICAL, typ.MEMORY_EXHAUSTION,
                      "3 or more memory samples over the threshold within 2 minutes"),
        DetectionRule("performance_degradation", "slow_request", 10, 300.0, sev.MEDIUM, typ.PERFORMANCE_DEGRADATION,
                      "10 or more requests over the TTFT objective within 5 minutes"),
        DetectionRule("low_disk", "disk_low", 3, 300.0, sev.HIGH, typ.DISK_SPACE_LOW,
                      "3 or more disk samples over the threshold within 5 minutes"),
    ]


@dataclass(frozen=True)
class RuleFiring:
    rule: DetectionRule
    count: int
    first_at: float
    at: float


@dataclass(frozen=True)
class RuleState:
    rule: DetectionRule
    count: int
    armed: bool
    fired_total: int


class RuleEngine:
    """Holds the events (per kind, ``retention_s`` and ``max_events`` bounded) and the rules."""

    def __init__(self, rules: Iterable[DetectionRule] | None = None, *, retention_s: float = 3600.0, max_events: int = 10_000,
                 clock: Callable[[], float]) -> None:
        self.retention_s = retention_s
        self.max_events = max_events
        self.clock = clock
        self._rules: dict[str, DetectionRule] = {r.name: r for r in (builtin_rules() if rules is None else rules)}
        self._events: dict[str, deque[float]] = {}
        self._armed: dict[str, bool] = {}
        self._fired: dict[str, int] = {}
        self.dropped = 0  # events refused (bad time) or pushed out by max_events
        self._rearmed: list[str] = []  # rules whose count fell back below the hysteresis since the last take
        self._lock = threading.Lock()

    # -- events -----------------------------------------------------------------------------------
    def submit(self, kind: str, at: float | None = None, count: int = 1) -> bool:
        """Record ``count`` events of ``kind`` at ``at`` (default now); False (counted) if unusable."""
        try:
            t = self.clock() if at is None else float(at)
            n = int(count)
        except (TypeError, ValueError):
            self.dropped += 1
            return False
        if not math.isfinite(t) or n < 1 or not isinstance(kind, str) or not kind:
            self.dropped += 1
            return False
        with self._lock:
            q = self._events.get(kind)
            if q is None:
                q = self._events[kind] = deque(maxlen=self.max_events)
            for _ in range(min(n, self.max_events)):
                if len(q) == q.maxlen:
                    self.dropped += 1
                q.append(t)
        return True

    def _prune(self, now: float) -> None:
        horizon = now - self.retention_s
        for q in self._events.values():
            while q and q[0] < horizon:
                q.popleft()

    def count(self, kind: str, window_s: float, now: float) -> tuple[int, float]:
        q = self._events.get(kind, ())
        start = now - window_s
        times = [t for t in q if start <= t <= now]
        return len(times), (min(times) if times else now)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, now: float | None = None) -> list[RuleFiring]:
        now = self.clock() if now is None else now
        out = []
        with self._lock:
            self._prune(now)
            for rule in self._rules.values():
                if not rule.enabled:
                    continue
                n, first = self.count(rule.event_kind, rule.window_seconds, now)
                armed = self._armed.get(rule.name, True)
                if armed and n >= rule.threshold:
                    self._armed[rule.name] = False
                    self._fired[rule.name] = self._fired.get(rule.name, 0) + 1
                    out.append(RuleFiring(rule, n, first, now))
                elif not armed and n <= rule.threshold * rule.rearm_ratio:
                    self._armed[rule.name] = True
                    self._rearmed.append(rule.name)
        return out

    def take_rearmed(self) -> list[str]:
        """Rules that re-armed since the last call: their condition cleared (the incident recovers)."""
        with self._lock:
            names, self._rearmed = self._rearmed, []
        return names

    def test(self, rule: DetectionRule, times: Iterable[float], now: float) -> bool:
        """Would ``rule`` fire on events at ``times`` (evaluated at ``now``)? (``rules test``.)"""
        start = now - rule.window_seconds
        return sum(1 for t in times if start <= t <= now) >= rule.threshold

    # -- rules at run time ------------------------------------------------------------------------
    def rules(self) -> list[DetectionRule]:
        with self._lock:
            return list(self._rules.values())

    def get(self, name: str) -> DetectionRule | None:
        return self._rules.get(name)

    def put(self, rule: DetectionRule) -> DetectionRule:
        """Create or replace a rule (its arming state restarts)."""
        with self._lock:
            self._rules[rule.name] = rule
            self._armed.pop(rule.name, None)
        return rule

    def update(self, name: str, changes: Mapping[str, Any]) -> DetectionRule:
        base = self._rules.get(name)
        if base is None:
            raise KeyError(name)
        return self.put(DetectionRule.from_dict(changes, base=base))

    def states(self, now: float | None = None) -> list[RuleState]:
        now = self.clock() if now is None else now
        with self._lock:
            return [RuleState(r, self.count(r.event_kind, r.window_seconds, now)[0], self._armed.get(r.name, True), self._fired.get(r.name, 0))
                    for r in self._rules.values()]

    def event_counts(self) -> dict[str, int]:
        with self._lock:
            return {k: len(q) for k, q in self._events.items()}


def rules_with_overrides(overrides: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]] | None = None) -> list[DetectionRule]:
    """The built-in rules, then the configuration's overrides (``detection.rules``: a name -> fields
    table; a new name is a new rule), then rules changed at run time and kept in the store."""
    rules = {r.name: r for r in builtin_rules()}
    for layer, where in ((overrides, "incident_response.detection.rules"), (stored or {}, "stored rule")):
        for name, fields in layer.items():
            if not isinstance(fields, Mapping):
                raise RuleError(f"{where}.{name}: must be a table of rule fields")
            try:
                base = rules.get(name)
                rules[name] = DetectionRule.from_dict(fields, base=base) if base else DetectionRule.from_dict({**fields, "name": name})
            except RuleError as err:
                raise RuleError(f"{where}.{name}: {err}") from None
    return list(rules.values())
