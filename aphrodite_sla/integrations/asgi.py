"""ASGI middleware for the engine's HTTP server: request latency and errors, admission control.

Why a pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``): it must not buffer or re-chunk
streaming responses (SSE token streams), and it must add as little as possible to every request.

vLLM and Aphrodite build it as ``app.add_middleware(SLAMiddleware)`` (``--middleware
aphrodite_sla.integrations.asgi.SLAMiddleware``), with no arguments, so the SLA manager, the
admission controller and the captured engine handle live in process-wide accessors here
(``set_default_manager`` / ``get_default_manager``, ``get_default_admission``,
``get_engine_client``). Explicit ``SLAMiddleware(app, manager=..., admission=..., clock=...)`` works
too.

Rules it keeps: an exception raised by the application is re-raised unchanged (the engine's own
error handling stays in charge); nothing of ours ever raises into a request; only inference paths
are measured and shed, never health or metrics endpoints.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Series this middleware records (one sample each per finished inference request).
HTTP_LATENCY_MS = "http_request_latency_ms"  # request start -> last body byte handed to the server
HTTP_FIRST_BYTE_MS = "http_time_to_first_byte_ms"  # request start -> first non-empty body chunk
HTTP_ERROR_PERCENT = "http_error_percent"  # 100 for an error, 0 otherwise: its mean is the error rate

# Paths counted and shed by default: the OpenAI-compatible inference API. ``/v1/models`` is a
# listing, not inference: counting it would dilute the latency SLA.
DEFAULT_PATHS: tuple[str, ...] = ("/v1/",)
DEFAULT_EXCLUDED_PATHS: tuple[str, ...] = ("/v1/models",)
DEFAULT_WINDOW_S = 300.0
DEFAULT_SAMPLE_RATE_HZ = 50.0  # ring size = window × rate: 15 000 requests per 5 min kept exactly

# How many HTTP requests may look for ``app.state.engine_client`` before we stop looking.
ENGINE_CAPTURE_ATTEMPTS = 64
# Distinct rejection reasons counted by name; past this they share one key (bounded memory).
MAX_REASONS = 32
OTHER_REASON = "<other>"


# -- admission control: data ---------------------------------------------------------------------
class AdmissionState(str, Enum):
    """OPEN admits all; SHEDDING rejects a fixed fraction, deterministically; CLOSED rejects all."""

    OPEN = "open"
    SHEDDING = "shedding"
    CLOSED = "closed"


@dataclass(frozen=True)
class AdmissionPolicy:
    """What the admission controller currently does (replaced as a whole, so a reader on the event
    loop never sees half of a change made by a recovery thread)."""

    state: AdmissionState = AdmissionState.OPEN
    shed_fraction: float = 0.0
    retry_after_s: float = 0.0
    reason: str = ""
    changed_at: float = 0.0


@dataclass(frozen=True)
class AdmissionStats:
    """Counters for exporters and health endpoints."""

    policy: AdmissionPolicy
    rejected: int
    admitted_while_limited: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rejection:
    """The 503 response for a policy, built once per policy change rather than per request."""

    start: dict[str, Any]
    body: dict[str, Any]


# -- admission control: behaviour ----------------------------------------------------------------
class AdmissionController:
    """The enforcement point recovery drives: ``shed(fraction, ...)``, ``close(...)``, ``open()``.

    Shedding is deterministic (error diffusion: a running sum of ``fraction`` rejects a request each
    time it passes 1), so 0.5 rejects exactly every other request and tests need no randomness.
    ``admit()`` runs on the event loop; the state-changing methods may be called from any thread.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._policy = AdmissionPolicy(changed_at=clock())
        self._rejection = _build_rejection(self._policy)
        self._acc = 0.0
        self._rejected = 0
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
            self._rejection = _build_rejection(policy)
            self._acc = 0.0
            self._policy = policy  # published last: admit() reads only this reference
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
        if policy.state is AdmissionState.SHEDDING:
            acc = self._acc + policy.shed_fraction
            if acc < 1.0 - 1e-9:
                self._acc = acc
                self._admitted_limited += 1
                return True
            self._acc = acc - 1.0
        self._count_rejection(policy.reason)
        return False

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


