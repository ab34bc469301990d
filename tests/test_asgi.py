"""SLAMiddleware against a real uvicorn server on 127.0.0.1 and real HTTP requests (httpx):
latency and errors of inference requests, streaming untouched, admission control, engine capture."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from aphrodite_sla import ManualClock, SLAManager
from aphrodite_sla import runtime as rt
from aphrodite_sla.integrations.asgi import (
    HTTP_CLIENT_DISCONNECTS,
    HTTP_ERROR_PERCENT,
    HTTP_FIRST_BYTE_MS,
    HTTP_LATENCY_MS,
    HTTP_REJECTED,
    AdmissionController,
    AdmissionLimits,
    AdmissionState,
    ServerState,
    SLAMiddleware,
)

TIMEOUT = 10.0


# -- helpers -------------------------------------------------------------------------------------
@contextlib.contextmanager
def serve(app, *, lifespan: str = "on") -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:  # uvicorn exposes no event for this; bounded poll
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def values(manager: SLAManager, name: str) -> list[float]:
    buf = manager.store.buffer(name)
    assert buf is not None, f"{name} not registered"
    return buf.window(0.0, 1e12)[1].tolist()


@pytest.fixture(autouse=True)
def fresh_runtime(monkeypatch):
    """Argument-less middlewares take the process runtime's context: a fresh one per test."""
    for key in list(os.environ):
        if key.startswith("APHRODITE_SLA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("APHRODITE_SLA_SYSTEM_SAMPLER", "0")
    rt.reset_runtime()
    yield
    rt.reset_runtime()


def runtime_context():
    return rt.get_runtime().context


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as c:
        yield c


def explicit_app(manager: SLAManager, clock: ManualClock, server: ServerState | None = None):
    """A Starlette app whose endpoints advance the middleware's clock: latencies are exact."""
    server = server if server is not None else ServerState()
    raised: list[BaseException] = []
    handled: list[BaseException] = []
    acks = [threading.Event() for _ in range(2)]
    gate_timeouts: list[int] = []

    async def ok(request: Request):
        await request.body()  # as an engine endpoint does: the request is in flight once its body is in
        clock.advance(0.25)
        return JSONResponse({"ok": True, "in_flight": server.in_flight_requests()})

    async def fail(request: Request):
        clock.advance(0.1)
        return JSONResponse({"error": "engine error"}, status_code=500)

    async def limited(request: Request):
        return JSONResponse({"error": "slow down"}, status_code=429)

    async def boom(request: Request):
        clock.advance(0.05)
        exc = RuntimeError("boom")
        raised.append(exc)
        raise exc

    async def stream(request: Request):
        async def chunks():
            for i in range(3):
                clock.advance(0.1)
                yield f"chunk{i}\n".encode()
                if i < 2:  # the next chunk only after the client has read this one: no buffering
                    if not await asyncio.to_thread(acks[i].wait, TIMEOUT):
                        gate_timeouts.append(i)
                        return

        return StreamingResponse(chunks(), media_type="text/plain")

    async def health(request: Request):
        return PlainTextResponse("ok")

    async def on_error(request: Request, exc: Exception):
        handled.append(exc)
        return PlainTextResponse("internal error", status_code=500)

    app = Starlette(
        routes=[
            Route("/v1/completions", ok, methods=["POST"]),
            Route("/v1/fail", fail, methods=["POST"]),
            Route("/v1/limited", limited, methods=["POST"]),
            Route("/v1/boom", boom, methods=["POST"]),
            Route("/v1/stream", stream, methods=["POST"]),
            Route("/v1/models", health),
            Route("/health", health),
            Route("/metrics", health),
        ],
        middleware=[Middleware(SLAMiddleware, manager=manager, server=server, clock=clock)],
        exception_handlers={Exception: on_error},
    )
    app.state.test = dict(raised=raised, handled=handled, acks=acks, gate_timeouts=gate_timeouts, server=server)
    return app


def vllm_like_app() -> FastAPI:
    """A FastAPI app built as vLLM builds its server: ``app.add_middleware(SLAMiddleware)``."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat():
        return {"ok": True}

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse("# metrics")

    app.add_middleware(SLAMiddleware)
    return app


@pytest.fixture
def explicit():
    clock = ManualClock()
    manager = SLAManager(clock=clock)
    return manager, clock


# -- measurement -----------------------------------------------------------------------------------
def test_success_records_latency_and_no_error(explicit, client):
    manager, clock = explicit
    server = ServerState()
    assert server.in_flight_requests() is None  # no middleware serves this state yet: unknown
    with serve(explicit_app(manager, clock, server)) as url:
        r = client.post(f"{url}/v1/completions", json={"prompt": "hi"})
    assert r.status_code == 200 and r.json()["ok"] is True
    assert r.json()["in_flight"] == 1
    assert server.in_flight_requests() == 0
    assert values(manager, HTTP_LATENCY_MS) == pytest.approx([250.0], abs=1e-3)
    assert values(manager, HTTP_FIRST_BYTE_MS) == pytest.approx([250.0], abs=1e-3)
    assert values(manager, HTTP_ERROR_PERCENT) == [0.0]


def test_500_from_app_is_an_error_429_is_counted_apart(explicit, client):
    manager, clock = explicit
    with serve(explicit_app(manager, clock)) as url:
        assert client.post(f"{url}/v1/fail").status_code == 500
        assert client.post(f"{url}/v1/limited").status_code == 429
    assert values(manager, HTTP_ERROR_PERCENT) == [100.0]
    assert values(manager, HTTP_LATENCY_MS) == pytest.approx([100.0], abs=1e-3)
    assert values(manager, HTTP_REJECTED) == [1.0]  # answered without the engine: not a latency sample


def test_429_counted_when_configured(explicit, client):
    manager, clock = explicit
    app = Starlette(
        routes=[Route("/v1/x", lambda r: JSONResponse({}, status_code=429), methods=["POST"])],
        middleware=[Middleware(SLAMiddleware, manager=manager, clock=clock, extra_error_statuses=(429,))],
    )
    with serve(app) as url:
        assert client.post(f"{url}/v1/x").status_code == 429
    assert values(manager, HTTP_ERROR_PERCENT) == [100.0]


def test_exception_in_app_recorded_as_error_and_reraised_unchanged(explicit, client):
    manager, clock = explicit
    app = explicit_app(manager, clock)
    with serve(app) as url:
        r = client.post(f"{url}/v1/boom")
    assert r.status_code == 500
    seen = app.state.test
    # Starlette's outermost error middleware got the very exception the endpoint raised.
    assert len(seen["raised"]) == 1 and seen["handled"] == seen["raised"]
    assert values(manager, HTTP_ERROR_PERCENT) == [100.0]
    assert values(manager, HTTP_LATENCY_MS) == pytest.approx([50.0], abs=1e-3)


def test_streaming_latency_covers_whole_stream_and_chunks_pass_one_by_one(explicit, client):
    manager, clock = explicit
    app = explicit_app(manager, clock)
    acks = app.state.test["acks"]
    received = b""
    with serve(app) as url:
        with client.stream("POST", f"{url}/v1/stream") as r:
            assert r.status_code == 200
            for part in r.iter_raw():
                received += part
                for i, ack in enumerate(acks):
                    if f"chunk{i}\n".encode() in received:
                        ack.set()
    assert received == b"chunk0\nchunk1\nchunk2\n"
    assert app.state.test["gate_timeouts"] == []  # each chunk reached the client before the next
    assert values(manager, HTTP_LATENCY_MS) == pytest.approx([300.0], abs=1e-3)
    assert values(manager, HTTP_FIRST_BYTE_MS) == pytest.approx([100.0], abs=1e-3)
    assert values(manager, HTTP_ERROR_PERCENT) == [0.0]


def test_streaming_still_streams_when_the_body_is_inspected_and_rewritten(explicit, client):
    """A policy that reads and rewrites the request body leaves the response stream chunk by chunk."""
    manager, clock = explicit
    server = ServerState()
    server.admission.apply(AdmissionLimits(max_tokens_cap=16, max_priority=0), reason="degraded")
    app = explicit_app(manager, clock, server)
    acks = app.state.test["acks"]
    received = b""
    with serve(app) as url:
        with client.stream("POST", f"{url}/v1/stream", json={"prompt": "hi", "max_tokens": 999, "stream": True}) as r:
            assert r.status_code == 200
            for part in r.iter_raw():
                received += part
                for i, ack in enumerate(acks):
                    if f"chunk{i}\n".encode() in received:
                        ack.set()
    assert received == b"chunk0\nchunk1\nchunk2\n"
    assert app.state.test["gate_timeouts"] == []
    assert server.admission.stats().bodies == {"rewritten": 1}
    assert values(manager, HTTP_FIRST_BYTE_MS) == pytest.approx([100.0], abs=1e-3)


def test_non_inference_paths_not_counted(explicit, client):
    manager, clock = explicit
    with serve(explicit_app(manager, clock)) as url:
        for path in ("/health", "/metrics", "/v1/models"):
            assert client.get(f"{url}{path}").status_code == 200
    assert values(manager, HTTP_LATENCY_MS) == []
    assert values(manager, HTTP_ERROR_PERCENT) == []


# -- admission control -----------------------------------------------------------------------------
def test_shedding_rejects_the_fraction_at_random(client):
    ctx = runtime_context()
    manager = ctx.manager
    admission = ctx.server.admission = AdmissionController(rng=random.Random(7))
    admission.shed(0.5, retry_after_s=7, reason="kv cache exhausted")
    assert admission.state is AdmissionState.SHEDDING
    with serve(vllm_like_app()) as url:
        responses = [client.post(f"{url}/v1/chat/completions", json={}) for _ in range(200)]
        assert client.get(f"{url}/health").status_code == 200
    codes = [r.status_code for r in responses]
    rejected = codes.count(503)
    assert 70 <= rejected <= 130 and set(codes) == {200, 503}
    assert codes[:40] != [200, 503] * 20 and codes[:40] != [503, 200] * 20  # no counter to game
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "7"
            body = r.json()
            assert body["error"]["type"] == "overloaded" and "kv cache" not in body["error"]["message"]
    stats = admission.stats()
    assert stats.rejected == rejected and stats.rejected_by_reason == {"kv cache exhausted": rejected}
    # Rejected requests never reached the app and are not in the latency series.
    assert len(values(manager, HTTP_LATENCY_MS)) == 200 - rejected


def test_a_client_sending_junk_until_a_503_cannot_predict_the_next(client):
    """With a counter, the request after a 503 always passed at 50% shedding (40 of 40)."""
    admission = AdmissionController(rng=random.Random(3))
    admission.shed(0.5)
    after_rejection = []
    previous = True
    for _ in range(4000):
        ok = admission.admit()
        if not previous:
            after_rejection.append(ok)
        previous = ok
    assert 0.4 < sum(after_rejection) / len(after_rejection) < 0.6


def test_closed_rejects_all_then_open_passes_all(client):
    admission = runtime_context().server.admission
    with serve(vllm_like_app()) as url:
        admission.close(retry_after_s=30, reason="engine stalled")
        closed = [client.post(f"{url}/v1/chat/completions", json={}).status_code for _ in range(4)]
        health = client.get(f"{url}/health").status_code
        metrics = client.get(f"{url}/metrics").status_code
        admission.open()
        opened = [client.post(f"{url}/v1/chat/completions", json={}).status_code for _ in range(4)]
    assert closed == [503] * 4 and health == 200 and metrics == 200
    assert opened == [200] * 4
    assert admission.state is AdmissionState.OPEN and admission.stats().rejected == 4


def test_admission_validates_and_shed_zero_opens():
    adm = AdmissionController()
    for bad in (-0.1, 1.5, float("nan"), "half", True):
        with pytest.raises(ValueError):
            adm.shed(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        adm.close(retry_after_s=-1)
    adm.shed(0.25, retry_after_s=1)
    admitted = [adm.admit() for _ in range(4000)]
    assert 0.72 < sum(admitted) / len(admitted) < 0.78
    adm.shed(0.0)
    assert adm.state is AdmissionState.OPEN and all(adm.admit() for _ in range(5))


# -- engine handle and defaults ----------------------------------------------------------------------
def test_engine_client_captured_at_lifespan_startup(client):
    app = vllm_like_app()
    engine = object()
    app.state.engine_client = engine
    with serve(app, lifespan="on"):
        assert runtime_context().server.engine_client is engine  # before any request
        assert rt.get_runtime().info.started  # the app's start-up started the runtime


def test_engine_client_captured_on_first_request(client):
    app = vllm_like_app()
    engine = object()
    app.state.engine_client = engine
    with serve(app, lifespan="off") as url:
        assert runtime_context().server.engine_client is None
        assert client.get(f"{url}/health").status_code == 200
    assert runtime_context().server.engine_client is engine


def test_no_engine_client_is_fine(client):
    with serve(vllm_like_app()) as url:
        assert client.post(f"{url}/v1/chat/completions", json={}).status_code == 200
    assert runtime_context().server.engine_client is None


def test_argument_less_middleware_counts_into_the_runtime(client):
    manager = runtime_context().manager
    with serve(vllm_like_app()) as url:
        assert client.post(f"{url}/v1/chat/completions", json={}).status_code == 200
    latency = values(manager, HTTP_LATENCY_MS)
    assert len(latency) == 1 and 0.0 < latency[0] < 5_000.0
    assert values(manager, HTTP_ERROR_PERCENT) == [0.0]


def test_monitoring_disabled_passes_through_and_logs_once(client, caplog, monkeypatch):
    monkeypatch.setenv("APHRODITE_SLA_ENABLED", "false")
    caplog.set_level(logging.INFO, logger="aphrodite_sla.integrations.asgi")
    with serve(vllm_like_app()) as url:
        statuses = [client.post(f"{url}/v1/chat/completions", json={}).status_code for _ in range(3)]
    assert statuses == [200] * 3
    notes = [r for r in caplog.records if "monitoring disabled" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
    assert values(runtime_context().manager, HTTP_LATENCY_MS) == []


# -- in-process edge cases (no server) -----------------------------------------------------------------
async def _call(mw: SLAMiddleware, path: str = "/v1/completions", send=None, root_path: str = ""):
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def default_send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "root_path": root_path, "method": "POST", "headers": []}
    await mw(scope, receive, send or default_send)
    return sent


async def test_response_never_finished_counts_as_error():
    clock = ManualClock()
    manager = SLAManager(clock=clock)

    async def app(scope, receive, send):  # a stream the app abandoned mid-way, the client still there
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        clock.advance(0.2)

    await _call(SLAMiddleware(app, manager=manager, clock=clock))
    assert values(manager, HTTP_ERROR_PERCENT) == [100.0]
    assert values(manager, HTTP_LATENCY_MS) == pytest.approx([200.0], abs=1e-3)


async def test_send_failure_propagates_and_is_a_client_disconnect():
    clock = ManualClock()
    manager = SLAManager(clock=clock)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": False})

    async def broken_send(message):
        if message["type"] == "http.response.body":
            raise OSError("client disconnected")

    with pytest.raises(OSError, match="client disconnected"):
        await _call(SLAMiddleware(app, manager=manager, clock=clock), send=broken_send)
    assert values(manager, HTTP_ERROR_PERCENT) == [] and values(manager, HTTP_CLIENT_DISCONNECTS) == [1.0]


async def test_cancellation_without_a_disconnect_propagates_and_is_an_error():
    clock = ManualClock()
    manager = SLAManager(clock=clock)

    async def app(scope, receive, send):
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _call(SLAMiddleware(app, manager=manager, clock=clock))
    assert values(manager, HTTP_ERROR_PERCENT) == [100.0]


async def test_failing_manager_never_breaks_a_request():
    class Broken:
        def register_metric(self, *a, **k):
            raise RuntimeError("no registration")

        def record_measurement(self, *a, **k):
            raise RuntimeError("no recording")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    mw = SLAMiddleware(app, manager=Broken())
    sent = await _call(mw)
    sent += await _call(mw)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] * 2
    assert mw.record_errors == 2


async def test_bad_samples_are_counted_drops_not_errors():
    clock = ManualClock()
    manager = SLAManager(clock=clock)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    backwards = iter([10.0, 9.0, 9.0])  # a clock running backwards: negative latency
    mw = SLAMiddleware(app, manager=manager, clock=lambda: next(backwards))
    await _call(mw)
    assert manager.store.dropped_total(HTTP_LATENCY_MS) == 1
    assert mw.record_errors == 0


async def test_root_path_prefix_is_ignored_when_matching():
    clock = ManualClock()
    manager = SLAManager(clock=clock)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    mw = SLAMiddleware(app, manager=manager, clock=clock)
    await _call(mw, "/api/v1/completions", root_path="/api")
    await _call(mw, "/api/health", root_path="/api")
    assert values(manager, HTTP_ERROR_PERCENT) == [0.0]


async def test_websocket_and_lifespan_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    mw = SLAMiddleware(app)
    for kind in ("websocket", "lifespan"):
        await mw({"type": kind, "path": "/v1/x"}, None, None)  # type: ignore[arg-type]
    assert seen == ["websocket", "lifespan"]


def test_json_body_of_rejection_is_valid():
    adm = AdmissionController()
    adm.close(retry_after_s=2.5)
    rejection = adm.policy.rejection
    headers = dict(rejection.start["headers"])
    assert headers[b"retry-after"] == b"3"
    body = json.loads(rejection.body["body"])
    assert body == {"error": {"message": "The server is overloaded; retry after 3 s.", "type": "overloaded", "code": 503}}
    assert int(headers[b"content-length"]) == len(rejection.body["body"])


# -- which requests count --------------------------------------------------------------------------
ENGINE_INFERENCE_ROUTES = ("/invocations", "/inference/v1/generate", "/cohere/v2/chat", "/pooling", "/score", "/rerank",
                           "/v2/rerank", "/classify", "/api/v1/generate", "/v1/completions", "/v1/embeddings")


async def test_every_inference_route_is_measured_and_shed_not_only_v1():
    """With admission closed, all nine non-/v1/ inference routes of the real wheels answered 200."""
    manager = SLAManager(clock=ManualClock())
    server = ServerState()
    served = []

    async def app(scope, receive, send):
        served.append(scope["path"])
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    mw = SLAMiddleware(app, manager=manager, server=server)
    server.admission.close(reason="draining")
    for path in ENGINE_INFERENCE_ROUTES:
        sent = await _call(mw, path)
        assert sent[0]["status"] == 503, path
    for path in ("/tokenize", "/v1/models", "/v1/load_lora_adapter", "/reset_prefix_cache", "/v1/chat/completions/render"):
        sent = await _call(mw, path)
        assert sent[0]["status"] == 200, path  # not inference: never shed, never measured
    server.admission.open()
    for path in ENGINE_INFERENCE_ROUTES:
        await _call(mw, path)
    assert len(values(manager, HTTP_LATENCY_MS)) == len(ENGINE_INFERENCE_ROUTES)


async def test_a_slow_client_is_not_in_flight_until_its_body_has_arrived():
    """A request whose body trickles in counted as waiting on the engine: a false engine stall."""
    manager = SLAManager(clock=ManualClock())
    server = ServerState()
    chunks = asyncio.Queue()
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(server.in_flight)
            if not message.get("more_body"):
                break
        seen.append(server.in_flight)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    async def receive():
        return await chunks.get()

    mw = SLAMiddleware(app, manager=manager, server=server)
    for i in range(3):
        chunks.put_nowait({"type": "http.request", "body": b"x", "more_body": i < 2})
    await mw({"type": "http", "path": "/v1/completions", "method": "POST", "headers": []}, receive, lambda m: asyncio.sleep(0))
    assert seen == [0, 0, 1, 1]  # counted once the last chunk arrived
    assert server.in_flight == 0


async def test_auth_rejections_and_client_hang_ups_are_not_latency_or_errors():
    manager = SLAManager(clock=ManualClock())

    async def unauthorized(scope, receive, send):
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no", "more_body": False})

    await _call(SLAMiddleware(unauthorized, manager=manager))

    async def hung_up(scope, receive, send):  # a stream the client abandoned: the server saw a disconnect
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tok", "more_body": True})
        await receive()  # -> http.disconnect

    async def receive_disconnect():
        return {"type": "http.disconnect"}

    mw = SLAMiddleware(hung_up, manager=manager)
    await mw({"type": "http", "path": "/v1/completions", "method": "POST", "headers": []}, receive_disconnect,
             lambda m: asyncio.sleep(0))
    assert values(manager, HTTP_LATENCY_MS) == [] and values(manager, HTTP_ERROR_PERCENT) == []
    assert values(manager, HTTP_REJECTED) == [1.0] and values(manager, HTTP_CLIENT_DISCONNECTS) == [1.0]
