"""The standalone exporter (simulator, sidecar): ``/metrics``, ``/health/production``,
``/metrics/summary`` and ``/openapi.json`` from one WSGI server, with our collector in a registry of
its own (so nothing else of the process leaks in).

Why not a thread per connection: 300 clients that opened a connection and sent half a request
held 300 threads past ``shutdown()``, and 50 parallel scrapers slowed the engine beside it by
35-48%. Here a fixed pool of workers serves the requests, every connection has a socket timeout,
connections beyond a bound get a quick 503 (the listen backlog holds the next ones), and the
responses are built once per published snapshot and reused (``SLAEndpoints``). It binds 127.0.0.1
by default and warns when told to bind elsewhere: the endpoints are read-only, but they tell anyone
who can reach them how the server is doing.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry

from aphrodite_sla.export.collector import SLACollector, watch_exported_windows
from aphrodite_sla.export.endpoints import SLAEndpoints
from aphrodite_sla.sla.manager import SLAManager

logger = logging.getLogger(__name__)

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


def start_exporter(
    manager: SLAManager, port: int, host: str = "127.0.0.1", *, model_name: str = "",
    registry: CollectorRegistry | None = None, config_error: str | None = None,
) -> tuple[BoundedWSGIServer, int, CollectorRegistry]:
    """Serve ``manager``'s snapshots on ``host:port`` (port 0 picks a free one) from a daemon
    thread. Returns (server, port, registry); ``server.shutdown()`` then ``server.server_close()``
    stop it."""
    if not _is_loopback(host):
        logger.warning(
            "aphrodite-sla: exporter bound to %s: reachable beyond this machine (its endpoints are read-only, "
            "but they tell anyone who can reach them how the server is doing)", host,
        )
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    watch_exported_windows(manager)
    registry.register(SLACollector(manager.snapshot, model_name=model_name, self_metrics=manager.self_metrics))
    endpoints = SLAEndpoints(
        manager.snapshot, config_error=config_error, registry=registry, model_name=model_name, clock=manager.clock,
        stale_after_s=max(3 * manager.evaluation_interval_s, 15.0),
    )
    server = BoundedWSGIServer((host, port))
    server.set_app(endpoints.wsgi_app)
    thread = threading.Thread(target=server.serve_forever, name="aphrodite-sla-exporter-listener", daemon=True)
    thread.start()
    return server, int(server.server_port), registry


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False
