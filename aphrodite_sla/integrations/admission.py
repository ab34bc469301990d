"""Admission control: the enforcement point recovery and graceful degradation drive, read by the
ASGI middleware on every inference request.

Why a policy object replaced whole: the middleware runs on the engine's event loop while recovery
changes the policy from another thread; one reference read per request means a reader never sees
half a change, and the rejection response is built once per change, not per request. An OPEN
policy costs the middleware one attribute read and one identity check.

Limits (``AdmissionLimits``, all optional): drain (close), shed a random fraction, a concurrency
limit, a token bucket (rate + burst, refilled lazily from the clock when a request is admitted: no
timer thread), shedding requests whose ``priority`` is above a cutoff (vLLM/Aphrodite serve a
*lower* value first; default 0), rejecting prompts longer than an estimated token count, and a cap
on the tokens a request may generate (its body is rewritten). Every rejection is the policy's
prebuilt 503 with ``Retry-After``, counted by the policy's reason and by the limit that refused it.

Sources: each driver sets its limits under a source name (``shed``/``close``/``open`` and
``apply`` by default under ``"admission"``; graceful degradation under ``"degradation"``). The
policy enforced is the stricter of all sources, so recovery shedding 30% while degradation sheds
25% sheds 30%, and recovery reopening (``open()``) does not lift degradation's measures.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.integrations.request_limits import BodyOutcome, RequestFacts

logger = logging.getLogger(__name__)

# Distinct rejection reasons counted by name; past this they share one key (bounded memory).
MAX_REASONS = 32
OTHER_REASON = "<other>"
DEFAULT_SOURCE = "admission"


def _number(value: Any, name: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"AdmissionLimits.{name} must be a number in [{low}, {high}], got {value!r}")


def _integer(value: Any, name: str, low: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(f"AdmissionLimits.{name} must be an integer{bound} or None, got {value!r}")


def _least(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


# -- admission control: data ---------------------------------------------------------------------
class AdmissionState(str, Enum):
    """OPEN admits all; LIMITED enforces per-request limits (concurrency, rate, priority, prompt
    length, max_tokens cap); SHEDDING also rejects a random fraction; CLOSED rejects all (draining)."""

    OPEN = "open"
    LIMITED = "limited"
    SHEDDING = "shedding"
    CLOSED = "closed"


class Limit(str, Enum):
    """Which limit refused a request (rejections are counted by it)."""

    CLOSED = "closed"
    SHED = "shed"
    CONCURRENCY = "concurrency"
    RATE = "rate"
    PRIORITY = "priority"
    PROMPT_LENGTH = "prompt_length"
    BREAKER = "breaker_open"  # the model_inference circuit breaker (counted here for one total)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class AdmissionLimits:
    """A whole set of admission limits; None (or 0 for ``shed_fraction``) means no such limit.

    ``max_priority``: requests whose ``priority`` is above it are shed (lower is served first).
    ``max_prompt_tokens``: prompts estimated longer are rejected. ``max_tokens_cap``: generation
    bounds above it are clamped, and set where absent (chat and completions). ``burst``: the token
    bucket's size (default: one second of ``rate_per_s``, at least 1)."""

    shed_fraction: float = 0.0
    concurrency_limit: int | None = None
    rate_per_s: float | None = None
    burst: int | None = None
    max_priority: int | None = None
    max_prompt_tokens: int | None = None
    max_tokens_cap: int | None = None
    retry_after_s: float = 5.0
    closed: bool = False

    def __post_init__(self) -> None:
        _number(self.shed_fraction, "shed_fraction", 0.0, 1.0)
        _number(self.retry_after_s, "retry_after_s", 0.0, 86_400.0)
        if self.rate_per_s is not None:
            _number(self.rate_per_s, "rate_per_s", 0.0, math.inf)
            if self.rate_per_s <= 0:
                raise ValueError(f"AdmissionLimits.rate_per_s must be > 0 (None for no rate limit), got {self.rate_per_s!r}")
        elif self.burst is not None:
            raise ValueError("AdmissionLimits.burst needs rate_per_s (the bucket's refill rate)")
        for name in ("concurrency_limit", "burst", "max_prompt_tokens", "max_tokens_cap"):
            _integer(getattr(self, name), name, 1)
        _integer(self.max_priority, "max_priority", None)
        if not isinstance(self.closed, bool):
            raise ValueError(f"AdmissionLimits.closed must be a bool, got {self.closed!r}")

    @classmethod
    def none(cls) -> AdmissionLimits:
        """No limit: applying it opens admission (for its source)."""
        return _NONE

    @property
    def is_open(self) -> bool:
        return not self.closed and not self.shed_fraction and self.rate_per_s is None and self.concurrency_limit is None \
            and not self.needs_body

    @property
    def needs_body(self) -> bool:
        """Only these limits make the middleware read the request body."""
        return self.max_priority is not None or self.max_prompt_tokens is not None or self.max_tokens_cap is not None

    @property
    def bucket_size(self) -> int:
        if self.rate_per_s is None:
            return 0
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate_per_s))

    def stricter(self, other: AdmissionLimits) -> AdmissionLimits:
        """Both sets at once: per limit, the stricter value (a missing limit is the loosest)."""
        rate, burst = self.rate_per_s, self.burst
        if other.rate_per_s is not None and (rate is None or other.rate_per_s < rate):
            rate, burst = other.rate_per_s, other.burst
        return AdmissionLimits(
            shed_fraction=max(self.shed_fraction, other.shed_fraction),
            concurrency_limit=_least(self.concurrency_limit, other.concurrency_limit),
            rate_per_s=rate,
            burst=burst,
            max_priority=_least(self.max_priority, other.max_priority),
            max_prompt_tokens=_least(self.max_prompt_tokens, other.max_prompt_tokens),
            max_tokens_cap=_least(self.max_tokens_cap, other.max_tokens_cap),
            retry_after_s=max(self.retry_after_s, other.retry_after_s),
            closed=self.closed or other.closed,
        )

    def active(self) -> dict[str, Any]:
        """The limits set (JSON-safe), ``retry_after_s`` with them when any is."""
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "retry_after_s" and (v or k == "max_priority")}
        if out:
            out["retry_after_s"] = self.retry_after_s
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AdmissionLimits:
        """From configuration: unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"AdmissionLimits: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


_NONE = AdmissionLimits()


@dataclass(frozen=True)
class Rejection:
    """The 503 response (ASGI messages) for a policy, built once per policy change rather than per
    request."""

    start: dict[str, Any]
    body: dict[str, Any]


class TokenBucket:
    """Rate limit state: ``size`` tokens at most, ``rate`` added per second, one taken per request.
    Refilled when a request asks (no timer); a clock that steps back adds nothing. Taken on the
    event loop only (no lock)."""

    __slots__ = ("clock", "rate", "size", "stamp", "tokens")

    def __init__(self, rate: float, size: int, clock: Callable[[], float], tokens: float | None = None) -> None:
        self.rate = rate
        self.size = size
        self.clock = clock
        self.tokens = float(size if tokens is None else min(tokens, size))
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        elapsed = now - self.stamp
        self.stamp = now
        if elapsed > 0:
            self.tokens = min(self.size, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class AdmissionPolicy:
    """What the admission controller currently enforces (replaced as a whole, so a reader on the
    event loop never sees half of a change made by a recovery thread), with the response it
    rejects by and, under a rate limit, its token bucket."""

    limits: AdmissionLimits = _NONE
    reason: str = ""
    changed_at: float = 0.0
    bucket: TokenBucket | None = field(default=None, compare=False, repr=False)
    state: AdmissionState = field(init=False)
    needs_body: bool = field(init=False)
    rejection: Rejection = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        limits = self.limits
        if limits.closed:
            state = AdmissionState.CLOSED
        elif limits.shed_fraction > 0.0:
            state = AdmissionState.SHEDDING
        elif limits.is_open:
            state = AdmissionState.OPEN
        else:
            state = AdmissionState.LIMITED
        if (limits.rate_per_s is None) != (self.bucket is None):
            raise ValueError("AdmissionPolicy.bucket: a token bucket exactly when limits.rate_per_s is set")
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "needs_body", limits.needs_body)
        object.__setattr__(self, "rejection", rejection_for(limits.retry_after_s))

    @property
    def shed_fraction(self) -> float:
        return 1.0 if self.limits.closed else self.limits.shed_fraction

    @property
    def retry_after_s(self) -> float:
        return 0.0 if self.state is AdmissionState.OPEN else self.limits.retry_after_s


@dataclass(frozen=True)
class AdmissionStats:
    """Counters for exporters and health endpoints. ``rejected_by_limit``: keys are ``Limit``
    values; ``bodies``: what inspection did with bodies (``BodyOutcome`` values)."""

    policy: AdmissionPolicy
    rejected: int
    admitted_while_limited: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_by_limit: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, int] = field(default_factory=dict)


# -- admission control: behaviour ----------------------------------------------------------------
class AdmissionController:
    """The enforcement point: ``apply(limits, reason, source=...)``, and the shorthands recovery
    uses, ``shed(fraction, ...)``, ``close(...)``, ``open()``.

    Shedding draws at random per request (``rng``, seedable for tests): a counter would be
    predictable — a client sending junk until one request gets a 503 would then know the next ones
    pass. The deciding methods (``admit``, ``screen``, ``admit_request``) run on the event loop;
    the state-changing ones may be called from any thread. ``monotonic`` times the token bucket.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, rng: random.Random | None = None, *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._policy = AdmissionPolicy(changed_at=clock())
        self._sources: dict[str, tuple[AdmissionLimits, str]] = {}
        self._random = (rng or random.Random()).random
        self._rejected = 0
        reset_in_child(self)
        self._admitted_limited = 0
        self._by_reason: dict[str, int] = {}
        self._by_limit: dict[str, int] = {}
        self._bodies: dict[str, int] = {}

    # state changes (recovery / degradation / API side; any thread)
    def apply(self, limits: AdmissionLimits, reason: str = "", *, source: str = DEFAULT_SOURCE) -> AdmissionPolicy:
        """Set ``source``'s whole set of limits (``AdmissionLimits.none()`` removes them); the
        policy enforced becomes the stricter of every source's. Returns that policy."""
        if not isinstance(limits, AdmissionLimits):
            raise ValueError(f"AdmissionController.apply: limits must be AdmissionLimits, got {type(limits).__name__}")
        if not isinstance(source, str) or not source:
            raise ValueError(f"AdmissionController.apply: source must be a non-empty string, got {source!r}")
        with self._lock:
            if limits.is_open:
                self._sources.pop(source, None)
            else:
                self._sources[source] = (limits, str(reason))
            previous = self._policy
            policy = self._build(previous)
            self._policy = policy  # one reference: the middleware reads only this
        if previous.limits != policy.limits:
            logger.warning(
                "aphrodite-sla admission: %s -> %s %s%s", previous.state.value, policy.state.value,
                policy.limits.active() or "", f": {policy.reason}" if policy.reason else "",
            )
        return policy

    def shed(self, fraction: float, retry_after_s: float = 5.0, reason: str = "") -> None:
        """Reject ``fraction`` (0–1) of inference requests with 503 + ``Retry-After``. 0 opens."""
        self.apply(AdmissionLimits(shed_fraction=fraction, retry_after_s=retry_after_s), reason)

    def close(self, retry_after_s: float = 30.0, reason: str = "") -> None:
        """Reject every inference request (503 + ``Retry-After``) without touching the engine."""
        self.apply(AdmissionLimits(closed=True, retry_after_s=retry_after_s), reason)

    def open(self) -> None:
        """Lift the limits set through ``shed``/``close``/``apply`` (default source); other sources'
        (graceful degradation's) stay."""
        self.apply(_NONE)

    def sources(self) -> dict[str, tuple[AdmissionLimits, str]]:
        """Each source's limits and reason."""
        with self._lock:
            return dict(self._sources)

    def _build(self, previous: AdmissionPolicy) -> AdmissionPolicy:
        items = sorted(self._sources.items())
        if not items:
            return AdmissionPolicy(changed_at=self._clock())
        limits = functools.reduce(AdmissionLimits.stricter, (lim for _, (lim, _r) in items))
        reason = "; ".join(r for _, (_lim, r) in items if r)
        bucket = previous.bucket
        if limits.rate_per_s is None:
            bucket = None
        elif bucket is None or bucket.rate != limits.rate_per_s or bucket.size != limits.bucket_size:
            # a changed rate keeps the tokens left (at most the new size): no free burst on every change
            bucket = TokenBucket(limits.rate_per_s, limits.bucket_size, self._monotonic, None if bucket is None else bucket.tokens)
        return AdmissionPolicy(limits, reason, self._clock(), bucket)

    # the hot path (event loop)
    @property
    def policy(self) -> AdmissionPolicy:
        return self._policy

    @property
    def state(self) -> AdmissionState:
        return self._policy.state

    @property
    def limits(self) -> AdmissionLimits:
        return self._policy.limits

    @property
    def shed_fraction(self) -> float:
        return self._policy.shed_fraction

    @property
    def retry_after_s(self) -> float:
        return self._policy.retry_after_s

    def admit(self, in_flight: int = 0) -> bool:
        """The whole decision for a request whose body is not inspected: True to let it through;
        False means reject it (and it has been counted)."""
        policy = self._policy
        if policy.state is AdmissionState.OPEN:
            return True
        return self.screen(policy, in_flight) and self.admit_request(policy, None)

    def screen(self, policy: AdmissionPolicy, in_flight: int) -> bool:
        """The limits that need no body (drain, concurrency, random shedding): checked first, so
        a request refused anyway is not read. False: rejected and counted."""
        limits = policy.limits
        if limits.closed:
            return self._reject(policy, Limit.CLOSED)
        cap = limits.concurrency_limit
        if cap is not None and in_flight >= cap:
            return self._reject(policy, Limit.CONCURRENCY)
        if limits.shed_fraction and self._random() < limits.shed_fraction:
            return self._reject(policy, Limit.SHED)
        return True

    def admit_request(self, policy: AdmissionPolicy, request: RequestFacts | None) -> bool:
        """The rest, after ``screen``: priority and prompt length (when the body was read), then a
        token from the bucket — taken last, so a request refused otherwise costs none. False:
        rejected and counted."""
        limits = policy.limits
        if request is not None:
            if limits.max_priority is not None and request.priority > limits.max_priority:
                return self._reject(policy, Limit.PRIORITY)
            if limits.max_prompt_tokens is not None and request.prompt_tokens > limits.max_prompt_tokens:
                return self._reject(policy, Limit.PROMPT_LENGTH)
        bucket = policy.bucket
        if bucket is not None and not bucket.take():
            return self._reject(policy, Limit.RATE)
        self._admitted_limited += 1
        return True

    def count_rejection(self, reason: str, limit: Limit) -> None:
        """Count a rejection decided elsewhere (the middleware's circuit breaker)."""
        self._rejected += 1
        by = self._by_reason
        if reason not in by and len(by) >= MAX_REASONS:
            reason = OTHER_REASON
        by[reason] = by.get(reason, 0) + 1
        self._by_limit[limit.value] = self._by_limit.get(limit.value, 0) + 1

    def count_body(self, outcome: BodyOutcome) -> None:
        self._bodies[outcome.value] = self._bodies.get(outcome.value, 0) + 1

    def _reject(self, policy: AdmissionPolicy, limit: Limit) -> bool:
        self.count_rejection(policy.reason, limit)
        return False

    def seed(self, value: int) -> None:
        """Draw the shedding decisions from a generator seeded with ``value``: a simulation then
        sheds the same requests on every run (a server keeps its unpredictable default)."""
        self._random = random.Random(value).random

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def stats(self) -> AdmissionStats:
        return AdmissionStats(self._policy, self._rejected, self._admitted_limited, dict(self._by_reason), dict(self._by_limit),
                              dict(self._bodies))


@functools.lru_cache(maxsize=128)
def _rejection(retry: int) -> Rejection:
    return _build_rejection(retry)


def rejection_for(retry_after_s: float) -> Rejection:
    """The 503 for ``Retry-After: ceil(retry_after_s)`` (cached per whole second; a value that is
    not a finite number >= 0 becomes 1 s)."""
    try:
        retry = int(math.ceil(retry_after_s)) if math.isfinite(retry_after_s) and retry_after_s >= 0 else 1
    except TypeError:
        retry = 1
    return _rejection(min(retry, 86_400))


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
