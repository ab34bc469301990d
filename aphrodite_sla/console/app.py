"""``ConsoleApp``: the console's routes, one request in, one response out (``handle``), so the same
pages serve standalone, inside the engine's app (the middleware calls it on a worker thread) and
on the exporter.

Security, in one place: reading needs a session unless anonymous viewing is configured; every
change is a POST with the session cookie (HttpOnly, SameSite=Strict) and the session's CSRF
token, and is then made through the API with the bearer token; sign-in is rate-limited per client
(and overall); every response carries a strict Content-Security-Policy (scripts and styles from
this origin only, no inline script)."""
from __future__ import annotations

import csv
import hmac
import io
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from aphrodite_sla.console import pages, views
from aphrodite_sla.console.actions import ActionOutcome, ConsoleActions, risky_actions
from aphrodite_sla.console.filters import IncidentFilter
from aphrodite_sla.console.html import Safe, utc_iso
from aphrodite_sla.console.session import COOKIE_NAME, Session, SessionBook, SignInLimiter
from aphrodite_sla.console.settings import ConsoleSettings
from aphrodite_sla.export.endpoints import Response
from aphrodite_sla.recovery.api_routing import ApiRequest

logger = logging.getLogger(__name__)

CLIENT_HEADER = "x-aphrodite-sla-client"  # set by our servers from the socket's peer (any incoming value is replaced)
PRE_COOKIE = "aphrodite_sla_console_pre"  # the sign-in form's CSRF (double submit), before a session exists
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
_INCIDENT = re.compile(r"^/incidents/([A-Za-z0-9_.:-]{1,80})(\.json)?$")
_ACTION = re.compile(r"^/incidents/([A-Za-z0-9_.:-]{1,80})/(acknowledge|assign|mitigate|resolve)$")
_DECIDE = re.compile(r"^/incidents/([A-Za-z0-9_.:-]{1,80})/approvals/([A-Za-z0-9_.:-]{1,80})/(approve|deny)$")
_FRAGMENT_INCIDENT = re.compile(r"^/fragment/incident/([A-Za-z0-9_.:-]{1,80})$")
MAX_FORM_BYTES = 16 * 1024
CSV_COLUMNS = ("id", "title", "severity", "status", "type", "detected_at", "acknowledged_at", "acknowledged_by", "assigned_to",
               "resolved_at", "resolved_by", "mttd_minutes", "mttr_minutes", "root_cause")


@dataclass(frozen=True)
class ConsoleResponse(Response):
    """A response with its own headers (cookies, Location, the security headers)."""

    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [*super().headers, ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "same-origin"), ("X-Frame-Options", "DENY"), *self.extra]


def _html(status: int, body: Safe, extra: tuple[tuple[str, str], ...] = ()) -> ConsoleResponse:
    return ConsoleResponse(status, "text/html; charset=utf-8", body.encode(), extra)


