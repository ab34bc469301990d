"""The standalone exporter (simulator, sidecar, ``exporter_port``): ``/metrics``,
``/health/production``, ``/metrics/summary`` and ``/openapi.json``, with our collector in a registry
of its own (so nothing else of the process leaks in).

Why a process of its own: every request an in-process server handles needs the interpreter lock
several times (accept, read, parse, write), so scrapers competed with the engine's thread for it:
50 parallel scrapers slowed the engine beside them by 35-48% and waited seconds. Here the engine's
process only renders the responses — once per published snapshot, at most twice a second, on a
thread of ours — and hands the bytes to a small server process, which answers every scrape from
memory. There, a fixed pool of workers serves the requests, every connection has a socket timeout
(300 clients sending half a request once held 300 threads past ``shutdown()``), connections beyond
a bound get a quick 503 and the listen backlog holds the next ones. It binds 127.0.0.1 by default
and warns when told to bind elsewhere: the endpoints are read-only, but they tell anyone who can
reach them how the server is doing.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import multiprocessing as mp
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry

from aphrodite_sla.export.collector import SLACollector, watch_exported_windows
from aphrodite_sla.export.endpoints import HISTORY_PATH, JSON_PATHS, OPENAPI_PATH, Response, SLAEndpoints
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.recovery.api_routing import ApiRequest
from aphrodite_sla.self_metrics import Component, SelfMetrics
from aphrodite_sla.sla.manager import SLAManager

logger = logging.getLogger(__name__)

ApiHandler = Callable[[ApiRequest], Response]

WORKERS = 4  # threads serving requests
MAX_PENDING = 64  # connections being served or waiting for a worker; past that: a quick 503
SOCKET_TIMEOUT_S = 5.0  # a client that sends nothing (or half a request) for this long is dropped
LISTEN_BACKLOG = 128
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Handler(WSGIRequestHandler):
    """One request per connection, a socket timeout, no log line per request."""

    timeout = SOCKET_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class BoundedWSGIServer(WSGIServer):
    """A WSGI server whose requests run on a fixed pool (see the module docstring)."""

    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], workers: int = WORKERS, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="aphrodite-sla-exporter")
        self._slots = threading.BoundedSemaphore(max_pending)
        self.refused = 0
        super().__init__(address, _Handler)  # binds: a busy port raises here (server_close runs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                request.settimeout(0.5)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            self._pool.submit(self._serve, request, client_address)
        except RuntimeError:  # the pool is shut down
            self._slots.release()
            self.shutdown_request(request)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("aphrodite-sla exporter: request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- the server process ------------------------------------------------------------------------------
PUBLISH_INTERVAL_S = 0.5  # how often the engine's process renders and hands over new responses
START_TIMEOUT_S = 60.0


API_TIMEOUT_S = 10.0  # an API call the engine's process does not answer in this time gets a 504
MAX_API_BODY = 64 * 1024


CLIENT_HEADER = "x-aphrodite-sla-client"  # as aphrodite_sla.console.app reads it
_BASE_HEADERS = ("content-type", "content-length", "cache-control")  # written by the server process itself


def _serve(conn: Any, host: str, port: int, api_conn: Any = None, api_prefixes: tuple[str, ...] = ()) -> None:
    """The server process: bind, report the port (or the error), then serve the latest responses
    the engine's process sends until it closes the pipe (or dies). Requests under ``api_prefixes``
    (the recovery REST API, the evaluation history) are passed to the engine's process over
    ``api_conn``, one at a time."""
    responses: dict[str, tuple[int, str, bytes]] = {}
    api_lock = threading.Lock()
    try:
        server = BoundedWSGIServer((host, port))
    except OSError as err:
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return

    def api_call(environ: dict[str, Any]) -> tuple[Any, ...]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_API_BODY:
            return 413, "application/json", json.dumps({"error": f"body must be at most {MAX_API_BODY} bytes"}).encode()
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers[CLIENT_HEADER] = str(environ.get("REMOTE_ADDR", ""))  # the peer (the console's sign-in limit), never the client's word
        request = (environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", ""), headers, body)
        with api_lock:  # one call in flight on the pipe: low traffic, and replies cannot cross
            try:
                api_conn.send(request)
                if not api_conn.poll(API_TIMEOUT_S):
                    raise TimeoutError
                return api_conn.recv()
            except (OSError, EOFError, TimeoutError):
                return 504, "application/json", json.dumps({"error": "the monitor did not answer in time"}).encode()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        found = responses.get(path)
        extra: list[tuple[str, str]] = []
        if api_conn is not None and any(path == p or path.startswith(p + "/") for p in api_prefixes):
            status, ctype, body, *more = api_call(environ)
            extra = list(more[0]) if more else []  # the console's cookies, redirects and security headers
        elif found is None:
            status, ctype, body = 404, "application/json", json.dumps({"error": "not found", "paths": sorted(responses)}).encode()
        elif method not in ("GET", "HEAD"):
            status, ctype, body = 405, "application/json", json.dumps({"error": f"{method} not allowed; use GET"}).encode()
        else:
            status, ctype, body = found
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"), *extra])
        return [b"" if method == "HEAD" else body]

    server.set_app(app)
    conn.send(("port", int(server.server_port)))
    try:
        first = conn.recv()  # serve nothing before the first rendering has arrived
        if first is None:
            return
        responses.update(first)
    except (EOFError, OSError):
        return
    listener = threading.Thread(target=server.serve_forever, name="aphrodite-sla-exporter-listener", daemon=True)
    listener.start()
    try:
        while True:
            update = conn.recv()  # {path: (status, content type, body)}; EOFError when the parent is gone
            if update is None:
                break
            responses.update(update)
    except (EOFError, OSError):
        pass
    finally:
        server.shutdown()
        server.server_close()


class ProcessExporter:
    """The engine's side: renders the endpoints' responses (``SLAEndpoints``, cached per snapshot)
    on a thread of its own and hands them to the server process. ``shutdown()`` and
    ``server_close()`` stop both."""

    def __init__(self, endpoints: SLAEndpoints, host: str, port: int, self_metrics: SelfMetrics | None = None,
                 api: ApiHandler | None = None, api_prefixes: tuple[str, ...] = ("/api/auto-recovery",)) -> None:
        self.endpoints = endpoints
        self.self_metrics = self_metrics
        context = mp.get_context("spawn")  # nothing of the engine's state (threads, locks) is copied
        self._conn, child_conn = context.Pipe()
        api_child = None
        self._api_conn = None
        if api is not None:
            self._api_conn, api_child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, host, port, api_child, api_prefixes),
                                        name="aphrodite-sla-exporter", daemon=True)
        self._process.start()
        child_conn.close()
        if api_child is not None:
            api_child.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self._process.kill()
            raise OSError(f"the exporter process did not start within {START_TIMEOUT_S:.0f} s")
        kind, value = self._conn.recv()
        if kind == "error":
            self._process.join(5)
            raise OSError(f"cannot serve on {host}:{port}: {value}")
        self.host = host
        self.server_port = int(value)
        self._sent: dict[str, Response] = {}
        self.publish()  # the first rendering, before the server process answers anything
        self._publisher = PeriodicThread("aphrodite-sla-exporter-publisher", self.publish, PUBLISH_INTERVAL_S, run_first=False)
        self._publisher.start()
        self._api_thread = None
        if api is not None:
            self._api_thread = threading.Thread(target=self._serve_api, args=(api,), name="aphrodite-sla-exporter-api", daemon=True)
            self._api_thread.start()

    def _serve_api(self, api: ApiHandler) -> None:
        """Answer the server process's API calls (on this thread: never the engine's loop)."""
        conn = self._api_conn
        assert conn is not None
        while True:
            try:
                method, path, query, headers, body = conn.recv()
            except (EOFError, OSError):
                return
            try:
                response = api(ApiRequest(method, path, dict(parse_qsl(query)), headers, body))
                extra = [(k, v) for k, v in response.headers if k.lower() not in _BASE_HEADERS]
                reply: tuple[Any, ...] = (response.status, response.content_type, response.body, extra)
            except Exception as err:  # pragma: no cover - the router answers its own errors
                reply = (500, "application/json", json.dumps({"error": f"internal error: {type(err).__name__}"}).encode())
            try:
                conn.send(reply)
            except (OSError, ValueError):
                return

    def publish(self) -> None:
        """Render what changed and hand it over (a rendering is reused while its snapshot is)."""
        update = {}
        for path in (*JSON_PATHS, OPENAPI_PATH, "/metrics"):
            response = self.endpoints.handle("GET", path)
            if response is not None and self._sent.get(path) is not response:
                self._sent[path] = response
                update[path] = (response.status, response.content_type, response.body)
        if update:
            try:
                self._conn.send(update)
            except (OSError, ValueError) as err:
                if self.self_metrics is not None:
                    self.self_metrics.error(Component.ENDPOINT, f"the exporter process is gone: {err}")

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def shutdown(self) -> None:
        self._publisher.stop(5.0)
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)

    def server_close(self) -> None:
        self._conn.close()
        if self._api_conn is not None:
            self._api_conn.close()


def start_exporter(
    manager: SLAManager, port: int, host: str = "127.0.0.1", *, model_name: str = "",
    registry: CollectorRegistry | None = None, config_error: str | None = None, api: ApiHandler | None = None,
    endpoints: SLAEndpoints | None = None, console: ApiHandler | None = None,
) -> tuple[ProcessExporter, int, CollectorRegistry]:
    """Serve ``manager``'s snapshots on ``host:port`` (port 0 picks a free one) from a server
    process (see the module docstring). Returns (exporter, port, registry); ``shutdown()`` then
    ``server_close()`` stop it. A busy port raises ``OSError``. ``api``: the recovery REST API's
    handler, served under ``/api/auto-recovery``; ``endpoints``: JSON endpoints of the caller's
    (e.g. with recovery's sections), else built here; ``console``: the incident console's handler,
    served under ``/console``."""
    if not _is_loopback(host):
        logger.warning(
            "aphrodite-sla: exporter bound to %s: reachable beyond this machine (its endpoints are read-only, "
            "but they tell anyone who can reach them how the server is doing)", host,
        )
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    watch_exported_windows(manager)
    registry.register(SLACollector(manager.snapshot, model_name=model_name, self_metrics=manager.self_metrics))
    if endpoints is None:
        endpoints = SLAEndpoints(
            manager.snapshot, config_error=config_error, registry=registry, model_name=model_name, clock=manager.clock,
            stale_after_s=max(3 * manager.evaluation_interval_s, 15.0),
        )
    else:
        endpoints.registry = registry
    prefixes: tuple[str, ...] = ()
    if api is not None:
        prefixes += ("/api/auto-recovery", "/api/incidents", "/api/v1/rca")
    if console is not None:
        prefixes += ("/console",)
    if endpoints.history is not None:  # a day of points: rendered when asked, not pushed every half second
        prefixes += (HISTORY_PATH,)
    forward = _forwarder(endpoints, api, console) if prefixes else None
    exporter = ProcessExporter(endpoints, host, port, manager.self_metrics, api=forward, api_prefixes=prefixes)
    return exporter, exporter.server_port, registry


def _forwarder(endpoints: SLAEndpoints, api: ApiHandler | None, console: ApiHandler | None = None) -> ApiHandler:
    """What answers the calls the server process forwards: the history from the endpoints, the
    rest from the recovery API."""

    def forward(request: ApiRequest) -> Response:
        if console is not None and (request.path == "/console" or request.path.startswith("/console/")):
            return console(request)
        if request.path == HISTORY_PATH:
            response = endpoints.handle(request.method, request.path)
            if response is not None:
                return response
        if api is None:
            return Response(404, "application/json", json.dumps({"error": f"not found: {request.path}"}).encode())
        return api(request)

    return forward


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False
