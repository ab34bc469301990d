"""The standalone exporter: prometheus_client's HTTP server on 127.0.0.1 with our collector in a
registry of its own (so nothing else of the process leaks in)."""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from aphrodite_sla.export.collector import SLACollector
from aphrodite_sla.sla.manager import SLAManager


def start_exporter(
    manager: SLAManager, port: int, host: str = "127.0.0.1", *, model_name: str = "",
    registry: CollectorRegistry | None = None, **kwargs: Any,
) -> tuple[Any, int, CollectorRegistry]:
    """Serve ``/metrics`` on ``host:port`` (port 0 picks a free one). Returns (server, port, registry)."""
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    registry.register(SLACollector(manager, model_name=model_name, **kwargs))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_port), registry