def _build_rejection(policy: AdmissionPolicy) -> _Rejection:
    # The reason stays in our logs and stats; clients get a generic message (no internal details).
    retry = int(math.ceil(policy.retry_after_s))
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
    return _Rejection(
        start={"type": "http.response.start", "status": 503, "headers": headers},
        body={"type": "http.response.body", "body": body, "more_body": False},
    )


# -- process-wide accessors ------------------------------------------------------------------------
@dataclass
class _ProcessState:
    """What a middleware built with no arguments reads (one per process)."""

    manager: Any = None
    engine_client: Any = None
    admission: AdmissionController = field(default_factory=AdmissionController)
    in_flight: int = 0
    middleware_installed: bool = False
    warned_no_manager: bool = False
    endpoints: Any = None  # SLAEndpoints serving /health/production and /metrics/summary


_PROCESS = _ProcessState()
# Served by the middleware itself (never shed, never counted); see aphrodite_sla.export.endpoints.
_ENDPOINT_PATHS = frozenset({"/health/production", "/metrics/summary"})


def set_default_endpoints(endpoints: Any) -> None:
    """The JSON endpoints (``aphrodite_sla.export.endpoints.SLAEndpoints``) the middleware serves
    inside the engine's app: ``GET /health/production`` and ``GET /metrics/summary``."""
    _PROCESS.endpoints = endpoints


def set_default_manager(manager: Any) -> None:
    """Give every argument-less ``SLAMiddleware`` its SLA manager (None: stop counting). Registers
    the HTTP series now, so the first request does not have to."""
    if manager is not None:
        register_http_metrics(manager)
    _PROCESS.manager = manager


def get_default_manager() -> Any:
    return _PROCESS.manager


def set_engine_client(client: Any) -> None:
    """Store the engine handle (e.g. from an endpoint plugin's ``init_state``) for recovery actions."""
    _PROCESS.engine_client = client


def get_engine_client() -> Any:
    """The engine handle (vLLM/Aphrodite ``AsyncLLM``) captured from ``app.state``, or None."""
    return _PROCESS.engine_client


def get_default_admission() -> AdmissionController:
    """The admission controller every argument-less ``SLAMiddleware`` enforces."""
    return _PROCESS.admission


def set_default_admission(controller: AdmissionController) -> None:
    """Replace the process-wide admission controller (read per request, so effective at once)."""
    if not isinstance(controller, AdmissionController):
        raise TypeError(f"set_default_admission: expected AdmissionController, got {type(controller).__name__}")
    _PROCESS.admission = controller


def get_in_flight_requests() -> int | None:
    """Inference requests inside the engine's HTTP server now, for stall detection; None while no
    ``SLAMiddleware`` exists in this process (unknown, not zero)."""
    return _PROCESS.in_flight if _PROCESS.middleware_installed else None


def register_http_metrics(
    manager: Any, window_seconds: float = DEFAULT_WINDOW_S, sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ
) -> bool:
    """Register the series this middleware records; False (logged) if the manager refused."""
    try:
        manager.register_metric(HTTP_LATENCY_MS, window_seconds, sample_rate_hz, unit="ms")
        manager.register_metric(HTTP_FIRST_BYTE_MS, window_seconds, sample_rate_hz, unit="ms")
        manager.register_metric(HTTP_ERROR_PERCENT, window_seconds, sample_rate_hz, max_value=100.0, unit="%")
        return True
    except Exception:
        logger.exception("aphrodite-sla: could not register the HTTP series; requests will not be counted")
        return False


