"""Circuit-breaker data: states, configuration, status and the denial error (data only; the state
machine in ``recovery.breaker`` acts on them).

Why apart from the machine: the middleware, the REST API, the exporter's gauge and incidents read
these records and catch ``CircuitOpenError``; none of them needs the machinery.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Literal


class BreakerState(str, Enum):
    """A breaker's state. FORCED_OPEN and DISABLED are explicit and left only by ``reset()``."""

    CLOSED = "closed"  # calls pass; outcomes fill the sliding window
    OPEN = "open"  # calls are denied until open_timeout_s has passed
    HALF_OPEN = "half_open"  # exactly success_threshold trial calls pass
    FORCED_OPEN = "forced_open"  # denied by an operator or a recovery action, no timeout
    DISABLED = "disabled"  # every call passes, nothing is recorded

    def __str__(self) -> str:
        return self.value


# Stable numeric codes for a Prometheus gauge (never renumber: dashboards and rules compare them).
BREAKER_STATE_CODE: dict[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
    BreakerState.FORCED_OPEN: 3,
    BreakerState.DISABLED: 4,
}

WindowKind = Literal["count", "time"]
MAX_COUNT_WINDOW = 100_000  # calls
MAX_TIME_WINDOW = 86_400  # seconds (one bucket per second)

# callback(breaker_name, old_state, new_state, reason)
BreakerListener = Callable[[str, BreakerState, BreakerState, str], Any]


def _positive_int(owner: str, field: str, value: object, upper: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (upper is not None and value > upper):
        bound = f" and <= {upper}" if upper is not None else ""
        raise ValueError(f"BreakerConfig {owner!r}: {field} must be an integer >= 1{bound}, got {value!r}")


def _positive_float(owner: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"BreakerConfig {owner!r}: {field} must be a finite number > 0, got {value!r}")


def _percent(owner: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 100:
        raise ValueError(f"BreakerConfig {owner!r}: {field} must be a percentage in (0, 100], got {value!r}")


@dataclass(frozen=True)
class BreakerConfig:
    """One breaker's policy.

    CLOSED opens when, over the sliding window (the last ``window_size`` calls, or the calls of the
    last ``window_size`` whole seconds): failures reach ``failure_threshold``; or, with at least
    ``minimum_calls`` calls in it, the failure rate reaches ``failure_rate_threshold`` percent or
    the slow-call rate (successes slower than ``slow_call_duration_s``; None: off) reaches
    ``slow_call_rate_threshold`` percent. OPEN turns HALF_OPEN after ``open_timeout_s``; HALF_OPEN
    lets exactly ``success_threshold`` calls through: one failure re-opens it, all of them
    succeeding closes it (unless their slow-call rate reaches the threshold). A half-open trial
    whose permitted calls have not all reported ``half_open_max_wait_s`` after the first one passed
    re-opens it."""

    name: str
    failure_threshold: int
    success_threshold: int
    open_timeout_s: float
    window_kind: WindowKind = "count"
    window_size: int = 20
    failure_rate_threshold: float = 50.0
    slow_call_duration_s: float | None = None
    slow_call_rate_threshold: float = 100.0
    minimum_calls: int = 10
    half_open_max_wait_s: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"BreakerConfig.name: a non-empty string is required, got {self.name!r}")
        name = self.name
        if self.window_kind not in ("count", "time"):
            raise ValueError(f"BreakerConfig {name!r}: window_kind must be 'count' or 'time', got {self.window_kind!r}")
        _positive_int(name, "window_size", self.window_size, MAX_COUNT_WINDOW if self.window_kind == "count" else MAX_TIME_WINDOW)
        _positive_int(name, "failure_threshold", self.failure_threshold)
        _positive_int(name, "success_threshold", self.success_threshold)
        _positive_int(name, "minimum_calls", self.minimum_calls)
        if self.window_kind == "count":
            if self.failure_threshold > self.window_size:
                raise ValueError(f"BreakerConfig {name!r}: failure_threshold ({self.failure_threshold}) can never be reached "
                                 f"in a count window of {self.window_size} calls")
            if self.minimum_calls > self.window_size:
                raise ValueError(f"BreakerConfig {name!r}: minimum_calls ({self.minimum_calls}) can never be reached "
                                 f"in a count window of {self.window_size} calls")
        _positive_float(name, "open_timeout_s", self.open_timeout_s)
        _positive_float(name, "half_open_max_wait_s", self.half_open_max_wait_s)
        _percent(name, "failure_rate_threshold", self.failure_rate_threshold)
        _percent(name, "slow_call_rate_threshold", self.slow_call_rate_threshold)
        if self.slow_call_duration_s is not None:
            _positive_float(name, "slow_call_duration_s", self.slow_call_duration_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BreakerStatus:
    """A consistent copy of one breaker's state and window (taken under its lock).

    Rates are percentages over the calls now in the window (None when it is empty); the half-open
    counts describe the current trial (zero outside HALF_OPEN). ``rejected_total``, ``dropped_total``
    (reports with a NaN, infinite or negative duration) and ``listener_errors`` only grow."""

    name: str
    state: BreakerState
    failure_rate: float | None
    slow_call_rate: float | None
    calls_in_window: int
    failures_in_window: int
    slow_calls_in_window: int
    consecutive_failures: int
    half_open_permitted: int
    half_open_successes: int
    half_open_in_flight: int
    opened_at: float | None
    changed_at: float | None
    retry_after_s: float
    rejected_total: int
    dropped_total: int
    listener_errors: int
    reason: str
    config: BreakerConfig

    @property
    def state_code(self) -> int:
        return BREAKER_STATE_CODE[self.state]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the state as its value, non-finite floats as None."""
        out = asdict(self)
        out["state"] = self.state.value
        out["state_code"] = self.state_code
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


class CircuitOpenError(Exception):
    """A breaker denied a call; ``retry_after_s`` is the hint for a client's Retry-After."""

    def __init__(self, name: str, state: BreakerState, retry_after_s: float) -> None:
        super().__init__(f"circuit breaker {name!r} is {state.value}: retry after {retry_after_s:.1f} s")
        self.name = name
        self.state = state
        self.retry_after_s = retry_after_s


__all__ = [
    "BREAKER_STATE_CODE", "BreakerConfig", "BreakerListener", "BreakerState", "BreakerStatus", "CircuitOpenError", "WindowKind",
]
