"""The standalone exporter (simulator, sidecar): ``/metrics``, ``/health/production``,
``/metrics/summary`` and ``/openapi.json`` on 127.0.0.1 from one threaded WSGI server, with our
collector in a registry of its own (so nothing else of the process leaks in)."""
from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer

from aphrodite_sla.export.collector import SLACollector, watch_exported_windows
from aphrodite_sla.export.endpoints import SLAEndpoints
from aphrodite_sla.sla.manager import SLAManager


class _QuietHandler(WSGIRequestHandler):
    """No per-request line on stderr (a scrape every few seconds would flood the log)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def start_exporter(
    manager: SLAManager, port: int, host: str = "127.0.0.1", *, model_name: str = "",
    registry: CollectorRegistry | None = None, config_error: str | None = None,
) -> tuple[Any, int, CollectorRegistry]:
    """Serve ``manager``'s snapshots on ``host:port`` (port 0 picks a free one) from a daemon
    thread. Returns (server, port, registry); ``server.shutdown()`` stops it."""
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    watch_exported_windows(manager)
    registry.register(SLACollector(manager.snapshot, model_name=model_name, self_metrics=manager.self_metrics))
    endpoints = SLAEndpoints(manager.snapshot, config_error=config_error, registry=registry, model_name=model_name)
    server = make_server(host, port, endpoints.wsgi_app, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="aphrodite-sla-exporter", daemon=True)
    thread.start()
    return server, int(server.server_port), registry
