"""Admission control: the enforcement point recovery drives (``shed``, ``close``, ``open``), read by
the ASGI middleware on every inference request.

Why a policy object replaced whole: ``admit()`` runs on the engine's event loop while recovery
changes the policy from another thread; one reference read per request means a reader never sees
half a change, and the rejection response is built once per change, not per request.
"""
from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aphrodite_sla.forking import reset_in_child

logger = logging.getLogger(__name__)

# Distinct rejection reasons counted by name; past this they share one key (bounded memory).
MAX_REASONS = 32
OTHER_REASON = "<other>"


# -- admission control: data ---------------------------------------------------------------------
class AdmissionState(str, Enum):
    """OPEN admits all; SHEDDING rejects a fraction, drawn at random per request; CLOSED rejects all."""

    OPEN = "open"
    SHEDDING = "shedding"
    CLOSED = "closed"


@dataclass(frozen=True)
class Rejection:
    """The 503 response (ASGI messages) for a policy, built once per policy change rather than per
    request."""

    start: dict[str, Any]
    body: dict[str, Any]


@dataclass(frozen=True)
class AdmissionPolicy:
    """What the admission controller currently does (replaced as a whole, so a reader on the event
    loop never sees half of a change made by a recovery thread), with the response it rejects by."""

    state: AdmissionState = AdmissionState.OPEN
    shed_fraction: float = 0.0
    retry_after_s: float = 0.0
    reason: str = ""
    changed_at: float = 0.0
    rejection: Rejection = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rejection", _build_rejection(self.retry_after_s))


@dataclass(frozen=True)
class AdmissionStats:
    """Counters for exporters and health endpoints."""

    policy: AdmissionPolicy
    rejected: int
    admitted_while_limited: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


# -- admission control: behaviour ----------------------------------------------------------------
class AdmissionController:
    """The enforcement point recovery drives: ``shed(fraction, ...)``, ``close(...)``, ``open()``.

    Shedding draws at random per request (``rng``, seedable for tests): a counter would be
    predictable — a client sending junk until one request gets a 503 would then know the next ones
    pass. ``admit()`` runs on the event loop; the state-changing methods may be called from any
    thread.
    """

    def __init__(self, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._policy = AdmissionPolicy(changed_at=clock())
        self._random = (rng or random.Random()).random
        self._rejected = 0
        reset_in_child(self)
        self._admitted_limited = 0
        self._by_reason: dict[str, int] = {}

    # state changes (recovery side)
    def shed(self, fraction: float, retry_after_s: float = 5.0, reason: str = "") -> None:
        """Reject ``fraction`` (0–1) of inference requests with 503 + ``Retry-After``. 0 opens."""
        fraction = _checked(fraction, "fraction", 0.0, 1.0)
        if fraction == 0.0:
            self.open()
            return
        self._set(AdmissionState.SHEDDING, fraction, retry_after_s, reason)

    def close(self, retry_after_s: float = 30.0, reason: str = "") -> None:
        """Reject every inference request (503 + ``Retry-After``) without touching the engine."""
        self._set(AdmissionState.CLOSED, 1.0, retry_after_s, reason)

    def open(self) -> None:
        """Admit every request again."""
        self._set(AdmissionState.OPEN, 0.0, 0.0, "")

    def _set(self, state: AdmissionState, fraction: float, retry_after_s: float, reason: str) -> None:
        retry = _checked(retry_after_s, "retry_after_s", 0.0, math.inf)
        policy = AdmissionPolicy(state, fraction, retry, str(reason), self._clock())
        with self._lock:
            previous = self._policy
            self._policy = policy  # one reference: admit() and the middleware read only this
        if previous.state is not state or previous.shed_fraction != fraction:
            logger.warning(
                "aphrodite-sla admission: %s -> %s (shed %.0f%%, retry after %.0f s)%s",
                previous.state.value, state.value, 100.0 * fraction, retry, f": {reason}" if reason else "",
            )

    # the hot path (event loop)
    @property
    def policy(self) -> AdmissionPolicy:
        return self._policy

    @property
    def state(self) -> AdmissionState:
        return self._policy.state

    @property
    def shed_fraction(self) -> float:
        return self._policy.shed_fraction

    @property
    def retry_after_s(self) -> float:
        return self._policy.retry_after_s

    def admit(self) -> bool:
        """True to let a request through; False means reject it (and it has been counted)."""
        policy = self._policy
        if policy.state is AdmissionState.OPEN:
            return True
        if policy.state is AdmissionState.SHEDDING and self._random() >= policy.shed_fraction:
            self._admitted_limited += 1
            return True
        self._count_rejection(policy.reason)
        return False

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def _count_rejection(self, reason: str) -> None:
        self._rejected += 1
        by = self._by_reason
        if reason not in by and len(by) >= MAX_REASONS:
            reason = OTHER_REASON
        by[reason] = by.get(reason, 0) + 1

    def stats(self) -> AdmissionStats:
        return AdmissionStats(self._policy, self._rejected, self._admitted_limited, dict(self._by_reason))


def _checked(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"AdmissionController: {name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _build_rejection(retry_after_s: float) -> Rejection:
    # The reason stays in our logs and stats; clients get a generic message (no internal details).
    retry = int(math.ceil(retry_after_s))
    body = json.dumps(
        {
            "error": {
                "message": f"The server is overloaded; retry after {retry} s.",
                "type": "overloaded",
                "code": 503,
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry).encode()),
    ]
    return Rejection(
        start={"type": "http.response.start", "status": 503, "headers": headers},
        body={"type": "http.response.body", "body": body, "more_body": False},
    )
