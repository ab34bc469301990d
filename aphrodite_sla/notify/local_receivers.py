"""Local receivers on 127.0.0.1 for the demo and the tests: HTTP sinks in the shapes of a Slack
incoming webhook, PagerDuty's Events API v2 and a generic (Alertmanager v4) webhook, and an SMTP
server (aiosmtpd). Each records what it received and checks the shape the real service demands
(a PagerDuty event without ``routing_key`` or ``dedup_key`` is refused with 400, as PagerDuty does).

Why in the package: ``make demo`` starts them so its notifications go somewhere real without
network or accounts. aiosmtpd is a test/demo dependency (the ``test`` extra, which ``make demo``
installs), imported only when the SMTP sink starts; production never runs a mail server.
"""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_slack(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        return "invalid_payload: text is required"
    if "blocks" in body and not isinstance(body["blocks"], list):
        return "invalid_blocks"
    return ""


def check_pagerduty(body: Any, routing_key: str | None) -> str:
    if not isinstance(body, dict):
        return "Event object is invalid"
    if not body.get("routing_key") or (routing_key is not None and body["routing_key"] != routing_key):
        return "Invalid routing key"
    if body.get("event_action") not in PAGERDUTY_ACTIONS:
        return "'event_action' is invalid"
    if not body.get("dedup_key"):
        return "'dedup_key' is missing"
    if body["event_action"] == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict) or not payload.get("summary") or not payload.get("source"):
            return "'payload' needs summary and source"
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            return "'payload.severity' is invalid"
    return ""


def check_webhook_v4(body: Any) -> str:
    if not isinstance(body, dict) or body.get("version") != "4" or body.get("status") not in ("firing", "resolved"):
        return "not an Alertmanager v4 webhook payload"
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts or not all(isinstance(a, dict) and "labels" in a and "fingerprint" in a for a in alerts):
        return "alerts[] with labels and fingerprint required"
    return ""


class HttpSink:
    """A JSON POST sink. ``kind``: "slack" (200 "ok"), "pagerduty" (202 JSON) or "webhook" (200).
    ``stop()`` closes the port (the receiver is down: connections are refused) and ``start()``
    opens the same port again. ``failing``: answer 503 while set."""

    def __init__(self, kind: str, *, routing_key: str | None = None, bearer_token: str | None = None, port: int = 0) -> None:
        self.kind = kind
        self.routing_key = routing_key
        self.bearer_token = bearer_token
        self.port = port or _free_port()
        self.received: list[Received] = []
        self.rejected: list[tuple[Received, str]] = []
        self.failing = False
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        path = {"slack": "/services/T000/B000/XXXX", "pagerduty": "/v2/enqueue", "webhook": "/hook"}[self.kind]
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HttpSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status, reply = sink._answer(got)
                data = reply.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if reply.startswith("{") else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name=f"local-{self.kind}-sink", daemon=True).start()
        return self

    def _answer(self, got: Received) -> tuple[int, str]:
        if self.failing:
            return 503, "unavailable"
        if self.kind == "slack":
            problem = check_slack(got.body)
        elif self.kind == "pagerduty":
            problem = check_pagerduty(got.body, self.routing_key)
        else:
            problem = check_webhook_v4(got.body)
            if not problem and self.bearer_token is not None and got.headers.get("authorization") != f"Bearer {self.bearer_token}":
                with self._lock:
                    self.rejected.append((got, "unauthorized"))
                return 401, "unauthorized"
        with self._lock:
            if problem:
                self.rejected.append((got, problem))
            else:
                self.received.append(got)
        if problem:
            return 400, json.dumps({"status": "invalid event", "message": problem}) if self.kind == "pagerduty" else problem
        if self.kind == "pagerduty":
            return 202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": got.body["dedup_key"]})
        return 200, "ok"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]


@dataclass
class SmtpMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: str


@dataclass
class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it accepts. With ``tls_cert`` and
    ``tls_key`` (PEM files) it requires STARTTLS; with ``credentials`` (user, password) it requires
    a login (after STARTTLS when TLS is on)."""

    port: int = 0
    messages: list[SmtpMessage] = field(default_factory=list)
    tls_cert: str | None = None
    tls_key: str | None = None
    credentials: tuple[str, str] | None = None
    _controller: Any = None

    def start(self) -> SmtpSink:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        sink = self

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword) and sink.credentials is not None
                  and (auth_data.login.decode(), auth_data.password.decode()) == sink.credentials)
            return AuthResult(success=ok, handled=False)

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                content = envelope.content.decode("utf-8", errors="replace") if isinstance(envelope.content, bytes) else envelope.content
                sink.messages.append(SmtpMessage(envelope.mail_from, list(envelope.rcpt_tos), content))
                return "250 Message accepted for delivery"

        self.port = self.port or _free_port()
        options: dict[str, Any] = {}
        if self.tls_cert and self.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls_cert, self.tls_key)
            options.update(tls_context=context, require_starttls=True)
        if self.credentials is not None:
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=bool(self.tls_cert))
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class LocalReceivers:
    """All four sinks, started together; ``notifications_config()`` is the configuration section
    (and ``env`` the variables) that sends to them."""

    slack: HttpSink
    pagerduty: HttpSink
    webhook: HttpSink
    smtp: SmtpSink
    routing_key: str = "local-routing-key-0000"

    @classmethod
    def start(cls) -> LocalReceivers:
        key = "local-routing-key-0000"
        return cls(HttpSink("slack").start(), HttpSink("pagerduty", routing_key=key).start(), HttpSink("webhook").start(),
                   SmtpSink().start(), key)

    def stop(self) -> None:
        for sink in (self.slack, self.pagerduty, self.webhook, self.smtp):
            sink.stop()

    @property
    def env(self) -> dict[str, str]:
        return {"LOCAL_SLACK_WEBHOOK_URL": self.slack.url, "LOCAL_PAGERDUTY_ROUTING_KEY": self.routing_key}

    def notifications_config(self, *, alertmanager_url: str | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "slack": {"webhook_url": "${LOCAL_SLACK_WEBHOOK_URL}", "timeout_seconds": 2},
            "pagerduty": {"routing_key": "${LOCAL_PAGERDUTY_ROUTING_KEY}", "url": self.pagerduty.url, "timeout_seconds": 2},
            "webhook": {"url": self.webhook.url, "timeout_seconds": 2},
            "email": {"smtp_server": "127.0.0.1", "smtp_port": self.smtp.port, "from_address": "incidents@localhost",
                      "to_addresses": ["oncall@localhost"], "notify_on_severity": ["high", "critical"], "timeout_seconds": 2},
        }
        if alertmanager_url:
            section["alertmanager"] = {"url": alertmanager_url, "timeout_seconds": 2}
        return section
