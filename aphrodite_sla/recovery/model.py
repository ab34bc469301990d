"""Recovery data: actions, procedures, executions and their results (data only; the recovery
engine in ``recovery.engine`` acts on them).

Why apart from the code: the REST API, the collector, incidents and the console read these
records; they never need the machinery that produced them.
"""
from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Protocol

from aphrodite_sla.sla.threshold import SLAViolation, ViolationSeverity


class RecoveryAction(str, Enum):
    """The seed's recovery actions, mapped onto an inference engine (see the README's table)."""

    CACHE_INVALIDATION = "cache_invalidation"  # engine reset_prefix_cache() (+ reset_mm_cache())
    LOAD_BALANCER_ADJUST = "load_balancer_adjust"  # admission: shed a fraction, Retry-After
    TRAFFIC_ROUTING = "traffic_routing"  # admission: drain (503 on /health/production) so the LB moves traffic
    RESOURCE_SCALING = "resource_scaling"  # desired-replicas gauge + configured hook
    CIRCUIT_BREAKER_ACTIVATION = "circuit_breaker_activation"  # force the model_inference breaker open
    HEALTH_CHECK_RESET = "health_check_reset"  # engine check_health() + reset of our health state
    SERVICE_RESTART = "service_restart"  # pause generation, abort in-flight, resume (or a hook)
    DEPLOYMENT_ROLLBACK = "deployment_rollback"  # configured hook
    MEMORY_CLEANUP = "memory_cleanup"  # gc; sleep/wake or release of KV memory where available

    def __str__(self) -> str:
        return self.value


# The seeds' remediation names (incident_response.remediation.require_approval_for) for our actions.
ACTION_ALIASES: dict[str, RecoveryAction] = {
    "restart_service": RecoveryAction.SERVICE_RESTART, "restart": RecoveryAction.SERVICE_RESTART,
    "rollback": RecoveryAction.DEPLOYMENT_ROLLBACK, "rollback_deployment": RecoveryAction.DEPLOYMENT_ROLLBACK,
    "scale_up": RecoveryAction.RESOURCE_SCALING, "scale": RecoveryAction.RESOURCE_SCALING,
    "clear_cache": RecoveryAction.CACHE_INVALIDATION, "restart_workflow": RecoveryAction.SERVICE_RESTART,
}


def parse_action(name: str) -> RecoveryAction:
    """A recovery action by its value or a seed alias; ValueError naming the known ones."""
    key = str(name).strip().lower()
    if key in ACTION_ALIASES:
        return ACTION_ALIASES[key]
    try:
        return RecoveryAction(key)
    except ValueError:
        known = sorted({a.value for a in RecoveryAction} | set(ACTION_ALIASES))
        raise ValueError(f"unknown recovery action {name!r}; known: {', '.join(known)}") from None


class ActionOutcome(str, Enum):
    """How one action ended."""

    SUCCEEDED = "succeeded"  # applied (and, where verified, the metric came back)
    UNVERIFIED = "unverified"  # applied, but the metric was still beyond its bound after settling
    FAILED = "failed"  # raised
    TIMED_OUT = "timed_out"  # did not finish within its timeout
    NOT_AVAILABLE = "not_available"  # no engine handle / the engine lacks the method / no hook configured
    PRECHECK_FAILED = "precheck_failed"  # the pre-check said it would not help or is unsafe now
    ADVISORY = "advisory"  # dry run: what would have been done
    DENIED = "denied"  # approval denied (or timed out: deny on timeout)

    def __str__(self) -> str:
        return self.value


class ExecutionStatus(str, Enum):
    """How one recovery execution (a procedure run for one violation) stands or ended."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"  # an action was verified: the metric is back within its bound
    FAILED = "failed"  # every action ran (or could not), none verified
    ADVISORY = "advisory"  # dry-run mode: nothing was changed
    RESOLVED = "resolved"  # the violation ended before an action was verified: the rest of the ladder did not run
    SKIPPED = "skipped"  # disabled, cooldown, concurrency limit, below the severity threshold
    SUPERSEDED = "superseded"  # stopped for the procedure a confident root cause recommends (``RootCauseBasis``)

    @property
    def finished(self) -> bool:
        return self not in (ExecutionStatus.RUNNING, ExecutionStatus.AWAITING_APPROVAL)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Precheck:
    """A pre-check's answer: ``ok`` to go; otherwise ``available`` says whether the action exists
    here at all (no engine handle, no hook: NOT_AVAILABLE) or would not help / be unsafe now
    (PRECHECK_FAILED), and ``reason`` says which."""

    ok: bool
    reason: str = ""
    available: bool = True

    @classmethod
    def go(cls) -> Precheck:
        return cls(True)

    @classmethod
    def unavailable(cls, reason: str) -> Precheck:
        return cls(False, reason, available=False)

    @classmethod
    def refuse(cls, reason: str) -> Precheck:
        return cls(False, reason, available=True)


Undo = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Applied:
    """What an action did, and how to take it back. ``undo`` (None: nothing to undo, e.g. a cache
    reset) is awaited on rollback, and — for a mitigation such as shedding that should stay while
    the violation lasts (``keep_until_resolved``) — when the violation resolves."""

    detail: str
    undo: Undo | None = None
    keep_until_resolved: bool = False


class ActionHandler(Protocol):
    """How one action acts (``recovery.actions`` has one per ``RecoveryAction``). ``target`` is the
    ``RecoveryTarget`` (engine handle, admission, breakers, degradation, scaling, hooks);
    ``violation`` is None when an operator runs the action by hand (API ``test``, self-healing).

    ``precheck`` is quick and synchronous (no engine call); ``apply`` may await the engine and is
    bounded by the procedure's timeout (cancelled past it, then rolled back if it returned)."""

    action: RecoveryAction
    requires_approval: bool

    def precheck(self, target: Any, violation: SLAViolation | None) -> Precheck: ...

    async def apply(self, target: Any, violation: SLAViolation | None) -> Applied: ...


