"""Admission limits (controller), the request-body reading behind them, and the middleware's
enforcement of both, including the model_inference circuit breaker."""
from __future__ import annotations

import asyncio
import json
import random
import threading
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from aphrodite_sla import ManualClock, SLAManager
from aphrodite_sla.integrations import request_limits as rl
from aphrodite_sla.integrations.admission import (
    AdmissionController,
    AdmissionLimits,
    AdmissionState,
)
from aphrodite_sla.integrations.asgi import HTTP_CLIENT_DISCONNECTS, HTTP_ERROR_PERCENT, ServerState, SLAMiddleware
from aphrodite_sla.integrations.request_limits import RequestFacts


# -- limits: data -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "bad"), [
    ("shed_fraction", 1.5), ("shed_fraction", "half"), ("concurrency_limit", 0), ("concurrency_limit", 2.5),
    ("rate_per_s", 0.0), ("rate_per_s", -1.0), ("max_prompt_tokens", 0), ("max_tokens_cap", True),
    ("max_priority", 1.5), ("retry_after_s", -1.0), ("closed", 1),
])
def test_limits_validate_and_name_the_field(field, bad):
    with pytest.raises(ValueError, match=field):
        AdmissionLimits(**{field: bad})


def test_burst_needs_a_rate_and_unknown_config_keys_are_named():
    with pytest.raises(ValueError, match="burst"):
        AdmissionLimits(burst=5)
    with pytest.raises(ValueError, match="max_tokenz"):
        AdmissionLimits.from_dict({"max_tokenz": 10})
    assert AdmissionLimits.from_dict({"max_tokens_cap": 10}) == AdmissionLimits(max_tokens_cap=10)


def test_state_follows_the_limits():
    adm = AdmissionController()
    assert adm.apply(AdmissionLimits(max_tokens_cap=100)).state is AdmissionState.LIMITED
    assert adm.apply(AdmissionLimits(shed_fraction=0.1, max_tokens_cap=100)).state is AdmissionState.SHEDDING
    assert adm.apply(AdmissionLimits(closed=True, shed_fraction=0.1)).state is AdmissionState.CLOSED
    assert adm.apply(AdmissionLimits.none()).state is AdmissionState.OPEN
    assert adm.policy.retry_after_s == 0.0 and not adm.policy.needs_body
    assert AdmissionLimits(max_priority=0).needs_body and not AdmissionLimits(concurrency_limit=3).needs_body
    assert AdmissionLimits(max_tokens_cap=5, retry_after_s=2).active() == {"max_tokens_cap": 5, "retry_after_s": 2}
    assert AdmissionLimits.none().active() == {}
    assert AdmissionLimits(max_priority=0).active() == {"max_priority": 0, "retry_after_s": 5.0}  # 0 is a cutoff, not unset


def test_stricter_takes_each_limit_at_its_strictest():
    a = AdmissionLimits(shed_fraction=0.25, concurrency_limit=64, max_tokens_cap=512, rate_per_s=10.0, burst=20, retry_after_s=5)
    b = AdmissionLimits(shed_fraction=0.1, max_tokens_cap=1024, max_priority=0, rate_per_s=2.0, retry_after_s=9)
    both = a.stricter(b)
    assert both == AdmissionLimits(shed_fraction=0.25, concurrency_limit=64, rate_per_s=2.0, burst=None, max_priority=0,
                                   max_tokens_cap=512, retry_after_s=9)
    assert both.bucket_size == 2  # one second of the stricter rate, its own burst


# -- limits: the controller ---------------------------------------------------------------------------
def test_concurrency_limit_counts_the_requests_in_flight():
    adm = AdmissionController()
    adm.apply(AdmissionLimits(concurrency_limit=3), reason="kv pressure")
    assert adm.admit(in_flight=2) and not adm.admit(in_flight=3) and not adm.admit(in_flight=10)
    stats = adm.stats()
    assert stats.rejected == 2 and stats.rejected_by_limit == {"concurrency": 2}
    assert stats.rejected_by_reason == {"kv pressure": 2} and stats.admitted_while_limited == 1


def test_token_bucket_refills_lazily_from_the_clock():
    now = ManualClock(100.0)
    adm = AdmissionController(monotonic=now)
    adm.apply(AdmissionLimits(rate_per_s=2.0, burst=3))
    assert [adm.admit() for _ in range(4)] == [True, True, True, False]  # the burst, then empty
    now.advance(0.5)  # one token
    assert [adm.admit() for _ in range(2)] == [True, False]
    now.advance(100.0)  # capped at the burst
    assert [adm.admit() for _ in range(4)] == [True, True, True, False]
    now.set(50.0)  # a clock stepping back adds nothing
    assert not adm.admit()
    assert adm.stats().rejected_by_limit == {"rate": 4}


