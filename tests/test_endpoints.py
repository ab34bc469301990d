"""/health/production and /metrics/summary: status logic, payloads, OpenAPI, served by the
standalone exporter and by the middleware inside a real FastAPI app over real HTTP."""
import json
import math
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest

from aphrodite_sla import ManualClock, SLAManager, SLAThreshold, Statistic
from aphrodite_sla import runtime as rt
from aphrodite_sla.export.endpoints import SLAEndpoints, openapi_schema
from aphrodite_sla.export.server import start_exporter
from aphrodite_sla.integrations.server_state import ServerState
from aphrodite_sla.integrations.stall import StallDetector
from aphrodite_sla.sla.page_rules import PageRulesConfig
from tests.test_asgi import serve, vllm_like_app

T0 = 1_700_000_000.0


def feed(mgr, clock, latency_ms: float, series: str = "lat", n: int = 120):
    start = clock()
    for _ in range(n):
        clock.advance(1.0)
        mgr.record_batch(series, np.full(10, latency_ms))
        if int(clock() - start) % 5 == 0:
            mgr.evaluate()


def manager_with(latency_ms: float, clock=None):
    clock = clock or ManualClock(T0)
    th = SLAThreshold("lat_p95", 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat", min_samples=5, sample_rate_hz=50)
    mgr = SLAManager([th], clock=clock, anomaly_detection=False, page_rules=PageRulesConfig(enabled=False), regression_interval_s=math.inf)
    feed(mgr, clock, latency_ms)
    return mgr, clock


def test_an_sla_breach_is_reported_with_200_since_removing_replicas_makes_it_worse():
    ok, clock = manager_with(90.0)
    assert SLAEndpoints(ok.snapshot, clock=clock).health() == (200, {
        "status": "healthy", "serving": True, "reasons": [], "sla_compliance": 100.0, "active_violations": 0,
        "violations": [], "engine_stalled": False, "draining": False,
        "monitor": {"evaluating": True, "reason": None, "last_evaluation_age_s": 0.0, "evaluator_running": False,
                    "errors": 0, "last_error": None},
    })
    minor, clock = manager_with(130.0)  # bound 120: ratio 1.08 -> MINOR
    status, payload = SLAEndpoints(minor.snapshot, clock=clock).health()
    assert status == 200 and payload["status"] == "degraded" and payload["active_violations"] == 1
    assert payload["violations"][0]["severity"] == "minor" and payload["reasons"] == [payload["violations"][0]["message"]]
    critical, clock = manager_with(500.0)
    status, payload = SLAEndpoints(critical.snapshot, clock=clock).health()
    assert status == 200 and payload["status"] == "critical" and payload["serving"] is True
    # an operator who wants the replica out on a CRITICAL SLA violation says so
    status, payload = SLAEndpoints(critical.snapshot, clock=clock, fail_on_critical_sla=True).health()
    assert status == 503 and payload["serving"] is False
    status, payload = SLAEndpoints(ok.snapshot, clock=clock, config_error="APHRODITE_SLA_X: bad").health()
    assert status == 200 and payload["status"] == "degraded" and payload["config_error"].startswith("APHRODITE_SLA_X")


def test_a_stalled_engine_cannot_serve():
    mgr, clock = manager_with(90.0)
    stall = StallDetector(mgr, stall_after_s=10, clock=clock)
    stall.on_record(clock(), 5, 0)
    clock.advance(11)
    stall.check(clock())
    status, payload = SLAEndpoints(mgr.snapshot, clock=clock).health()  # the stall detector publishes into mgr's snapshot
    assert status == 503 and payload["engine_stalled"] and payload["status"] == "critical" and not payload["serving"]
    assert payload["reasons"][0].startswith("engine_stalled: no engine progress")


def test_a_draining_replica_answers_503():
    mgr, clock = manager_with(90.0)
    server = ServerState()
    server.admission.close(reason="deploying v2")
    status, payload = SLAEndpoints(mgr.snapshot, clock=clock, server=server).health()
    assert status == 503 and payload["status"] == "draining" and payload["draining"]
    assert payload["reasons"] == ["draining: admission closed (deploying v2)"]
    server.admission.shed(0.5)  # shedding still serves
    assert SLAEndpoints(mgr.snapshot, clock=clock, server=server).health()[0] == 200


def test_a_monitor_that_cannot_evaluate_says_so(monkeypatch):
    """An evaluation that raises (here: the window plan) and an evaluator whose evaluations stopped
    are both reported: health degraded with the reason, the summary still answers."""
    mgr, clock = manager_with(90.0)
    ep = SLAEndpoints(mgr.snapshot, clock=clock, stale_after_s=30)

    def broken(*a, **k):
        raise RuntimeError("cannot cache function 'evaluate_windows': no locator available")

    monkeypatch.setattr(mgr._evaluator, "plan", broken)
    mgr._tick()  # the background path: counted, published, not raised
    status, payload = ep.health()
    assert status == 200 and payload["status"] == "degraded" and payload["monitor"]["evaluating"] is False
    assert "no locator available" in payload["reasons"][0]
    assert ep.handle("GET", "/metrics/summary").status == 200
    with pytest.raises(RuntimeError):
        mgr.evaluate()  # the synchronous path raises to its caller too
    monkeypatch.undo()
    mgr.evaluate()
    assert ep.health()[1]["monitor"]["evaluating"] is True
    # a running evaluator whose last evaluation is too old
    object.__setattr__(mgr.snapshot().health, "evaluator_running", True)
    clock.advance(31)
    payload = ep.health()[1]
    assert payload["monitor"]["evaluating"] is False and "31 s ago" in payload["monitor"]["reason"]


def test_summary_payload_is_strict_json():
    mgr, _ = manager_with(130.0)
    summary = SLAEndpoints(mgr.snapshot, model_name='m "x"').summary()
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["slas"]["lat_p95"]["violated"] is True
    entry = summary["slas"]["lat_p95"]
    assert entry["value"] == 130.0 and entry["bound"] == 120.0 and entry["target"] == 100.0
    assert entry["burn_rate"]["5m"] == pytest.approx(1 / 0.05)  # every sample beyond: 1 / (1 - 0.95)
    assert summary["sla_violations_total"] == 1


def test_unknown_paths_and_methods():
    mgr, _ = manager_with(90.0)
    ep = SLAEndpoints(mgr.snapshot)
    assert ep.handle("GET", "/other") is None
    assert ep.handle("POST", "/health/production").status == 405
    schema = openapi_schema()
    assert set(schema["paths"]) == {"/health/production", "/metrics/summary"}
    assert "503" in schema["paths"]["/health/production"]["get"]["responses"]


def test_standalone_exporter_serves_everything_on_loopback():
    mgr, _ = manager_with(500.0)
    server, port, _ = start_exporter(mgr, 0, model_name="m")
    try:
        assert server.host == "127.0.0.1" and server.alive
        base = f"http://127.0.0.1:{port}"
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert 'sla_violation_active{model_name="m",severity="critical",sla="lat_p95"} 1.0' in metrics
        health = urllib.request.urlopen(base + "/health/production", timeout=5)
        assert health.status == 200 and json.loads(health.read())["status"] == "critical"
        summary = json.loads(urllib.request.urlopen(base + "/metrics/summary", timeout=5).read())
        assert summary["active_violations"] == 1
        assert json.loads(urllib.request.urlopen(base + "/openapi.json", timeout=5).read())["openapi"] == "3.1.0"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/nope", timeout=5)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_middleware_serves_endpoints_inside_the_engine_app(monkeypatch):
    monkeypatch.setenv("APHRODITE_SLA_SYSTEM_SAMPLER", "0")
    rt.reset_runtime()
    try:
        ctx = rt.get_runtime().context
        ctx.manager.record_batch("ttft_ms", np.full(50, 130.0))  # bound 2500: within
        ctx.manager.evaluate()
        with serve(vllm_like_app()) as base, httpx.Client(timeout=10) as client:
            r = client.get(base + "/health/production")
            assert r.status_code == 200 and r.json()["status"] == "healthy"
            summary = client.get(base + "/metrics/summary").json()
            assert summary["slas"]["ttft_p95"]["value"] == 130.0
            assert client.get(base + "/health").json() == {"ok": True}  # the app's own routes still work
            ctx.server.admission.close(retry_after_s=5, reason="test")
            assert client.post(base + "/v1/chat/completions").status_code == 503
            r = client.get(base + "/health/production")  # never shed; says the replica is draining
            assert r.status_code == 503 and r.json()["status"] == "draining"
    finally:
        rt.reset_runtime()


def test_the_exporter_serves_from_its_own_process_and_survives_half_sent_requests():
    """300 half-sent requests held 300 threads past shutdown(), and scrapers competed with the
    engine for the interpreter lock: the server is another process with a fixed pool, a socket
    timeout and a quick 503 past its bound; the engine's process keeps one publisher thread."""
    import socket
    import threading
    import time

    from aphrodite_sla.export import server as server_mod

    before = {t.name for t in threading.enumerate()}
    mgr, _ = manager_with(90.0)
    server, port, _ = start_exporter(mgr, 0)
    socks = []
    try:
        ours = {t.name for t in threading.enumerate()} - before
        assert ours == {"aphrodite-sla-exporter-publisher"}
        for _ in range(300):  # a slowloris: connect, send half a request line, wait
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /metr")
            socks.append(s)
        assert socks[-1].recv(200).startswith(b"HTTP/1.1 503")  # past the bound: answered at once, not held
        for s in socks:
            s.close()
        deadline = time.monotonic() + 3 * server_mod.SOCKET_TIMEOUT_S
        while True:  # the held connections time out; real scrapes are served again
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.HTTPError, OSError):
                pass
            assert time.monotonic() < deadline, "the exporter did not recover from the slowloris"
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    assert not server.alive
    assert not [t.name for t in threading.enumerate() if t.name.startswith("aphrodite-sla-exporter")]


def test_a_busy_port_is_an_os_error():
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    mgr, _ = manager_with(90.0)
    try:
        with pytest.raises(OSError, match=r"cannot serve on 127\.0\.0\.1"):
            start_exporter(mgr, busy.getsockname()[1])
    finally:
        busy.close()


def test_binding_beyond_loopback_warns(caplog):
    mgr, _ = manager_with(90.0)
    server, _port, _ = start_exporter(mgr, 0, host="0.0.0.0")
    try:
        assert any("reachable beyond this machine" in r.getMessage() for r in caplog.records)
    finally:
        server.shutdown()
        server.server_close()


def test_responses_are_rendered_once_per_snapshot():
    mgr, clock = manager_with(90.0)
    ep = SLAEndpoints(mgr.snapshot, clock=clock)
    first = ep.handle("GET", "/health/production")
    assert ep.handle("GET", "/health/production") is first  # same snapshot: the same bytes
    clock.advance(5)
    mgr.evaluate()  # a new snapshot: rendered anew
    assert ep.handle("GET", "/health/production") is not first
