"""The RCA REST API (``/api/v1/rca``) over real HTTP — inside an engine's app (uvicorn serving the
ASGI middleware) and on the standalone exporter — and the ``aphrodite-sla rca`` CLI against it:
listing with filters and pages, one analysis as JSON and markdown, an analysis run now (token
required, one at a time: 429 while one runs), validation and authorisation errors."""
from __future__ import annotations

import contextlib
import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from aphrodite_sla.cli import main as cli_main
from aphrodite_sla.clock import ManualClock
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.export.server import start_exporter
from aphrodite_sla.incidents.api import combined_handler
from aphrodite_sla.integrations.asgi import SLAMiddleware
from aphrodite_sla.rca.api import with_rca_routes
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, SLAViolation, Statistic, ViolationSeverity
from tests.test_asgi import serve
from tests.tools import record_gpu_throttling

TOKEN = "rca-api-test-token"
RCA = "/api/v1/rca"
EPISODE = "ep-gpu"
CAUSE = "gpu_throttling"  # what RCA names for this recording (test_rca's service test asserts the same)
ITL_SLA = SLAThreshold("itl_p99", 20.0, 50.0, 5, statistic=Statistic.P99, source_metric="itl_ms", unit="ms")


def _violation(detected_at: float) -> SLAViolation:
    return SLAViolation("itl_p99", "itl_ms", Statistic.P99, Direction.UPPER, 15.0, 12.0, 10.0, ViolationSeverity.MAJOR, 60.0,
                        detected_at - 20, detected_at, 0.9, 10, 400)


def _context(token: str = TOKEN) -> MonitorContext:
    """A monitor that saw the GPU throttle 400 s into 8 minutes of steady traffic, and RCA's analysis of it."""
    clock = ManualClock(1_700_000_000.0)
    ctx = MonitorContext.build(SLAConfig(system_sampler=False, api_token=token, thresholds=(ITL_SLA,)), clock=clock, with_recovery=False)
    record_gpu_throttling(ctx, clock, seed=3, fingerprint="fp-itl", episode=EPISODE, violation=_violation)
    found = ctx.rca.analysis(EPISODE) if ctx.rca is not None else None
    assert found is not None and found.primary_root_cause.cause == CAUSE, "RCA itself (not its API) names another cause"
    return ctx


@pytest.fixture(scope="module")
def ctx() -> MonitorContext:
    return _context()


@pytest.fixture(scope="module")
def engine_app(ctx: MonitorContext) -> Iterator[str]:
    """The engine's app: our middleware in front of an app of its own, served by uvicorn."""
    with serve(SLAMiddleware(Starlette(routes=[]), context=ctx), lifespan="off") as base:
        yield base


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_listing_filters_and_pages(ctx: MonitorContext, engine_app: str) -> None:
    with httpx.Client(base_url=engine_app, timeout=10) as c:
        page = c.get(f"{RCA}/analyses").json()
        row = next(r for r in page["analyses"] if r["episode"] == EPISODE)
        assert row["sla"] == "itl_p99" and row["cause"] == CAUSE and row["category"] == "infrastructure"
        assert 0 < row["confidence"] <= 1 and row["recommendations"] and page["offset"] == 0
        assert EPISODE in [r["episode"] for r in c.get(f"{RCA}/analyses", params={"cause": CAUSE}).json()["analyses"]]
        assert c.get(f"{RCA}/analyses", params={"cause": "memory_leak"}).json()["total"] == 0
        assert c.get(f"{RCA}/analyses", params={"sla": "itl_p99"}).json()["total"] >= 1
        assert c.get(f"{RCA}/analyses", params={"since": row["analyzed_at"] + 1}).json()["total"] == 0
        one = c.get(f"{RCA}/analyses", params={"limit": 1, "offset": 0}).json()
        assert len(one["analyses"]) == 1 and one["limit"] == 1
        for bad in ({"limit": 0}, {"limit": "x"}, {"since": -1}, {"colour": "red"}):
            answer = c.get(f"{RCA}/analyses", params=bad)
            assert answer.status_code == 400, bad
            assert "error" in answer.json()


def test_one_analysis_as_json_and_markdown(engine_app: str) -> None:
    with httpx.Client(base_url=engine_app, timeout=10) as c:
        report = c.get(f"{RCA}/analyses/{EPISODE}").json()
        assert report["primary_root_cause"]["cause"] == CAUSE and report["sla_name"] == "itl_p99"
        assert report["primary_root_cause"]["evidence_for"] and "leading_indicators" in report and "diagnostics" in report
        md = c.get(f"{RCA}/analyses/{EPISODE}", params={"format": "markdown"}).json()["markdown"]
        assert md.startswith("## Root cause analysis") and f"**{CAUSE}**" in md and "Recommendations:" in md
        assert c.get(f"{RCA}/analyses/{EPISODE}", params={"format": "xml"}).status_code == 400
        missing = c.get(f"{RCA}/analyses/ep-nope")
        assert missing.status_code == 404 and "ep-nope" in missing.json()["error"]
        assert c.delete(f"{RCA}/analyses/{EPISODE}").status_code == 405