def test_changing_the_rate_keeps_the_tokens_left():
    now = ManualClock(0.0)
    adm = AdmissionController(monotonic=now)
    adm.apply(AdmissionLimits(rate_per_s=1.0, burst=2))
    assert adm.admit() and adm.admit() and not adm.admit()
    adm.apply(AdmissionLimits(rate_per_s=5.0, burst=10))  # no free burst on a change
    assert not adm.admit()
    now.advance(1.0)
    assert sum(adm.admit() for _ in range(10)) == 5
    bucket = adm.policy.bucket
    adm.apply(AdmissionLimits(rate_per_s=5.0, burst=10, max_tokens_cap=9))  # same rate: the same bucket
    assert adm.policy.bucket is bucket


def test_priority_and_prompt_length_and_a_refused_request_takes_no_token():
    now = ManualClock(0.0)
    adm = AdmissionController(monotonic=now)
    adm.apply(AdmissionLimits(max_priority=0, max_prompt_tokens=100, rate_per_s=1.0, burst=1))
    policy = adm.policy
    assert not adm.admit_request(policy, RequestFacts(priority=1, prompt_tokens=10))  # lower priority: shed
    assert not adm.admit_request(policy, RequestFacts(priority=-5, prompt_tokens=101))  # too long
    assert adm.admit_request(policy, RequestFacts(priority=0, prompt_tokens=100))  # the one token was still there
    assert not adm.admit_request(policy, RequestFacts(priority=-1, prompt_tokens=1))
    assert adm.stats().rejected_by_limit == {"priority": 1, "prompt_length": 1, "rate": 1}


def test_sources_combine_strictest_and_open_lifts_only_its_own():
    adm = AdmissionController(rng=random.Random(1))
    adm.apply(AdmissionLimits(shed_fraction=0.25, max_tokens_cap=256), "degradation severe", source="degradation")
    adm.shed(0.5, retry_after_s=7, reason="recovery")
    assert adm.limits == AdmissionLimits(shed_fraction=0.5, max_tokens_cap=256, retry_after_s=7)
    assert adm.policy.reason == "recovery; degradation severe"
    adm.open()
    assert adm.limits == AdmissionLimits(shed_fraction=0.25, max_tokens_cap=256)
    assert set(adm.sources()) == {"degradation"}
    adm.close(reason="drain")
    assert adm.state is AdmissionState.CLOSED and not adm.admit()
    adm.open()
    adm.apply(AdmissionLimits.none(), source="degradation")
    assert adm.state is AdmissionState.OPEN and adm.sources() == {}


