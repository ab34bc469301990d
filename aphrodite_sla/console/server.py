"""The console served on its own: a small threaded HTTP server (stdlib) on 127.0.0.1.

Why the stdlib server: the console is a handful of pages for a few people; ``ThreadingHTTPServer``
answers each on its own thread, and the same ``ConsoleApp.handle`` serves the engine's app and the
exporter, so there is nothing framework-specific to keep in step."""
from __future__ import annotations

import ipaddress
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aphrodite_sla.console.app import CLIENT_HEADER, MAX_FORM_BYTES, ConsoleApp
from aphrodite_sla.recovery.api_routing import ApiRequest

logger = logging.getLogger(__name__)


def request_from(method: str, target: str, headers: dict[str, str], body: bytes, client: str) -> ApiRequest:
    parts = urlsplit(target)
    clean = {k.lower(): v for k, v in headers.items() if k.lower() != CLIENT_HEADER}
    clean[CLIENT_HEADER] = client
    return ApiRequest(method, parts.path or "/", dict(parse_qsl(parts.query)), clean, body)


def _handler(app: ConsoleApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aphrodite-sla-console"
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_FORM_BYTES:
                self.send_error(413, "body too large")
                return
            body = self.rfile.read(length) if length else b""
            request = request_from(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
            response = app.handle(request)
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            logger.debug("console %s - %s", self.address_string(), format % args)

    return Handler


class ConsoleServer:
    """``ConsoleServer(app, port).start()``; ``url`` says where; ``stop()`` ends it."""

    def __init__(self, app: ConsoleApp, port: int = 8080, host: str = "127.0.0.1") -> None:
        self.app = app
        self.httpd = ThreadingHTTPServer((host, port), _handler(app))
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_port)
        self._thread: threading.Thread | None = None
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            logger.warning("aphrodite-sla console bound to %s: reachable beyond this machine; put TLS in front of it", host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.app.settings.prefix}/"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="aphrodite-sla-console", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