@dataclass(frozen=True)
class ActionResult:
    """One action of one execution."""

    action: RecoveryAction
    outcome: ActionOutcome
    started_at: float
    duration_s: float
    detail: str = ""
    verified: bool | None = None  # None: not verified (not applied, or nothing to verify against)
    verification: str = ""  # e.g. "p95 of ttft_ms over 30 s: 412 ms <= 550 ms bound"
    rolled_back: bool = False
    rollback_detail: str = ""
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class RecoveryProcedure:
    """An ordered ladder of actions for violations of at least ``severity_threshold``.

    Actions run in order; after each one applied, the engine waits ``settle_seconds`` and verifies
    that the violated SLA's statistic is back within its bound; the first verified action ends the
    procedure (SUCCEEDED). ``slas``: names of the SLAs (or their source series) it answers; empty
    matches any SLA. ``retry_count``: attempts per action that raised or timed out.
    ``cooldown_seconds``: no second run of this procedure for the same SLA within that time."""

    procedure_id: str
    name: str
    description: str
    actions: tuple[RecoveryAction, ...]
    timeout_seconds: float = 60.0
    retry_count: int = 1
    severity_threshold: ViolationSeverity = ViolationSeverity.MINOR
    cooldown_seconds: float = 300.0
    settle_seconds: float = 30.0
    slas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.procedure_id or not isinstance(self.procedure_id, str):
            raise ValueError("RecoveryProcedure.procedure_id: a non-empty string is required")
        actions = tuple(RecoveryAction(a) for a in self.actions)
        if not actions:
            raise ValueError(f"RecoveryProcedure {self.procedure_id!r}: at least one action is required")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "severity_threshold", ViolationSeverity(self.severity_threshold))
        object.__setattr__(self, "slas", tuple(self.slas))
        for name in ("timeout_seconds", "cooldown_seconds", "settle_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"RecoveryProcedure {self.procedure_id!r}: {name} must be a finite number >= 0, got {value!r}")
        if self.timeout_seconds <= 0:
            raise ValueError(f"RecoveryProcedure {self.procedure_id!r}: timeout_seconds must be > 0")
        if isinstance(self.retry_count, bool) or not isinstance(self.retry_count, int) or not 1 <= self.retry_count <= 10:
            raise ValueError(f"RecoveryProcedure {self.procedure_id!r}: retry_count must be an integer in 1..10, got {self.retry_count!r}")

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class RootCauseBasis:
    """Why an execution runs a root cause's procedure instead of (or after) the one its SLA
    selected: RCA's primary cause, how sure it was, the evidence an operator can check, and what
    it replaced. Kept on the execution, so the API, the console and the incident timeline show it."""

    cause: str
    category: str
    confidence: float
    metric: str = ""
    description: str = ""
    evidence: tuple[str, ...] = ()
    recommended: tuple[RecoveryAction, ...] = ()
    replaced_procedure: str = ""  # the SLA's procedure that was running (or ran) for the episode
    replaced_execution: str = ""  # its execution, SUPERSEDED when it was still running
    decision: str = ""  # why the switch: what the cause's ladder adds to what the episode already tried

    def summary(self) -> str:
        return f"root cause {self.cause} ({self.category}, confidence {self.confidence:.0%}): {self.decision}".rstrip(": ")


@dataclass
class RecoveryExecution:
    """One run of a procedure for one violation episode (mutable while it runs; the engine hands
    out copies)."""

    execution_id: str
    procedure_id: str
    sla: str
    fingerprint: str
    episode: str
    severity: ViolationSeverity
    status: ExecutionStatus
    started_at: float
    triggered_at: float  # when the violation event occurred (initiation latency = started_at - triggered_at)
    finished_at: float | None = None
    actions: list[ActionResult] = field(default_factory=list)
    reason: str = ""  # why skipped / failed, or which action verified
    advisory: bool = False
    root_cause: RootCauseBasis | None = None  # set when RCA's primary cause chose this procedure

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        out = plain(asdict(self))
        out["duration_s"] = self.duration_s
        return out


def plain(value: Any) -> Any:
    """Enums to their values, non-finite floats to None: JSON-safe."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "ActionHandler", "ActionOutcome", "ActionResult", "Applied", "ExecutionStatus", "Precheck", "RecoveryAction", "RecoveryExecution",
    "RecoveryProcedure", "RootCauseBasis", "Undo",
]
