"""What recovery actions act on: ``RecoveryTarget`` (engine handle, admission, breakers,
degradation, scaling, hooks, fleet facts) and ``ScalingState`` (the desired-replicas request).

Why one object: a handler gets everything it may touch in one argument, so an action can only
change what the runtime deliberately handed to recovery, and a test builds a target from fakes.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.integrations.admission import AdmissionController
from aphrodite_sla.recovery.engine_handle import EngineHandle
from aphrodite_sla.recovery.hooks import Hook
from aphrodite_sla.recovery.model import RecoveryAction

INFERENCE_BREAKER = "model_inference"


class BreakerControl(Protocol):
    """The breaker registry as recovery drives it."""

    def force_open(self, name: str, reason: str) -> Any: ...

    def reset(self, name: str) -> Any: ...


class DegradationControl(Protocol):
    """Graceful degradation as recovery drives it."""

    def activate_for_severity(self, severity: Any, reason: str) -> Any: ...

    def revert(self, reason: str, by: str) -> Any: ...


@dataclass(frozen=True)
class ScalingSnapshot:
    """One consistent reading of ``ScalingState``."""

    desired_replicas: int
    current_replicas: int
    min_replicas: int
    max_replicas: int


class ScalingState:
    """The replica count recovery asks for (exported as a gauge for an autoscaler to follow) and
    the one the operator says runs now. Thread-safe: recovery writes, a Prometheus scrape reads."""

    def __init__(self, current_replicas: int = 1, min_replicas: int = 1, max_replicas: int = 1, desired_replicas: int | None = None) -> None:
        for name, value in (("current_replicas", current_replicas), ("min_replicas", min_replicas), ("max_replicas", max_replicas)):
            _check_count(name, value)
        if min_replicas > max_replicas:
            raise ValueError(f"ScalingState: min_replicas ({min_replicas}) > max_replicas ({max_replicas})")
        self._lock = threading.Lock()
        self._min, self._max, self._current = min_replicas, max_replicas, current_replicas
        desired = current_replicas if desired_replicas is None else desired_replicas
        _check_count("desired_replicas", desired)
        self._desired = self._clamp(desired)

    def _clamp(self, n: int) -> int:
        return max(self._min, min(self._max, n))

    def snapshot(self) -> ScalingSnapshot:
        with self._lock:
            return ScalingSnapshot(self._desired, self._current, self._min, self._max)

    @property
    def desired_replicas(self) -> int:
        return self._desired

    @property
    def current_replicas(self) -> int:
        return self._current

    @property
    def min_replicas(self) -> int:
        return self._min

    @property
    def max_replicas(self) -> int:
        return self._max

    def scale_up(self, step: int = 1) -> tuple[int, int]:
        """Desired += ``step``, bounded by max: (previous, new) desired replicas."""
        _check_count("step", step)
        with self._lock:
            previous = self._desired
            self._desired = self._clamp(max(previous, self._current) + step)
            return previous, self._desired

    def set_desired(self, n: int) -> int:
        """Set the desired count (clamped to min..max); returns the value set."""
        _check_count("desired_replicas", n)
        with self._lock:
            self._desired = self._clamp(n)
            return self._desired

    def set_current(self, n: int) -> None:
        """What runs now (from the orchestrator, a hook's answer or an operator)."""
        _check_count("current_replicas", n)
        with self._lock:
            self._current = n


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"ScalingState: {name} must be an integer >= 0, got {value!r}")


@dataclass
class RecoveryTarget:
    """Everything recovery actions may act on. ``None`` for breakers, degradation or health_reset
    means that facility is absent here (its action is NOT_AVAILABLE, never pretended).

    ``fleet_replicas`` > 1 means a load balancer can move traffic to other replicas (draining is
    safe); ``allow_single_replica_drain`` lets TRAFFIC_ROUTING close admission even without one.
    ``memory_sleep_enabled``: MEMORY_CLEANUP also puts the engine to sleep (level 1) and wakes it,
    which aborts in-flight requests, drops the KV cache and pauses serving — off unless asked."""

    engine: EngineHandle = field(default_factory=EngineHandle)
    admission: AdmissionController = field(default_factory=AdmissionController)
    breakers: BreakerControl | None = None
    degradation: DegradationControl | None = None
    scaling: ScalingState = field(default_factory=ScalingState)
    hooks: dict[RecoveryAction, Hook] = field(default_factory=dict)
    fleet_replicas: int = 1
    allow_single_replica_drain: bool = False
    health_reset: Callable[[], Any] | None = None
    memory_sleep_enabled: bool = False
    clock: Clock = system_clock
    engine_call_timeout_s: float = 30.0
    shed_retry_after_s: float = 5.0
    drain_retry_after_s: float = 30.0
    inference_breaker: str = INFERENCE_BREAKER

    def __post_init__(self) -> None:
        if isinstance(self.fleet_replicas, bool) or not isinstance(self.fleet_replicas, int) or self.fleet_replicas < 1:
            raise ValueError(f"RecoveryTarget.fleet_replicas must be an integer >= 1, got {self.fleet_replicas!r}")
        for name in ("engine_call_timeout_s", "shed_retry_after_s", "drain_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"RecoveryTarget.{name} must be a finite number > 0, got {value!r}")
        self.hooks = {RecoveryAction(k): v for k, v in self.hooks.items()}

    @classmethod
    def from_server(cls, server: Any, **kwargs: Any) -> RecoveryTarget:
        """A target on a ``ServerState``: its engine (read at call time) and admission controller."""
        return cls(engine=EngineHandle.from_server(server), admission=server.admission, **kwargs)


__all__ = ["INFERENCE_BREAKER", "BreakerControl", "DegradationControl", "RecoveryTarget", "ScalingSnapshot", "ScalingState"]