# -- the middleware ------------------------------------------------------------------------------
class SLAMiddleware:
    """Measures inference requests (latency to the last body byte, time to first byte, error or
    not), sheds load when the admission controller says so, and captures the engine handle."""

    def __init__(
        self,
        app: ASGIApp,
        manager: Any = None,
        admission: AdmissionController | None = None,
        clock: Callable[[], float] = time.perf_counter,
        *,
        paths: Iterable[str] = DEFAULT_PATHS,
        exclude_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
        error_status_min: int = 500,
        extra_error_statuses: Iterable[int] = (),
        window_seconds: float = DEFAULT_WINDOW_S,
        sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
    ) -> None:
        self.app = app
        self.manager = manager
        self.admission = admission
        self.clock = clock  # durations only (monotonic by default); samples carry the manager's time
        self.paths = tuple(paths)
        self.exclude_paths = tuple(exclude_paths)
        self.error_status_min = int(error_status_min)
        self.extra_error_statuses = frozenset(int(s) for s in extra_error_statuses)  # e.g. {429}
        self.window_seconds = float(window_seconds)
        self.sample_rate_hz = float(sample_rate_hz)
        self.record_errors = 0  # our own failures while recording (never the app's)
        self._capture_left = ENGINE_CAPTURE_ATTEMPTS
        self._registered: Any = None
        _PROCESS.middleware_installed = True
        if manager is not None:
            self._ensure_registered(manager)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self.app(scope, receive, self._lifespan_send(scope, send))
            else:
                await self.app(scope, receive, send)
            return
        if self._capture_left:
            self._capture_engine(scope)
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):  # behind --root-path the path carries the prefix
            path = path[len(root):]
        if path in _ENDPOINT_PATHS and _PROCESS.endpoints is not None:
            response = _PROCESS.endpoints.handle(scope.get("method", "GET"), path)
            if response is not None:
                await _PROCESS.endpoints.asgi_send(response, send)
                return
        if not path.startswith(self.paths) or path.startswith(self.exclude_paths):
            await self.app(scope, receive, send)
            return
        admission = self.admission if self.admission is not None else _PROCESS.admission
        if admission._policy.state is not AdmissionState.OPEN and not admission.admit():
            rejection = admission._rejection
            await send(rejection.start)
            await send(rejection.body)
            return
        manager = self.manager if self.manager is not None else _PROCESS.manager
        _PROCESS.in_flight += 1
        try:
            if manager is None:
                if not _PROCESS.warned_no_manager:
                    _PROCESS.warned_no_manager = True
                    logger.info("aphrodite-sla: no SLA manager set (set_default_manager); HTTP requests are not counted")
                await self.app(scope, receive, send)
            else:
                await self._observed(manager, scope, receive, send)
        finally:
            _PROCESS.in_flight -= 1

    async def _observed(self, manager: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if manager is not self._registered:
            self._ensure_registered(manager)
        clock = self.clock
        started = clock()
        status = 0
        first_byte: float | None = None
        done = False

        async def observing_send(message: Message) -> None:
            nonlocal status, first_byte, done
            if message["type"] == "http.response.body":
                await send(message)
                if first_byte is None and message.get("body"):
                    first_byte = clock()
                if not message.get("more_body", False) and not done:
                    done = True
                    end = clock()
                    self._record(manager, status, started, end if first_byte is None else first_byte, end)
                return
            if message["type"] == "http.response.start":
                status = message.get("status", 500)
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except BaseException:
            # The app failed (or the client went away) before the response was complete: a
            # server-side error from the client's point of view. Re-raised unchanged.
            if not done:
                done = True
                end = clock()
                self._record(manager, 500, started, end if first_byte is None else first_byte, end)
            raise
        if not done:  # returned without finishing the response (e.g. client disconnected mid-stream)
            done = True
            end = clock()
            self._record(manager, 500, started, end if first_byte is None else first_byte, end)

    def _record(self, manager: Any, status: int, started: float, first_byte: float, end: float) -> None:
        try:
            error = status >= self.error_status_min or status in self.extra_error_statuses
            manager.record_measurement(HTTP_LATENCY_MS, (end - started) * 1000.0)
            manager.record_measurement(HTTP_FIRST_BYTE_MS, (first_byte - started) * 1000.0)
            manager.record_measurement(HTTP_ERROR_PERCENT, 100.0 if error else 0.0)
        except Exception:
            self.record_errors += 1
            if self.record_errors == 1:
                logger.exception("aphrodite-sla: recording an HTTP request failed (counted, logged once)")

    def _ensure_registered(self, manager: Any) -> None:
        register_http_metrics(manager, self.window_seconds, self.sample_rate_hz)
        self._registered = manager  # even on failure: refused samples are then counted as drops

    def _capture_engine(self, scope: Scope) -> None:
        """Read ``scope["app"].state.engine_client`` (Starlette puts the app in the scope)."""
        try:
            client = getattr(getattr(scope.get("app"), "state", None), "engine_client", None)
        except Exception:
            client = None
        if client is not None:
            _PROCESS.engine_client = client
            self._capture_left = 0
        elif self._capture_left > 0:
            self._capture_left -= 1

    def _lifespan_send(self, scope: Scope, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message.get("type") == "lifespan.startup.complete":
                self._capture_engine(scope)
            await send(message)

        return lifespan_send
