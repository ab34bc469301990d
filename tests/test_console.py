"""The incident console without a browser: escaping, markdown, filters, sign-in (rate limit, open
redirects, disabled without a token), CSRF, read-only configuration, the security headers, CSV
export, and the same pages mounted in the engine's ASGI app and on the exporter."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from aphrodite_sla.config import SLAConfig
from aphrodite_sla.console.app import CLIENT_HEADER, CSP, ConsoleApp
from aphrodite_sla.console.filters import IncidentFilter, parse_since
from aphrodite_sla.console.html import h, tag
from aphrodite_sla.console.markdown import render_markdown
from aphrodite_sla.console.settings import ConsoleSettings
from aphrodite_sla.incidents.model import IncidentSeverity, IncidentType
from aphrodite_sla.recovery.api_routing import ApiRequest
from tests.console_fixture import TOKEN, LiveConsole, start_console


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[LiveConsole]:
    console = start_console(tmp_path, refresh_s=5.0)
    try:
        yield console
    finally:
        console.stop()


def _create(live: LiveConsole, title: str = "t", severity: str = "high", **labels: str) -> str:
    inc = live.incidents.manager.create_manual(title=title, severity=IncidentSeverity(severity), incident_type=IncidentType.ERROR_BURST,
                                               description="", by="test", labels=labels)
    return str(inc.incident_id)


def _get(app: ConsoleApp, path: str, cookie: str = "", **query: str) -> Any:
    headers = {"cookie": cookie} if cookie else {}
    return app.handle(ApiRequest("GET", app.settings.prefix + path, query, headers, b""))


def _post(app: ConsoleApp, path: str, form: dict[str, str], cookie: str = "", client: str = "10.0.0.1") -> Any:
    headers = {"cookie": cookie, CLIENT_HEADER: client}
    return app.handle(ApiRequest("POST", app.settings.prefix + path, {}, headers, urlencode(form).encode()))


def _header(response: Any, name: str) -> list[str]:
    return [v for k, v in response.headers if k.lower() == name.lower()]


def _sign_in(app: ConsoleApp, who: str = "bob", token: str = TOKEN, client: str = "10.0.0.1", next_url: str = "") -> Any:
    form_page = _get(app, "/sign-in")
    pre = _header(form_page, "Set-Cookie")[0].split(";")[0]
    csrf = pre.split("=", 1)[1]
    return _post(app, "/sign-in", {"who": who, "token": token, "csrf": csrf, "next": next_url}, cookie=pre, client=client)


def _session(app: ConsoleApp) -> tuple[str, str]:
    response = _sign_in(app)
    assert response.status == 303
    cookie = next(c for c in _header(response, "Set-Cookie") if c.startswith("aphrodite_sla_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    page = _get(app, "/", cookie=value).body.decode()
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return value, csrf


def test_values_are_escaped_and_markdown_is_safe() -> None:
    assert h('<b a="1">&') == "&lt;b a=&quot;1&quot;&gt;&amp;"
    assert tag("a", "<x>", href='"><script>') == '<a href="&quot;&gt;&lt;script&gt;">&lt;x&gt;</a>'
    html = render_markdown("# t <script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    assert "<script>" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html


def test_filters_parse_and_report_bad_values() -> None:
    now = 10_000.0
    assert parse_since("1h", now) == now - 3600 and parse_since("30m", now) == now - 1800 and parse_since("5000", now) == 5000
    with pytest.raises(ValueError):
        parse_since("yesterday", now)
    flt = IncidentFilter.from_query({"severity": "critical,nope", "status": "active", "since": "soon", "sort": "x"}, now)
    assert flt.severities == ("critical",) and "detected" in flt.statuses and flt.since is None and flt.sort == "detected"
    assert len(flt.errors) == 3
    assert IncidentFilter.from_query({"severity": "high", "status": "active"}, now).query() == "severity=high&status=active"


def test_every_page_has_a_strict_csp_and_no_inline_script(live: LiveConsole) -> None:
    incident_id = _create(live, "<script>x</script>")
    for path in ("/", "/incidents", "/timeline", "/metrics", "/components", f"/incidents/{incident_id}", "/sign-in", "/nope"):
        response = _get(live.app, path)
        assert _header(response, "Content-Security-Policy") == [CSP], path
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        body = response.body.decode()
        assert body.count("<script") == body.count("<script src="), path  # only our file
    assert _get(live.app, "/incidents", method="x").status == 200  # unknown query keys are ignored
    assert live.app.handle(ApiRequest("GET", "/incidents")).status == 404  # outside its prefix


def test_sign_in_is_rate_limited_per_client(live: LiveConsole) -> None:
    for _ in range(live.app.settings.sign_in_attempts):
        assert _sign_in(live.app, token="wrong", client="10.9.9.9").status == 401
    refused = _sign_in(live.app, token=TOKEN, client="10.9.9.9")
    assert refused.status == 429 and _header(refused, "Retry-After")
    assert _sign_in(live.app, client="10.9.9.10").status == 303  # another client still signs in


def test_sign_in_refuses_open_redirects(live: LiveConsole) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil", "javascript:alert(1)"):
        response = _sign_in(live.app, next_url=target)
        assert _header(response, "Location") == ["/console/"], target
    good = "/console/incidents?severity=high"
    assert _header(_sign_in(live.app, next_url=good), "Location") == [good]


def test_actions_need_a_session_and_its_csrf_token(live: LiveConsole) -> None:
    incident_id = _create(live)
    assert _post(live.app, f"/incidents/{incident_id}/acknowledge", {"csrf": "x"}).status == 401
    cookie, csrf = _session(live.app)
    assert _post(live.app, f"/incidents/{incident_id}/acknowledge", {"csrf": "forged"}, cookie=cookie).status == 403
    assert live.incidents.store.get(incident_id).acknowledged_at is None
    assert _get(live.app, f"/incidents/{incident_id}/acknowledge", cookie=cookie).status == 404  # no action by GET
    assert _post(live.app, f"/incidents/{incident_id}/acknowledge", {"csrf": csrf}, cookie=cookie).status == 303
    assert live.incidents.store.get(incident_id).acknowledged_by == "bob"
    audit = live.incidents.store.get(incident_id).audit
    assert any(a.actor == "bob" and a.action == "acknowledged" for a in audit), audit


def test_without_a_token_configured_nothing_can_be_done(tmp_path: Path) -> None:
    live = start_console(tmp_path, token="")
    try:
        incident_id = _create(live)
        assert _sign_in(live.app, token="").status == 403
        assert "Actions are disabled" in _get(live.app, f"/incidents/{incident_id}").body.decode()
    finally:
        live.stop()


def test_read_only_viewing_can_be_switched_off(tmp_path: Path) -> None:
    live = start_console(tmp_path, anonymous_viewing=False)
    try:
        response = _get(live.app, "/incidents", severity="high")
        assert response.status == 303 and _header(response, "Location")[0].startswith("/console/sign-in?next=%2Fconsole%2Fincidents")
        cookie, _ = _session(live.app)
        assert _get(live.app, "/incidents", cookie=cookie).status == 200
    finally:
        live.stop()
    assert ConsoleSettings.from_config(environ={"APHRODITE_SLA_CONSOLE_ANONYMOUS_VIEW": "0"}).anonymous_viewing is False
    from aphrodite_sla.incidents.config import parse_incident_config

    closed = parse_incident_config({"dashboard": {"read_only_viewing": False}})  # the seed's dashboard: section
    assert ConsoleSettings.from_config(closed, environ={}).anonymous_viewing is False
    assert ConsoleSettings.from_config(parse_incident_config({}), environ={}).anonymous_viewing is True


def test_csv_export_neutralises_formulas(live: LiveConsole) -> None:
    _create(live, "=HYPERLINK(\"http://evil\")", "critical")
    _create(live, "quiet one", "low")
    body = _get(live.app, "/export.csv", severity="critical").body.decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,title,severity") and len(lines) == 2
    assert "'=HYPERLINK" in lines[1]
    data = json.loads(_get(live.app, "/export.json", severity="low").body)
    assert [i["title"] for i in data["incidents"]] == ["quiet one"]


def test_refresh_interval_comes_from_the_dashboard_configuration(tmp_path: Path) -> None:
    from aphrodite_sla.incidents.config import parse_incident_config

    config = parse_incident_config({"dashboard": {"refresh_interval_seconds": 12}})
    assert ConsoleSettings.from_config(config).refresh_interval_s == 12.0
    assert ConsoleSettings.from_config(parse_incident_config({})).refresh_interval_s == 30.0
    with pytest.raises(ValueError):
        ConsoleSettings(refresh_interval_s=float("nan"))


def test_mounted_in_the_engines_asgi_app(live: LiveConsole) -> None:
    from aphrodite_sla.console.mount import attach_console
    from aphrodite_sla.integrations.asgi import SLAMiddleware

    incident_id = _create(live, "asgi <b>mounted</b>")
    mounted = attach_console(live.context)
    assert mounted is not None and mounted.settings.prefix == "/console"
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = SLAMiddleware(app, context=live.context)

    async def call(path: str) -> tuple[int, dict[str, str], bytes]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [], "client": ("127.0.0.1", 5)}
        await middleware(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        return sent[0]["status"], headers, sent[-1].get("body", b"")

    status, headers, body = asyncio.run(call(f"/console/incidents/{incident_id}"))
    assert status == 200 and headers["content-security-policy"] == CSP
    assert "asgi &lt;b&gt;mounted&lt;/b&gt;" in body.decode() and 'href="/console/static/console.css"' in body.decode()
    assert asyncio.run(call("/console/static/console.js"))[0] == 200
    assert calls == []
    asyncio.run(call("/v1/models"))
    assert calls == ["/v1/models"]  # everything else passes through


def test_mounted_on_the_exporter(live: LiveConsole) -> None:
    from aphrodite_sla.console.mount import attach_console
    from aphrodite_sla.export.server import start_exporter

    mounted = attach_console(live.context)
    assert mounted is not None
    app = ConsoleApp(mounted.sources, replace(mounted.settings, token=TOKEN))
    server, port, _ = start_exporter(live.context.manager, 0, console=app.handle, endpoints=live.context.endpoints)
    try:
        base = f"http://127.0.0.1:{port}/console"
        with urllib.request.urlopen(base + "/", timeout=10) as response:
            assert response.status == 200 and response.headers["Content-Security-Policy"] == CSP
        with urllib.request.urlopen(base + "/sign-in", timeout=10) as response:
            pre = response.headers["Set-Cookie"].split(";")[0]
        data = urlencode({"who": "carol", "token": TOKEN, "csrf": pre.split("=", 1)[1], "next": ""}).encode()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(urllib.request.Request(base + "/sign-in", data=data, headers={"Cookie": pre}), timeout=10)
        assert err.value.code == 303 and err.value.headers["Location"] == "/console/"
        assert any(c.startswith("aphrodite_sla_console=") and "HttpOnly" in c for c in err.value.headers.get_all("Set-Cookie"))
    finally:
        server.shutdown()
        server.server_close()


def test_dashboard_command_serves_the_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.tools import free_port

    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "aphrodite_sla.cli", "incidents", "dashboard", "--port", str(port), "--store",
                             str(tmp_path / "i.db")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"incident console: http://127.0.0.1:{port}/" in first, first
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/incidents", timeout=5) as response:
                    assert "No incidents are recorded" in response.read().decode()
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_incident_page_shows_rca_and_notifications_when_present(live: LiveConsole) -> None:
    from aphrodite_sla.console.notifications import Delivery

    incident_id = _create(live, "slow tokens", "high")
    page = _get(live.app, f"/incidents/{incident_id}").body.decode()
    assert "No root-cause analysis for this incident yet" in page
    live.context.events.drain()  # the change reached the notifier's outbox ...
    assert live.incidents.notifier.wait_delivered(10)  # ... and its (default: log) receiver
    page = _get(live.app, f"/incidents/{incident_id}").body.decode()
    assert "opened: delivered" in page and "No notifier in this process" not in page
    live.app.sources.notifications = None
    assert "No notifier in this process" in _get(live.app, f"/incidents/{incident_id}").body.decode()
    live.incidents.manager.change(incident_id, by="rca", action="root_cause", message="root cause: <kv> pressure",
                                  root_cause="KV-cache <pressure>", root_cause_detail={
                                      "cause": "KV-cache <pressure>", "category": "capacity", "confidence": 0.82,
                                      "analysis": {"evidence": [{"metric": "kv_cache_usage_percent", "correlation": 0.91}],
                                                   "leading_indicators": ["kv_cache_usage_percent rose 40 s before the onset"]}})

    class Outbox:
        def deliveries(self, incident_id: str) -> list[Any]:
            return [Delivery("slack", "#oncall <x>", "sent", 1.0e9, 1, ""), {"channel": "pagerduty", "receiver": "primary",
                                                                             "status": "retrying", "attempts": 3, "error": "HTTP 503"}]

    live.app.sources.notifications = Outbox()
    page = _get(live.app, f"/incidents/{incident_id}").body.decode()
    assert "KV-cache &lt;pressure&gt;" in page and "confidence 82%" in page and "capacity" in page
    assert "Leading indicators" in page and "rose 40 s before the onset" in page and "correlation: 0.91" in page
    assert "#oncall &lt;x&gt;" in page and "retrying" in page and "HTTP 503" in page


def test_the_runtimes_exporter_serves_the_console(tmp_path: Path) -> None:
    from aphrodite_sla.runtime import SLARuntime
    from tests.tools import free_port

    port = free_port()
    runtime = SLARuntime(SLAConfig(exporter_port=port, incidents_db=str(tmp_path / "i.db"), api_token=TOKEN, system_sampler=False))
    runtime.start()
    try:
        assert runtime.context.incidents is not None
        runtime.context.incidents.manager.create_manual(title="from the runtime <i>", severity=IncidentSeverity.LOW,
                                                        incident_type=IncidentType.ERROR_BURST, description="", by="t", labels={})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/console/incidents", timeout=10) as response:
            body = response.read().decode()
        assert response.headers["Content-Security-Policy"] == CSP and "from the runtime &lt;i&gt;" in body
    finally:
        runtime.stop()


def test_incident_page_reads_approvals_and_executions_from_recoverys_published_view(live: LiveConsole) -> None:
    """The page lists what waits for a person and what ran from the view recovery publishes on
    its own thread: it takes none of the recovery engine's locks (a page request must not queue
    behind recovery work)."""
    incident_id = _create(live, "error burst", "high")
    cookie, csrf = _session(live.app)
    assert _post(live.app, f"/incidents/{incident_id}/mitigate", {"csrf": csrf, "action": "service_restart"}, cookie=cookie).status == 303
    recovery = live.context.recovery
    assert recovery is not None
    deadline = time.monotonic() + 15.0
    while not recovery.view.pending_approvals and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.action.value for r in recovery.view.pending_approvals] == ["service_restart"]

    def locked(*_: Any) -> Any:
        raise AssertionError("the console read the recovery engine instead of its published view")

    engine = recovery.engine
    originals = engine.approvals.pending, engine.active, engine.history
    engine.approvals.pending, engine.active, engine.history = locked, locked, locked  # type: ignore[method-assign]
    try:
        page = _get(live.app, f"/incidents/{incident_id}", cookie=cookie).body.decode()
    finally:
        engine.approvals.pending, engine.active, engine.history = originals  # type: ignore[method-assign]
    assert "Approve service_restart" in page
