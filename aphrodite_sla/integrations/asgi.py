"""ASGI middleware for the engine's HTTP server: request latency and errors, admission control,
the model_inference circuit breaker, the JSON endpoints, and the engine handle.

Why a pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``): it must not buffer or re-chunk
streaming responses (SSE token streams), and it must add as little as possible to every request.

How it finds the monitor: vLLM and Aphrodite build it as ``app.add_middleware(SLAMiddleware)``
(``--middleware aphrodite_sla.integrations.asgi.SLAMiddleware``), with no arguments of ours. Such
a middleware takes the process runtime's ``MonitorContext`` (``aphrodite_sla.runtime.get_runtime()``,
the one the engine's StatLogger feeds) on first use and starts the runtime when the app starts.
``SLAMiddleware(app, context=...)`` uses a given context; ``SLAMiddleware(app, manager=...)``
records into a given SLA manager with a server state of its own or the given ``server=`` (tests,
custom servers).

Rules it keeps: an exception raised by the application is re-raised unchanged (the engine's own
error handling stays in charge); nothing of ours ever raises into a request; only inference routes
(``integrations.routes``) are measured and shed, never health, metrics or admin endpoints. Only
requests the engine worked on are latency and error samples: a 4xx the server answered itself (auth,
validation) and a client that hung up mid-stream are counted apart, not as slow or failed requests.

Cost: with admission OPEN and no breaker, an inference request costs one policy read, one identity
check and one breaker read before it is measured. Only a policy with a per-request limit (priority,
prompt length, max_tokens cap) makes the middleware read the body (``integrations.request_limits``).

Circuit breaker (``server.inference_breaker``, when set): asked ``allow()`` after admission (a
request admission refuses never takes a half-open trial); refused, the request gets 503 with
``Retry-After: ceil(retry_after_s())`` without reaching the engine. Admitted, it reports
``on_success(duration_s)`` for a status below 500 and ``on_failure(duration_s)`` for 500 and up, an
exception from the app or a response never finished. A client that hung up reports nothing: it
says nothing about the model, and a half-open trial it held is released by the breaker's own
half-open wait.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from aphrodite_sla.integrations import request_limits, routes
from aphrodite_sla.integrations.admission import (
    AdmissionController,
    AdmissionLimits,
    AdmissionPolicy,
    AdmissionState,
    AdmissionStats,
    Limit,
    Rejection,
    rejection_for,
)
from aphrodite_sla.integrations.request_limits import DEFAULT_MAX_INSPECT_BYTES, BodyOutcome, RequestFacts
from aphrodite_sla.integrations.server_state import ServerState
from aphrodite_sla.self_metrics import Component

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.export.endpoints import SLAEndpoints
    from aphrodite_sla.recovery.api import RecoveryApi
    from aphrodite_sla.recovery.api_routing import ApiRequest

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "HTTP_CLIENT_DISCONNECTS", "HTTP_ERROR_PERCENT", "HTTP_FIRST_BYTE_MS", "HTTP_LATENCY_MS", "HTTP_REJECTED", "AdmissionController",
    "AdmissionLimits", "AdmissionPolicy", "AdmissionState", "AdmissionStats", "SLAMiddleware", "ServerState", "register_http_metrics",
]

BREAKER_REASON = "circuit breaker open"  # the reason breaker rejections are counted under

# Series this middleware records (one sample each per finished inference request).
HTTP_LATENCY_MS = "http_request_latency_ms"  # request start -> last body byte handed to the server
HTTP_FIRST_BYTE_MS = "http_time_to_first_byte_ms"  # request start -> first non-empty body chunk
HTTP_ERROR_PERCENT = "http_error_percent"  # 100 for an error, 0 otherwise: its mean is the error rate

HTTP_CLIENT_DISCONNECTS = "http_client_disconnects"  # 1 per request the client hung up on before its end
HTTP_REJECTED = "http_rejected_requests"  # 1 per request answered 4xx (auth, validation): not the engine's work
CLIENT_DISCONNECTED = -1  # the outcome of a request whose client went away
DEFAULT_WINDOW_S = 300.0
DEFAULT_SAMPLE_RATE_HZ = 50.0  # ring size = window × rate: 15 000 requests per 5 min kept exactly

# How many HTTP requests may look for ``app.state.engine_client`` before we stop looking.
ENGINE_CAPTURE_ATTEMPTS = 64


CONSOLE_PREFIX = "/console"  # the incident console (aphrodite_sla.console), when incidents run
API_PREFIX = "/api/auto-recovery"  # the recovery REST API (aphrodite_sla.recovery.api), answered here
MAX_API_BODY = 64 * 1024

# Served by the middleware itself (never shed, never counted); see aphrodite_sla.export.endpoints.
_ENDPOINT_PATHS = frozenset({"/health/production", "/metrics/summary", "/metrics/history"})


def register_http_metrics(
    manager: Any, window_seconds: float = DEFAULT_WINDOW_S, sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ
) -> bool:
    """Register the series this middleware records; False (logged) if the manager refused."""
    try:
        manager.register_metric(HTTP_LATENCY_MS, window_seconds, sample_rate_hz, unit="ms", thin=True)
        manager.register_metric(HTTP_FIRST_BYTE_MS, window_seconds, sample_rate_hz, unit="ms", thin=True)
        manager.register_metric(HTTP_ERROR_PERCENT, window_seconds, sample_rate_hz, max_value=100.0, unit="%")
        manager.register_metric(HTTP_CLIENT_DISCONNECTS, window_seconds, sample_rate_hz, max_value=1.0, unit="requests")
        manager.register_metric(HTTP_REJECTED, window_seconds, sample_rate_hz, max_value=1.0, unit="requests")
        return True
    except Exception:
        logger.exception("aphrodite-sla: could not register the HTTP series; requests will not be counted")
        return False


# -- the middleware ------------------------------------------------------------------------------
class SLAMiddleware:
    """Measures inference requests (latency to the last body byte, time to first byte, error or
    not), sheds load when the admission controller says so, serves the JSON endpoints and
    captures the engine handle."""

    def __init__(
        self,
        app: ASGIApp,
        manager: Any = None,
        admission: AdmissionController | None = None,
        clock: Callable[[], float] = time.perf_counter,
        *,
        context: MonitorContext | None = None,
        server: ServerState | None = None,
        is_inference: Callable[[str], bool] = routes.is_inference,
        error_status_min: int = 500,
        extra_error_statuses: Iterable[int] = (),
        window_seconds: float = DEFAULT_WINDOW_S,
        sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
        max_inspect_bytes: int = DEFAULT_MAX_INSPECT_BYTES,
    ) -> None:
        self.app = app
        self.clock = clock  # durations only (monotonic by default); samples carry the manager's time
        self.is_inference = is_inference  # which paths are measured and shed (integrations.routes)
        self.error_status_min = int(error_status_min)
        self.extra_error_statuses = frozenset(int(s) for s in extra_error_statuses)  # e.g. {429}
        self.window_seconds = float(window_seconds)
        self.sample_rate_hz = float(sample_rate_hz)
        self.max_inspect_bytes = int(max_inspect_bytes)  # larger request bodies pass uninspected
        self.record_errors = 0  # our own failures while recording, inspecting or reporting (never the app's)
        self._capture_left = ENGINE_CAPTURE_ATTEMPTS
        self.manager: Any = None
        self.server: ServerState | None = None
        self.endpoints: SLAEndpoints | None = None
        self.recovery_api: RecoveryApi | None = None  # the /api/auto-recovery routes (with the runtime's context)
        self._context = context
        self._resolved = False
        if context is not None:
            self._attach(context.manager, context.server, context.endpoints)
        elif manager is not None or server is not None:
            self._attach(manager, server if server is not None else ServerState(admission), None)
        elif admission is not None:
            self.server = ServerState(admission)
            self.server.middleware_installed = True

    def _attach(self, manager: Any, server: ServerState, endpoints: SLAEndpoints | None) -> None:
        self.manager, self.server, self.endpoints = manager, server, endpoints
        recovery = getattr(self._context, "recovery", None)
        self.recovery_api = recovery.api if recovery is not None else None
        server.middleware_installed = True
        self._resolved = True
        if manager is not None:
            register_http_metrics(manager, self.window_seconds, self.sample_rate_hz)

    def _resolve(self) -> None:
        """An argument-less middleware: take the process runtime's context (once)."""
        self._resolved = True
        try:
            from aphrodite_sla.runtime import get_runtime

            runtime = get_runtime()
            if not runtime.config.enabled:
                logger.info("aphrodite-sla: monitoring disabled by configuration; HTTP requests are not counted")
                return
            ctx = runtime.context
            admission_given = self.server is not None and self.server.admission is not ctx.server.admission
            self._context = ctx
            self._attach(ctx.manager, ctx.server, ctx.endpoints)
            if admission_given:
                logger.warning("aphrodite-sla: SLAMiddleware(admission=...) ignored: the runtime's admission controller is used")
        except Exception:
            logger.exception("aphrodite-sla: no SLA runtime; HTTP requests pass through unmonitored")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self._resolved:
            self._resolve()
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
        if path in _ENDPOINT_PATHS and self.endpoints is not None:
            response = self.endpoints.handle(scope.get("method", "GET"), path)
            if response is not None:
                await self.endpoints.asgi_send(response, send)
                return
        incidents = getattr(self._context, "incidents", None)
        if incidents is not None and path.startswith("/api/") and incidents.api.owns(path):
            await _serve_api(incidents.api, scope, path, receive, send, in_thread=True)  # the store blocks: off the loop
            return
        rca = getattr(self._context, "rca", None)
        if rca is not None and path.startswith("/api/v1/rca") and rca.api.owns(path):
            await _serve_api(rca.api, scope, path, receive, send, in_thread=True)  # an analysis takes ~0.1 s: off the loop
            return
        if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
            from aphrodite_sla.console.mount import console_of

            console = console_of(self._context)
            if console is not None:  # the incident console (its pages render on a worker thread)
                from aphrodite_sla.console.asgi import serve_console

                await serve_console(console, scope, path, receive, send)
                return
        api = self.recovery_api
        if api is not None and path.startswith(API_PREFIX) and api.owns(path):
            await _serve_api(api, scope, path, receive, send)
            return
        server = self.server
        if server is None or not self.is_inference(path):
            await self.app(scope, receive, send)
            return
        admission = server.admission
        policy = admission.policy
        started = None
        if policy.state is not AdmissionState.OPEN:
            started = self.clock()
            admitted = await self._admit_limited(admission, policy, server, path, scope, receive)
            if admitted is None:
                await _answer(policy.rejection, send)
                return
            receive = admitted
        breaker = server.inference_breaker
        if breaker is not None:
            retry_after = self._breaker_refuses(breaker)
            if retry_after is not None:
                admission.count_rejection(BREAKER_REASON, Limit.BREAKER)
                await _answer(rejection_for(retry_after), send)
                return
        await self._observed(self.manager, server, scope, receive, send, breaker, started)

    async def _admit_limited(
        self, admission: AdmissionController, policy: AdmissionPolicy, server: ServerState, path: str, scope: Scope, receive: Receive
    ) -> Receive | None:
        """Decide under a limiting policy: the ``receive`` the app is to read from, or None for a
        rejection (counted). The limits that need no body come first, so a request refused anyway
        is never read."""
        if not admission.screen(policy, server.in_flight):
            return None
        facts = None
        if policy.needs_body:
            receive, facts = await self._inspect(admission, policy.limits, path, scope, receive)
        return receive if admission.admit_request(policy, facts) else None

    async def _inspect(
        self, admission: AdmissionController, limits: AdmissionLimits, path: str, scope: Scope, receive: Receive
    ) -> tuple[Receive, RequestFacts | None]:
        """Buffer the body (bounded), read its facts, cap its max_tokens; the app gets a receive
        that replays it. Anything odd passes the body through unchanged with no facts."""
        content_type = request_limits.header(scope, b"content-type")
        if not request_limits.is_json(content_type):
            admission.count_body(BodyOutcome.NOT_JSON)
            return receive, None
        declared = request_limits.header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_inspect_bytes:
            admission.count_body(BodyOutcome.OVERSIZED)
            return receive, None
        buffered = await request_limits.read_body(receive, self.max_inspect_bytes)
        if not buffered.complete or buffered.size > self.max_inspect_bytes:  # (a last chunk may carry it past the bound)
            admission.count_body(BodyOutcome.INCOMPLETE if buffered.pending is not None else BodyOutcome.OVERSIZED)
            return request_limits.replay(buffered, receive), None
        try:
            doc = request_limits.parse(buffered.body)
            if doc is None:
                admission.count_body(BodyOutcome.UNPARSABLE)
                return request_limits.replay(buffered, receive), None
            facts = request_limits.facts(doc, estimate_prompt=limits.max_prompt_tokens is not None)
            body = None
            cap = limits.max_tokens_cap
            if cap is not None and request_limits.cap_max_tokens(doc, cap, set_when_absent=path in request_limits.SET_MAX_TOKENS_PATHS):
                body = request_limits.serialize(doc)
            if body is None:
                admission.count_body(BodyOutcome.INSPECTED)
                return request_limits.replay(buffered, receive), facts
            request_limits.set_content_length(scope, len(body))
            admission.count_body(BodyOutcome.REWRITTEN)
            return request_limits.replay(buffered, receive, body), facts
        except Exception as exc:
            self._own_failure("inspecting a request body", exc)
            return request_limits.replay(buffered, receive), None

    def _breaker_refuses(self, breaker: Any) -> float | None:
        """None to go ahead; else the seconds to tell the client to wait. A breaker that raises
        lets the request through (counted): our failure must not become the engine's outage."""
        try:
            if breaker.allow():
                return None
        except Exception as exc:
            self._own_failure("asking the circuit breaker", exc)
            return None
        try:
            retry = float(breaker.retry_after_s())
        except Exception as exc:
            self._own_failure("reading the circuit breaker's retry time", exc)
            retry = 1.0
        return retry if math.isfinite(retry) and retry >= 0 else 1.0

    def _report(self, breaker: Any, status: int, duration_s: float) -> None:
        try:
            if status >= 500:
                breaker.on_failure(duration_s)
            else:
                breaker.on_success(duration_s)
        except Exception as exc:
            self._own_failure("reporting to the circuit breaker", exc)

    async def _observed(
        self, manager: Any, server: ServerState, scope: Scope, receive: Receive, send: Send, breaker: Any = None,
        started: float | None = None,
    ) -> None:
        """Run the request; record its outcome (and report it to the breaker). It counts as in
        flight (waiting on the engine) only once its body has been received: a client trickling a
        body in is not an engine stall."""
        clock = self.clock
        if started is None:
            started = clock()
        status = 0
        first_byte: float | None = None
        done = False
        in_flight = False
        disconnected = False

        async def observing_receive() -> Message:
            nonlocal in_flight, disconnected
            message = await receive()
            kind = message.get("type")
            if kind == "http.request" and not message.get("more_body", False) and not in_flight:
                in_flight = True
                server.in_flight += 1
            elif kind == "http.disconnect":
                disconnected = True
            return message

        def finish(outcome_status: int) -> None:
            nonlocal done
            done = True
            end = clock()
            if manager is not None:
                self._record(manager, outcome_status, started, end if first_byte is None else first_byte, end)
            if breaker is not None and outcome_status != CLIENT_DISCONNECTED:
                self._report(breaker, outcome_status, end - started)

        async def observing_send(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.body":
                await send(message)
                if first_byte is None and message.get("body"):
                    first_byte = clock()
                if not message.get("more_body", False) and not done:
                    finish(status)
                return
            if message["type"] == "http.response.start":
                status = message.get("status", 500)
            await send(message)

        try:
            await self.app(scope, observing_receive, observing_send)
        except BaseException as exc:
            # The app failed, or the client went away, before the response was complete. Re-raised
            # unchanged; a client that hung up is its own outcome, not a server error.
            if not done:
                gone = disconnected or isinstance(exc, OSError)
                finish(CLIENT_DISCONNECTED if gone else 500)
            raise
        finally:
            if in_flight:
                server.in_flight -= 1
        if not done:  # returned without finishing the response
            finish(CLIENT_DISCONNECTED if disconnected else 500)

    def _record(self, manager: Any, status: int, started: float, first_byte: float, end: float) -> None:
        """One finished request: its latency, time to first byte and error-or-not; a request the
        engine never accepted (auth, validation: 4xx) or a client that hung up is counted apart."""
        try:
            if status == CLIENT_DISCONNECTED:
                manager.record_measurement(HTTP_CLIENT_DISCONNECTS, 1.0)
                return
            error = status >= self.error_status_min or status in self.extra_error_statuses
            if 400 <= status < 500 and not error:
                manager.record_measurement(HTTP_REJECTED, 1.0)
                return
            manager.record_measurement(HTTP_LATENCY_MS, (end - started) * 1000.0)
            manager.record_measurement(HTTP_FIRST_BYTE_MS, (first_byte - started) * 1000.0)
            manager.record_measurement(HTTP_ERROR_PERCENT, 100.0 if error else 0.0)
        except Exception as exc:
            self._own_failure("recording a request", exc)

    def _own_failure(self, what: str, exc: Exception) -> None:
        """Our own failure during a request: counted and reported, never raised into the request."""
        self.record_errors += 1
        self_metrics = getattr(self.manager, "self_metrics", None)
        if self_metrics is not None:
            self_metrics.error(Component.MIDDLEWARE, f"{what}: {type(exc).__name__}: {exc}")
        elif self.record_errors == 1:
            logger.error("aphrodite-sla: %s failed (counted, logged once)", what, exc_info=exc)

    def _capture_engine(self, scope: Scope) -> None:
        """Read ``scope["app"].state.engine_client`` (Starlette puts the app in the scope)."""
        try:
            client = getattr(getattr(scope.get("app"), "state", None), "engine_client", None)
        except Exception:
            client = None
        if client is not None:
            if self.server is not None:
                self.server.engine_client = client
                self.server.engine_loop = asyncio.get_running_loop()
            self._capture_left = 0
        elif self._capture_left > 0:
            self._capture_left -= 1

    def _lifespan_send(self, scope: Scope, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message.get("type") == "lifespan.startup.complete":
                self._capture_engine(scope)
                self._start_runtime()
            await send(message)

        return lifespan_send

    def _start_runtime(self) -> None:
        """With the process runtime's context: make sure the evaluator runs once the app serves,
        even if no engine StatLogger started it (idempotent; off the loop's critical path)."""
        if self._context is None or self.manager is not self._context.manager:
            return
        try:
            from aphrodite_sla.runtime import get_runtime

            runtime = get_runtime()
            if runtime.context is self._context:
                runtime.start()
        except Exception:
            logger.exception("aphrodite-sla: could not start the SLA runtime")


async def _answer(rejection: Rejection, send: Send) -> None:
    """A prebuilt 503 + Retry-After; the engine never sees the request. The start message goes out
    as a copy: an outer middleware adding a header (CORS, request ids) must not grow the one list
    every rejection shares."""
    start = rejection.start
    await send({"type": start["type"], "status": start["status"], "headers": list(start["headers"])})
    await send(dict(rejection.body))


async def read_api_request(scope: Scope, path: str, receive: Receive, max_body: int) -> ApiRequest | None:
    """The request as our framework-neutral ``ApiRequest``: the body read up to ``max_body`` bytes
    (past that the read stops: the handler sees an over-long body and refuses it), headers
    lower-cased, the query string parsed; None when the client went away."""
    from urllib.parse import parse_qsl

    from aphrodite_sla.recovery.api_routing import ApiRequest

    body = b""
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            return None  # the client went away
        body += message.get("body", b"")
        if len(body) > max_body or not message.get("more_body", False):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return ApiRequest(scope.get("method", "GET"), path, query, headers, body[: max_body + 1])


async def _serve_api(api: Any, scope: Scope, path: str, receive: Receive, send: Send, *, in_thread: bool = False) -> None:
    """Answer a recovery API call: read the (bounded) body, route it; the handlers only read copies
    or flip thread-safe switches, and hand slow work to the recovery loop, so this never waits on
    recovery."""
    request = await read_api_request(scope, path, receive, MAX_API_BODY)
    if request is None:
        return
    response = await asyncio.to_thread(api.handle, request) if in_thread else api.handle(request)
    start = {"type": "http.response.start", "status": response.status,
             "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers]}
    await send(start)
    await send({"type": "http.response.body", "body": response.body})