class ConsoleApp:
    def __init__(self, sources: views.ConsoleSources, settings: ConsoleSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.sources = sources
        self.settings = settings
        self.sessions = SessionBook(settings.session_ttl_s, clock)
        self.limiter = SignInLimiter(settings.sign_in_attempts, settings.sign_in_window_s, clock)
        self.overall = SignInLimiter(settings.sign_in_attempts * 20, settings.sign_in_window_s, clock)
        self.actions = ConsoleActions(sources.incidents, sources.recovery, settings.token)
        self._flash: dict[str, tuple[bool, str]] = {}
        self._static = {name: resources.files("aphrodite_sla.console").joinpath(f"static/{name}").read_bytes() for name in STATIC}

    def owns(self, path: str) -> bool:
        p = self.settings.prefix
        return path == p or path.startswith(p + "/") if p else True

    # -- entry --------------------------------------------------------------------------------------
    def handle(self, request: ApiRequest) -> Response:
        try:
            return self._route(request)
        except Exception as err:  # a broken part must not take the console (or the engine) down
            logger.exception("aphrodite-sla console: %s %s failed", request.method, request.path)
            return _html(500, pages.error_page(self._context(None), 500, f"The console failed to render this page ({type(err).__name__}). "
                                               "The engine is not affected; the log has the details."))

    def _route(self, request: ApiRequest) -> Response:
        if not self.owns(request.path):
            return _html(404, pages.error_page(self._context(None), 404, f"The console is under {self.settings.prefix}/."))
        path = request.path[len(self.settings.prefix):] or "/"
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name in STATIC and request.method in ("GET", "HEAD"):
                return ConsoleResponse(200, STATIC[name], self._static[name])
            return _html(404, pages.error_page(self._context(None), 404, "No such file."))
        session = self.sessions.get(self._cookie(request, COOKIE_NAME))
        if request.method == "POST":
            return self._post(request, path, session)
        if request.method not in ("GET", "HEAD"):
            page = pages.error_page(self._context(session), 405, "Use GET to read and the page's forms to act.")
            return _html(405, page, (("Allow", "GET, POST"),))
        if path == "/sign-in":
            return self._sign_in_form(request, session)
        if session is None and not self.settings.anonymous_viewing:
            target = self.settings.prefix + path + (("?" + _query_string(request.query)) if request.query else "")
            return self._redirect(self.settings.prefix + "/sign-in?" + _query_string({"next": target}))
        return self._get(request, path, session)

    # -- reading ------------------------------------------------------------------------------------
    def _get(self, request: ApiRequest, path: str, session: Session | None) -> Response:
        ctx = self._context(session)
        now = self.sources.clock()
        flt = IncidentFilter.from_query(request.query, now)
        qs = flt.query()
        src = self.sources
        if path in ("/", "/fragment/overview"):
            body = pages.overview_fragment(ctx, views.overview(src))
            return self._page_or_fragment(ctx, path, "Overview", "overview", body, qs)
        if path in ("/incidents", "/fragment/incidents"):
            body = pages.incidents_fragment(ctx, flt, views.incidents(src, flt))
            if path == "/incidents":
                return self._with_form(ctx, "Incidents", "incidents", pages.filter_form(ctx, flt, "/incidents"), body, qs)
            return _html(200, body)
        if path in ("/timeline", "/fragment/timeline"):
            body = pages.timeline_fragment(ctx, flt, views.recent_activity(src, flt))
            if path == "/timeline":
                return self._with_form(ctx, "Timeline", "timeline", pages.filter_form(ctx, flt, "/timeline"), body, qs)
            return _html(200, body)
        if path in ("/metrics", "/fragment/metrics"):
            stats = src.incidents.statistics(flt.since)
            trend = pages.trend_points(src.incidents.store.all_incidents(since=now - 15 * 86_400, full=False), now)
            return self._page_or_fragment(ctx, path, "Metrics", "metrics", pages.metrics_fragment(ctx, stats, trend, now), qs)
        if path in ("/components", "/fragment/components"):
            return self._page_or_fragment(ctx, path, "Components", "components", pages.components_fragment(ctx, views.components(src)), qs)
        if path in ("/export.json", "/export.csv"):
            return self._export(flt, path.endswith(".csv"), now)
        match = _INCIDENT.match(path)
        if match:
            incident = src.incidents.store.get(match.group(1))
            if incident is None:
                return _html(404, pages.error_page(ctx, 404, f"No incident {match.group(1)!r}. It may have been purged by retention; "
                                                   "see the incident list."))
            if match.group(2):
                data = self._api_json("GET", f"/api/incidents/{incident.incident_id}")
                return ConsoleResponse(200, "application/json", json.dumps(data, indent=2).encode(),
                                       (("Content-Disposition", f'attachment; filename="{incident.incident_id}.json"'),))
            pm = self._api_json("GET", f"/api/incidents/{incident.incident_id}/postmortem")
            markdown = pm.get("markdown") if pm.get("stored") or not incident.is_open else None
            return _html(200, pages.incident_page(ctx, src, incident, risky_actions(src.recovery), markdown))
        match = _FRAGMENT_INCIDENT.match(path)
        if match:
            incident = src.incidents.store.get(match.group(1))
            if incident is None:
                return _html(404, Safe('<p class="flash err">This incident is gone (purged).</p>'))
            return _html(200, pages.incident_live(ctx, src, incident))
        return _html(404, pages.error_page(ctx, 404, "No such page. Use the sections above."))

    def _page_or_fragment(self, ctx: pages.PageContext, path: str, title: str, key: str, body: Safe, qs: str) -> Response:
        if path.startswith("/fragment/"):
            return _html(200, body)
        return _html(200, pages.layout(ctx, title, key, body, live=key, query=qs))

    def _with_form(self, ctx: pages.PageContext, title: str, key: str, form: Safe, body: Safe, qs: str) -> Response:
        page = pages.layout(ctx, title, key, body, live=key, query=qs)
        return _html(200, Safe(page.replace('<div id="live" aria-live="polite">', form + '<div id="live" aria-live="polite">', 1)))

    def _api_json(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        response = self.sources.incidents.api.handle(ApiRequest(method, path, query or {}, {}, b""))
        return json.loads(response.body)

    def _export(self, flt: IncidentFilter, as_csv: bool, now: float) -> Response:
        data = self._api_json("GET", "/api/incidents/export", {"since": str(flt.since)} if flt.since is not None else None)
        wanted = {i.incident_id for i in flt.apply(self.sources.incidents.store.all_incidents(since=flt.since, full=False))}
        items = [i for i in data.get("incidents", []) if i.get("id") in wanted]
        stamp = utc_iso(now).replace(":", "")
        if not as_csv:
            body = json.dumps({"exported_at": data.get("exported_at"), "filter": flt.query(), "count": len(items), "incidents": items}, indent=2)
            return ConsoleResponse(200, "application/json", body.encode(),
                                   (("Content-Disposition", f'attachment; filename="incidents-{stamp}.json"'),))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for i in items:
            row = []
            for col in CSV_COLUMNS:
                v = i.get({"type": "type"}.get(col, col))
                if col.endswith("_at"):
                    v = utc_iso(v) if isinstance(v, (int, float)) else ""
                row.append(_csv_cell(v))
            writer.writerow(row)
        return ConsoleResponse(200, "text/csv; charset=utf-8", out.getvalue().encode(),
                               (("Content-Disposition", f'attachment; filename="incidents-{stamp}.csv"'),))

    # -- signing in ---------------------------------------------------------------------------------
    def _sign_in_form(self, request: ApiRequest, session: Session | None, message: str = "", status: int = 200) -> Response:
        pre = secrets.token_urlsafe(24)
        ctx = pages.PageContext(self.settings.prefix, session.who if session else "", pre, False, self.settings.refresh_interval_s,
                                self.settings.actions_enabled)
        next_url = self._safe_next(request.query.get("next", ""))
        return _html(status, pages.sign_in_page(ctx, next_url, message), (("Set-Cookie", self._cookie_header(PRE_COOKIE, pre, 600)),))

    def _sign_in(self, request: ApiRequest, form: dict[str, str]) -> Response:
        client = request.headers.get(CLIENT_HEADER, "unknown")
        retry_request = ApiRequest("GET", request.path, {"next": form.get("next", "")}, request.headers, b"")
        pre = self._cookie(request, PRE_COOKIE)
        if not pre or not hmac.compare_digest(pre.encode(), form.get("csrf", "").encode()):
            return self._sign_in_form(retry_request, None, "The sign-in form expired; try again.", 403)
        if not (self.limiter.allow(client) and self.overall.allow("*")):
            wait = max(self.limiter.retry_after_s(client), 1.0)
            response = self._sign_in_form(retry_request, None, f"Too many sign-in attempts; wait {wait:.0f} s and try again.", 429)
            assert isinstance(response, ConsoleResponse)
            return ConsoleResponse(response.status, response.content_type, response.body, (*response.extra, ("Retry-After", f"{wait:.0f}")))
        if not self.settings.actions_enabled:
            return self._sign_in_form(retry_request, None, "Sign-in is disabled: no API token is configured.", 403)
        who = " ".join(form.get("who", "").split())[:80]
        if not who:
            return self._sign_in_form(retry_request, None, "Give your name: it is recorded with every action.", 400)
        if not hmac.compare_digest(form.get("token", "").strip().encode(), self.settings.token.encode()):
            return self._sign_in_form(retry_request, None, "That token is not this server's API token.", 401)
        session = self.sessions.open(who)
        target = self._safe_next(form.get("next", "")) or self.settings.prefix + "/"
        return self._redirect(target, (("Set-Cookie", self._cookie_header(COOKIE_NAME, session.session_id, int(self.settings.session_ttl_s))),
                                       ("Set-Cookie", self._cookie_header(PRE_COOKIE, "", 0))))

    # -- acting -------------------------------------------------------------------------------------
    def _post(self, request: ApiRequest, path: str, session: Session | None) -> Response:
        if len(request.body) > MAX_FORM_BYTES:
            return _html(413, pages.error_page(self._context(session), 413, "The form is too large."))
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if path == "/sign-in":
            return self._sign_in(request, form)
        if session is None:
            return _html(401, pages.error_page(self._context(None), 401, "Sign in with the API token to act."))
        if not SessionBook.csrf_ok(session, form.get("csrf")):
            return _html(403, pages.error_page(self._context(session), 403, "The form's security token did not match; reload the page and retry."))
        if path == "/sign-out":
            self.sessions.close(session.session_id)
            return self._redirect(self.settings.prefix + "/", (("Set-Cookie", self._cookie_header(COOKIE_NAME, "", 0)),))
        who = session.who
        match = _ACTION.match(path)
        outcome: ActionOutcome
        if match:
            incident_id, verb = match.groups()
            if verb == "acknowledge":
                outcome = self.actions.acknowledge(incident_id, who)
            elif verb == "assign":
                outcome = self.actions.assign(incident_id, form.get("assignee", "")[:80], who)
            elif verb == "mitigate":
                outcome = self.actions.mitigate(incident_id, form.get("action", ""), who)
            else:
                outcome = self.actions.resolve(incident_id, form.get("notes", "")[:4000], who)
        else:
            match = _DECIDE.match(path)
            if match is None:
                return _html(404, pages.error_page(self._context(session), 404, "No such action."))
            incident_id, request_id, verb = match.groups()
            outcome = self.actions.decide(incident_id, request_id, verb == "approve", who, form.get("reason", "")[:400])
        if len(self._flash) >= 1000:  # bounded: sessions that never came back
            self._flash.clear()
        self._flash[session.session_id] = (outcome.ok, outcome.message)
        return self._redirect(f"{self.settings.prefix}/incidents/{incident_id}")

    # -- helpers ------------------------------------------------------------------------------------
    def _context(self, session: Session | None) -> pages.PageContext:
        flash = self._flash.pop(session.session_id, None) if session is not None else None
        return pages.PageContext(self.settings.prefix, session.who if session else "", session.csrf if session else "",
                                 session is not None and self.settings.actions_enabled, self.settings.refresh_interval_s,
                                 self.settings.actions_enabled, flash)

    @staticmethod
    def _cookie(request: ApiRequest, name: str) -> str | None:
        raw = request.headers.get("cookie", "")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None

    def _cookie_header(self, name: str, value: str, max_age: int) -> str:
        path = self.settings.prefix or "/"
        secure = "; Secure" if self.settings.secure_cookie else ""
        return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"

    def _safe_next(self, target: str) -> str:
        """Only a path of this console (no scheme, no host, no //): an open redirect is refused."""
        prefix = self.settings.prefix
        if target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target and "\n" not in target and "\r" not in target:
            return target
        return ""

    @staticmethod
    def _redirect(location: str, extra: tuple[tuple[str, str], ...] = ()) -> ConsoleResponse:
        return ConsoleResponse(303, "text/plain; charset=utf-8", b"", (("Location", location), *extra))


def _query_string(query: Any) -> str:
    from urllib.parse import urlencode

    return urlencode(dict(query))


def _csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab/CR) gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
