"""What the engine's HTTP server shares with the monitor: requests in flight, the engine handle
captured from the app, and the admission controller the middleware enforces.

Why an object of its own (not module globals): the runtime's ``MonitorContext`` owns one and
passes it to the middleware, the stall detector and (later) recovery, so two monitors in one
process, or a test, never share state by accident.
"""
from __future__ import annotations

from typing import Any

from aphrodite_sla.integrations.admission import AdmissionController


class ServerState:
    """Mutable on the event loop (counts) and from recovery (admission); read anywhere."""

    def __init__(self, admission: AdmissionController | None = None) -> None:
        self.admission = admission if admission is not None else AdmissionController()
        self.engine_client: Any = None  # the engine's AsyncLLM (``app.state.engine_client``) or a registered one
        self.engine_loop: Any = None  # the asyncio loop the engine client lives on (engine calls are scheduled there)
        self.inference_breaker: Any = None  # the model_inference CircuitBreaker the middleware consults, if any
        self.in_flight = 0
        self.middleware_installed = False

    def in_flight_requests(self) -> int | None:
        """Inference requests inside the HTTP server now; None while no middleware serves this
        state (unknown, not zero) — the stall detector then relies on the engine's own view."""
        return self.in_flight if self.middleware_installed else None