def test_analyze_needs_the_token_and_validates_its_body(engine_app: str) -> None:
    with httpx.Client(base_url=engine_app, timeout=30) as c:
        assert c.post(f"{RCA}/analyze", json={"sla": "itl_p99"}).status_code == 401
        assert c.post(f"{RCA}/analyze", json={"sla": "itl_p99"}, headers=_auth("wrong")).status_code == 401
        assert c.post(f"{RCA}/analyze", json={}, headers=_auth()).status_code == 400
        assert c.post(f"{RCA}/analyze", json={"sla": "itl_p99", "extra": 1}, headers=_auth()).status_code == 400
        unknown = c.post(f"{RCA}/analyze", json={"sla": "no_such_sla"}, headers=_auth())
        assert unknown.status_code == 404 and "itl_p99" in unknown.json()["error"]  # names the known ones
        done = c.post(f"{RCA}/analyze", json={"sla": "itl_p99", "by": "alice"}, headers=_auth())
        assert done.status_code == 200
        report = done.json()
        assert report["episode"].startswith("manual-") and report["sla_name"] == "itl_p99"
        assert report["diagnostics"]["requested_by"] == "alice" and report["primary_root_cause"]["cause"]
        listed = c.get(f"{RCA}/analyses", params={"sla": "itl_p99"}).json()["analyses"]
        assert listed[0]["episode"] == report["episode"]  # newest first


def test_a_second_analysis_while_one_runs_is_429(ctx: MonitorContext, engine_app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = ctx.rca.engine
    real = engine.analyze
    started, release = threading.Event(), threading.Event()

    def slow(*args: Any, **kw: Any) -> Any:
        started.set()
        release.wait(10)
        return real(*args, **kw)

    monkeypatch.setattr(engine, "analyze", slow)
    answers: list[int] = []
    with httpx.Client(base_url=engine_app, timeout=30) as c:
        first = threading.Thread(target=lambda: answers.append(c.post(f"{RCA}/analyze", json={"sla": "itl_p99"}, headers=_auth()).status_code))
        first.start()
        assert started.wait(10)
        busy = c.post(f"{RCA}/analyze", json={"sla": "itl_p99"}, headers=_auth())
        release.set()
        first.join(30)
    assert busy.status_code == 429 and "running" in busy.json()["error"]
    assert answers == [200]


def test_mutations_are_refused_without_a_configured_token() -> None:
    ctx = MonitorContext.build(SLAConfig(system_sampler=False, thresholds=(ITL_SLA,)), clock=ManualClock(1e9), with_recovery=False)
    with serve(SLAMiddleware(Starlette(routes=[]), context=ctx), lifespan="off") as base:
        answer = httpx.post(f"{base}{RCA}/analyze", json={"sla": "itl_p99"}, headers=_auth("anything"), timeout=10)
        assert answer.status_code == 403
        assert httpx.get(f"{base}{RCA}/analyses", timeout=10).json()["total"] == 0


def test_the_standalone_exporter_serves_it_and_openapi_lists_it(ctx: MonitorContext) -> None:
    server, port, _ = start_exporter(ctx.manager, 0, endpoints=ctx.endpoints,
                                     api=with_rca_routes(ctx.rca, combined_handler(None, None)))
    base = f"http://127.0.0.1:{port}"
    try:
        page = json.loads(urllib.request.urlopen(f"{base}{RCA}/analyses?cause={CAUSE}", timeout=10).read())
        assert EPISODE in [r["episode"] for r in page["analyses"]]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(f"{base}{RCA}/analyze", data=b'{"sla": "itl_p99"}', method="POST"), timeout=10)
        assert err.value.code == 401
        schema = json.loads(urllib.request.urlopen(f"{base}/openapi.json", timeout=10).read())
        assert schema["paths"][f"{RCA}/analyze"]["post"]["security"] == [{"bearer": []}]
        assert {p["name"] for p in schema["paths"][f"{RCA}/analyses"]["get"]["parameters"]} == {"sla", "cause", "since", "limit", "offset"}
    finally:
        server.shutdown()
        server.server_close()


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_the_cli_lists_shows_and_analyses_with_the_incidents_exit_codes(engine_app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APHRODITE_SLA_API_TOKEN", raising=False)
    code, out, _ = _cli("rca", "list", "--server", engine_app, "--json", "--cause", CAUSE)
    assert code == 0 and EPISODE in [r["episode"] for r in json.loads(out)["analyses"]]
    code, out, _ = _cli("rca", "list", "--server", engine_app)
    assert code == 0 and CAUSE in out
    code, out, _ = _cli("rca", "show", EPISODE, "--server", engine_app, "--markdown")
    assert code == 0 and out.startswith("## Root cause analysis")
    code, out, _ = _cli("rca", "show", EPISODE, "--server", engine_app)
    assert code == 0 and f"cause: {CAUSE}" in out and "recommended:" in out
    assert _cli("rca", "show", "ep-nope", "--server", engine_app)[0] == 1
    assert _cli("rca", "list", "--server", engine_app, "--limit", "0")[0] == 2
    code, _, err = _cli("rca", "analyze", "itl_p99", "--server", engine_app)
    assert code == 3 and "401" in err  # no token
    code, out, _ = _cli("rca", "analyze", "itl_p99", "--server", engine_app, "--token", TOKEN, "--json")
    assert code == 0 and json.loads(out)["episode"].startswith("manual-")
    assert _cli("rca", "list", "--server", "http://127.0.0.1:9")[0] == 3