def test_apply_rejects_what_is_not_limits():
    adm = AdmissionController()
    with pytest.raises(ValueError, match="limits"):
        adm.apply({"shed_fraction": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source"):
        adm.apply(AdmissionLimits(shed_fraction=0.5), source="")


# -- reading a request body ---------------------------------------------------------------------------
@pytest.mark.parametrize(("doc", "tokens"), [
    ({"prompt": "x" * 400}, 100),
    ({"prompt": "x" * 401}, 101),
    ({"prompt": ["x" * 40, "y" * 80]}, 30),
    ({"prompt": [1, 2, 3, 4, 5]}, 5),
    ({"prompt": [[1, 2], [3, 4, 5]]}, 5),
    ({"input": "z" * 8}, 2),
    ({"messages": [{"role": "user", "content": "a" * 40}, {"role": "user", "content": [
        {"type": "text", "text": "b" * 40}, {"type": "image_url", "image_url": {"url": "data:" + "q" * 1000}}]}]}, 20),
    ({"messages": "not a list", "prompt": None}, 0),
])
def test_prompt_token_estimate(doc, tokens):
    assert rl.estimate_prompt_tokens(doc) == tokens


def test_cap_max_tokens_clamps_sets_and_leaves_the_rest():
    doc: dict = {"max_tokens": 5000, "max_completion_tokens": 10}
    assert rl.cap_max_tokens(doc, 100, set_when_absent=True) and doc == {"max_tokens": 100, "max_completion_tokens": 10}
    doc = {"prompt": "x"}
    assert rl.cap_max_tokens(doc, 100, set_when_absent=True) and doc["max_tokens"] == 100
    doc = {"prompt": "x", "max_tokens": None}
    assert not rl.cap_max_tokens(doc, 100, set_when_absent=False) and doc == {"prompt": "x", "max_tokens": None}
    doc = {"max_tokens": "many"}  # the engine refuses it; not ours to fix
    assert not rl.cap_max_tokens(doc, 100, set_when_absent=True) and doc == {"max_tokens": "many"}
    doc = {"max_output_tokens": 1e9}
    assert rl.cap_max_tokens(doc, 100, set_when_absent=True) and doc == {"max_output_tokens": 100}


def test_parse_refuses_what_is_not_an_object():
    assert rl.parse(b'{"a": 1}') == {"a": 1}
    for bad in (b"{not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000):
        assert rl.parse(bad) is None
    assert rl.facts({"priority": "high"}, estimate_prompt=False) == RequestFacts(0, 0)
    assert rl.facts({"priority": 3.0, "prompt": "abcd"}, estimate_prompt=True) == RequestFacts(3, 1)


# -- the middleware, in process -------------------------------------------------------------------------
class Echo:
    """An app that reads the whole body and answers it back, with the content-length it was told."""

    def __init__(self, status: int = 200) -> None:
        self.calls = 0
        self.bodies: list[bytes] = []
        self.status = status

    async def __call__(self, scope, receive, send):
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        length = dict(scope["headers"]).get(b"content-length")
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps({"length": length and length.decode()}).encode()})


async def call(mw, body: bytes | list[bytes] = b"", path="/v1/completions", content_type: bytes | None = b"application/json",
               declared: bool = True, disconnect: bool = False):
    chunks = body if isinstance(body, list) else [body]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    reads = []

    async def receive():
        reads.append(1)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if declared:
        headers.append((b"content-length", str(sum(map(len, chunks))).encode()))
    sent = []

    async def send(message):
        sent.append(message)

    await mw({"type": "http", "path": path, "method": "POST", "headers": headers}, receive, send)
    return sent, len(reads)


def middleware(app, **kwargs):
    server = ServerState(AdmissionController(rng=random.Random(5)))
    return SLAMiddleware(app, manager=SLAManager(clock=ManualClock()), server=server, **kwargs), server.admission


async def test_open_policy_and_bodyless_limits_never_read_the_body():
    async def app(scope, receive, send):  # answers without reading
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw, adm = middleware(app)
    _, reads = await call(mw, b'{"prompt": "hi"}')
    assert reads == 0
    adm.apply(AdmissionLimits(concurrency_limit=5, rate_per_s=100.0))
    sent, reads = await call(mw, b'{"prompt": "hi"}')
    assert reads == 0 and sent[0]["status"] == 200
    assert adm.stats().bodies == {}


async def test_rewrite_reaches_the_app_with_its_content_length():
    app = Echo()
    mw, adm = middleware(app)
    adm.apply(AdmissionLimits(max_tokens_cap=64))
    sent, _ = await call(mw, json.dumps({"prompt": "héllo", "max_tokens": 4096}).encode())
    assert json.loads(app.bodies[-1]) == {"prompt": "héllo", "max_tokens": 64}
    assert json.loads(sent[1]["body"])["length"] == str(len(app.bodies[-1]))
    await call(mw, json.dumps({"input": "x"}).encode(), path="/v1/embeddings")  # not set where the field is unknown
    assert json.loads(app.bodies[-1]) == {"input": "x"}
    original = json.dumps({"prompt": "x", "max_tokens": 8}).encode()
    await call(mw, original)
    assert app.bodies[-1] == original  # nothing to change: the very bytes
    assert adm.stats().bodies == {"rewritten": 1, "inspected": 2}


async def test_unparsable_oversized_and_non_json_bodies_pass_unchanged():
    app = Echo()
    mw, adm = middleware(app, max_inspect_bytes=64)
    adm.apply(AdmissionLimits(max_tokens_cap=64, max_priority=0))
    junk = b'{"prompt": "unterminated'
    await call(mw, junk)
    big = [json.dumps({"prompt": "x" * 100, "priority": 9}).encode()[i:i + 30] for i in range(0, 120, 30)]
    await call(mw, big, declared=False)  # read in chunks past the bound, then passed on
    await call(mw, big)  # the declared length alone says it is too large: not read at all
    await call(mw, b"--boundary\r\n...", content_type=b"multipart/form-data; boundary=boundary")
    one = json.dumps({"prompt": "y" * 100, "max_tokens": 999}).encode()
    await call(mw, one, declared=False)  # one last chunk past the bound: not parsed either
    assert app.bodies == [junk, b"".join(big), b"".join(big), b"--boundary\r\n...", one]
    assert adm.stats().bodies == {"unparsable": 1, "oversized": 3, "not_json": 1}
    assert adm.stats().rejected == 0  # uninspected: no priority known, not shed


async def test_a_client_gone_while_sending_reaches_the_app_as_a_disconnect():
    app = Echo()
    manager = SLAManager(clock=ManualClock())
    server = ServerState()
    mw = SLAMiddleware(app, manager=manager, server=server)
    server.admission.apply(AdmissionLimits(max_tokens_cap=64))
    await call(mw, b'{"prompt": ', disconnect=True)
    assert app.calls == 1 and app.bodies == []
    assert server.admission.stats().bodies == {"incomplete": 1}
    assert manager.store.buffer(HTTP_CLIENT_DISCONNECTS).window(0.0, 1e12)[1].tolist() == [1.0]


async def test_priority_and_long_prompts_are_answered_503_without_the_app():
    app = Echo()
    mw, adm = middleware(app)
    adm.apply(AdmissionLimits(max_priority=0, max_prompt_tokens=10, retry_after_s=4), reason="degraded")
    shed, _ = await call(mw, b'{"prompt": "hi", "priority": 1}')
    long, _ = await call(mw, json.dumps({"messages": [{"role": "user", "content": "w" * 44}]}).encode())
    ok, _ = await call(mw, b'{"prompt": "hi", "priority": -1}')
    for sent in (shed, long):
        assert sent[0]["status"] == 503 and dict(sent[0]["headers"])[b"retry-after"] == b"4"
    assert ok[0]["status"] == 200 and app.calls == 1
    assert adm.stats().rejected_by_limit == {"priority": 1, "prompt_length": 1}


async def test_concurrency_limit_in_the_middleware_counts_requests_inside_the_engine():
    release = asyncio.Event()
    inside = []

    async def slow(scope, receive, send):
        await receive()
        inside.append(1)
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw, adm = middleware(slow)
    adm.apply(AdmissionLimits(concurrency_limit=2))
    first = [asyncio.create_task(call(mw, b"{}")) for _ in range(2)]
    while len(inside) < 2:
        await asyncio.sleep(0)
    third, _ = await call(mw, b"{}")
    assert third[0]["status"] == 503
    release.set()
    assert [(await t)[0][0]["status"] for t in first] == [200, 200]
    after, _ = await call(mw, b"{}")
    assert after[0]["status"] == 200 and adm.stats().rejected_by_limit == {"concurrency": 1}


async def test_an_outer_middleware_adding_headers_does_not_grow_the_shared_rejection():
    mw, adm = middleware(Echo())
    adm.close(retry_after_s=3)
    statuses = []
    for _ in range(3):
        sent, _ = await call(mw, b"{}")
        sent[0]["headers"].append((b"access-control-allow-origin", b"*"))  # as CORS does, in place
        statuses.append(len(sent[0]["headers"]))
    assert statuses == [4, 4, 4] and len(adm.policy.rejection.start["headers"]) == 3


# -- the circuit breaker ---------------------------------------------------------------------------------
class FakeBreaker:
    """Exactly the interface the middleware may use, recording every call."""

    def __init__(self, allow: bool = True, retry: float = 2.2) -> None:
        self.allowing = allow
        self.retry = retry
        self.calls: list[tuple[str, float | None]] = []

    def allow(self) -> bool:
        self.calls.append(("allow", None))
        return self.allowing

    def on_success(self, duration_s: float) -> None:
        self.calls.append(("success", duration_s))

    def on_failure(self, duration_s: float) -> None:
        self.calls.append(("failure", duration_s))

    def retry_after_s(self) -> float:
        return self.retry


def breaker_middleware(app, breaker):
    clock = ManualClock()
    server = ServerState()
    server.inference_breaker = breaker
    return SLAMiddleware(app, manager=SLAManager(clock=clock), server=server, clock=clock), server, clock


async def test_open_breaker_fails_fast_with_retry_after():
    app = Echo()
    breaker = FakeBreaker(allow=False, retry=2.2)
    mw, server, _ = breaker_middleware(app, breaker)
    sent, _ = await call(mw, b"{}")
    assert sent[0]["status"] == 503 and dict(sent[0]["headers"])[b"retry-after"] == b"3"
    assert app.calls == 0 and breaker.calls == [("allow", None)]
    assert server.admission.stats().rejected_by_limit == {"breaker_open": 1}
    _, _ = await call(mw, b"{}", path="/v1/models")  # not inference: the breaker is not asked
    assert breaker.calls == [("allow", None)]


@pytest.mark.parametrize(("status", "outcome"), [(200, "success"), (404, "success"), (500, "failure"), (503, "failure")])
async def test_breaker_is_told_how_each_request_ended(status, outcome):
    clock_holder = {}

    async def app(scope, receive, send):
        clock_holder["clock"].advance(0.5)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    breaker = FakeBreaker()
    mw, _, clock = breaker_middleware(app, breaker)
    clock_holder["clock"] = clock
    await call(mw, b"{}")
    assert breaker.calls == [("allow", None), (outcome, pytest.approx(0.5))]


async def test_breaker_failure_on_exception_nothing_on_disconnect():
    async def boom(scope, receive, send):
        raise RuntimeError("engine dead")

    breaker = FakeBreaker()
    mw, _, _ = breaker_middleware(boom, breaker)
    with pytest.raises(RuntimeError, match="engine dead"):
        await call(mw, b"{}")
    assert [c[0] for c in breaker.calls] == ["allow", "failure"]

    async def hung_up(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tok", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    breaker = FakeBreaker()
    mw, _, _ = breaker_middleware(hung_up, breaker)
    await call(mw, b"{}")
    assert breaker.calls == [("allow", None)]  # a client leaving says nothing about the model


async def test_admission_refuses_before_the_breaker_is_asked_and_a_broken_breaker_never_breaks_a_request():
    app = Echo()
    breaker = FakeBreaker()
    mw, server, _ = breaker_middleware(app, breaker)
    server.admission.close(reason="drain")
    assert (await call(mw, b"{}"))[0][0]["status"] == 503 and breaker.calls == []  # no half-open trial taken

    class Broken(FakeBreaker):
        def allow(self) -> bool:
            raise RuntimeError("breaker bug")

        def on_success(self, duration_s: float) -> None:
            raise RuntimeError("breaker bug")

    server.admission.open()
    server.inference_breaker = Broken()
    sent, _ = await call(mw, b"{}")
    assert sent[0]["status"] == 200 and mw.record_errors == 2


# -- real HTTP ------------------------------------------------------------------------------------------
async def test_fastapi_app_sees_the_capped_body_over_asgi():
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any], request: Request):
        return JSONResponse({"got": body, "length": request.headers.get("content-length")})

    server = ServerState()
    app.add_middleware(SLAMiddleware, manager=SLAManager(clock=ManualClock()), server=server)
    server.admission.apply(AdmissionLimits(max_tokens_cap=256), reason="degradation")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        capped = await client.post("/v1/chat/completions", json={"messages": [], "max_completion_tokens": 9000})
        unset = await client.post("/v1/chat/completions", json={"messages": []})
        junk = await client.post("/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
    assert capped.json()["got"] == {"messages": [], "max_completion_tokens": 256}
    assert int(capped.json()["length"]) == len(json.dumps({"messages": [], "max_completion_tokens": 256}, separators=(",", ":")))
    assert unset.json()["got"] == {"messages": [], "max_tokens": 256}
    assert junk.status_code == 422  # the app answered the malformed body itself


# -- thread safety --------------------------------------------------------------------------------------
async def test_policy_changes_from_threads_while_requests_flow():
    app = Echo()
    manager = SLAManager(clock=ManualClock())
    server = ServerState(AdmissionController(rng=random.Random(11)))
    mw = SLAMiddleware(app, manager=manager, server=server)
    adm = server.admission
    stop = threading.Event()
    errors: list[BaseException] = []
    sets = [AdmissionLimits(shed_fraction=0.3), AdmissionLimits(max_tokens_cap=8, max_priority=0),
            AdmissionLimits(rate_per_s=1000.0, burst=5), AdmissionLimits(concurrency_limit=1), AdmissionLimits.none()]

    def flip(seed: int, source: str) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                adm.apply(rng.choice(sets), reason=source, source=source)
                if rng.random() < 0.1:
                    adm.shed(0.0)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(i, f"s{i}")) for i in range(3)]
    for t in threads:
        t.start()
    statuses = []
    try:
        for i in range(600):
            sent, _ = await call(mw, json.dumps({"prompt": "p", "priority": i % 2, "max_tokens": 100}).encode())
            statuses.append(sent[0]["status"])
            if i % 50 == 0:
                await asyncio.sleep(0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and set(statuses) <= {200, 503}
    assert statuses.count(200) == app.calls and statuses.count(503) == adm.stats().rejected
    assert server.in_flight == 0 and mw.record_errors == 0
    errors_series = manager.store.buffer(HTTP_ERROR_PERCENT).window(0.0, 1e12)[1].tolist()
    assert errors_series == [0.0] * app.calls
    for body in app.bodies:
        assert json.loads(body)["max_tokens"] in (8, 100)
