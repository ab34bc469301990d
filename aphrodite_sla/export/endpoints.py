"""JSON endpoints: ``GET /health/production`` and ``GET /metrics/summary`` (plus ``/openapi.json``),
as framework-neutral handlers served two ways: inside the engine's app by the ASGI middleware, and
by the standalone exporter (WSGI) beside ``/metrics``.

Both read the latest ``MonitorSnapshot`` and nothing else: no lock against the evaluator, no
kernel, nothing computed on the engine's event loop.

What health means for a load balancer: HTTP 503 only when this replica cannot serve — the engine
is stalled, or the replica is draining (admission closed) — because an SLA breach on an overloaded
fleet is not fixed by removing replicas (every one would breach, and the survivors would get more
load). An SLA breach is reported in the body with HTTP 200: ``status`` is ``critical`` with a
CRITICAL violation, ``degraded`` with any other, a rejected configuration or a monitor that cannot
evaluate, ``healthy`` otherwise (``draining`` while admission is closed). Operators who want a 503
on a CRITICAL SLA violation too set ``health_fail_on_critical_sla``.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from aphrodite_sla.clock import system_clock
from aphrodite_sla.integrations.admission import AdmissionState
from aphrodite_sla.integrations.engine_stats import GOODPUT_SERIES, GOODPUT_WINDOW_S
from aphrodite_sla.integrations.server_state import ServerState
from aphrodite_sla.sla.threshold import ViolationSeverity
from aphrodite_sla.snapshot import MonitorSnapshot

SnapshotSource = Callable[[], MonitorSnapshot]
# How long a response built from one snapshot is reused (the stall detector publishes every second,
# the evaluator every few seconds; the engine's own /metrics in a shared registry changes anytime).
RENDER_TTL_S = 0.5

HEALTH_PATH = "/health/production"
SUMMARY_PATH = "/metrics/summary"
OPENAPI_PATH = "/openapi.json"
JSON_PATHS = (HEALTH_PATH, SUMMARY_PATH)
HISTORY_PATH = "/metrics/history"  # every SLA's statistic per evaluation, the last day (calibrate --monitor)


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))), ("Cache-Control", "no-store")]


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status, "application/json", json.dumps(payload, allow_nan=False, default=str).encode())


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


class SLAEndpoints:
    """Builds the payloads from the latest snapshot; ``handle(method, path)`` answers a request.

    ``server``: the HTTP server's state (admission: draining); ``clock`` and ``stale_after_s``: an
    evaluator whose last evaluation is older than that is reported as not evaluating."""

    def __init__(
        self, snapshots: SnapshotSource, *, config_error: str | None = None,
        registry: CollectorRegistry | None = None, model_name: str = "", server: ServerState | None = None,
        clock: Callable[[], float] = system_clock, stale_after_s: float = 30.0, fail_on_critical_sla: bool = False,
    ) -> None:
        if not callable(snapshots):
            raise TypeError(f"SLAEndpoints: expected a snapshot source (e.g. manager.snapshot), got {type(snapshots).__name__}")
        self.snapshots = snapshots
        self.config_error = config_error
        self.registry = registry
        self.model_name = model_name
        self.server = server
        self.clock = clock
        self.stale_after_s = float(stale_after_s)
        self.fail_on_critical_sla = fail_on_critical_sla
        self.recovery: Any = None  # a RecoverySystem: adds the breakers, degradation and mode (seed's fields)
        self.incidents: Any = None  # an IncidentSystem: its API's routes join /openapi.json
        self.rca: Any = None  # an RCAService: its API's routes (/api/v1/rca) join /openapi.json
        self.history: Any = None  # an EvaluationHistory: serves HISTORY_PATH
        self.evaluation_interval_s = 5.0  # the spacing of the history's points
        # responses built once per published snapshot (and at most RENDER_TTL_S old): a flood of
        # scrapes or health checks costs a lookup each, not a rendering each
        self._rendered: dict[str, tuple[tuple[object, ...], float, Response]] = {}

    # -- payloads --------------------------------------------------------------------------
    def monitor_state(self, snap: MonitorSnapshot) -> dict[str, Any]:
        """Is the monitor itself working: evaluating, and how recently."""
        h = snap.health
        age = None if snap.evaluated_at is None else max(0.0, self.clock() - snap.evaluated_at)
        evaluating, reason = True, None
        if h.evaluation_failing:
            evaluating, reason = False, h.last_error or "the last evaluation failed"
        elif h.evaluator_running and age is not None and age > self.stale_after_s:
            evaluating, reason = False, f"the last evaluation finished {age:.0f} s ago"
        return {"evaluating": evaluating, "reason": reason, "last_evaluation_age_s": _finite(age),
                "evaluator_running": h.evaluator_running, "errors": h.errors_total, "last_error": h.last_error}

    def health(self) -> tuple[int, dict[str, Any]]:
        snap = self.snapshots()
        active = snap.active_violations
        stalled = snap.engine_stalled
        critical = [v for v in (*snap.violations, *snap.pages) if v.severity is ViolationSeverity.CRITICAL]
        admission = self.server.admission if self.server is not None else None
        draining = admission is not None and admission.state is AdmissionState.CLOSED
        monitor = self.monitor_state(snap)
        reasons = []
        if stalled and snap.stall_violation is not None:
            reasons.append(snap.stall_violation.message)
        if draining and admission is not None:
            reasons.append(f"draining: admission closed ({admission.policy.reason or 'no reason given'})")
        reasons += [v.message for v in (*snap.violations, *snap.pages)]
        if not monitor["evaluating"]:
            reasons.append(f"monitor not evaluating: {monitor['reason']}")
        if self.config_error:
            reasons.append(f"configuration rejected, defaults in use: {self.config_error}")
        serving = not stalled and not draining and not (self.fail_on_critical_sla and critical)
        if draining:
            status = "draining"
        elif stalled or critical:
            status = "critical"
        elif active or self.config_error or not monitor["evaluating"]:
            status = "degraded"
        else:
            status = "healthy"
        compliance = [s.compliance_percent for s in snap.statuses.values() if s.compliance_percent is not None]
        payload: dict[str, Any] = {
            "status": status,
            "serving": serving,
            "reasons": reasons,
            "sla_compliance": _finite(sum(compliance) / len(compliance)) if compliance else None,
            "active_violations": len(active),
            "violations": [
                {"sla": v.metric_name, "severity": v.severity.value, "observed": _finite(v.observed_value),
                 "bound": _finite(v.bound), "since": v.first_breach_time, "message": v.message}
                for v in active
            ],
            "engine_stalled": stalled,
            "draining": draining,
            "monitor": monitor,
        }
        if self.config_error:
            payload["config_error"] = self.config_error
        if self.recovery is not None:
            payload.update(self.recovery.health_fields())
        return (200 if serving else 503), payload

    def summary(self) -> dict[str, Any]:
        snap = self.snapshots()
        health = snap.health
        slas = {}
        for name, st in snap.statuses.items():
            th = snap.thresholds.get(name)
            entry: dict[str, Any] = {
                "statistic": st.statistic.value, "value": _finite(st.value), "bound": _finite(st.bound),
                "target": _finite(th.target_value) if th else None, "compliance_percent": _finite(st.compliance_percent),
                "violated": st.violated, "severity": st.severity.value if st.severity else None,
                "anomaly_score": _finite(st.anomaly_score), "zscore": _finite(st.zscore), "samples": st.sample_count,
            }
            budget = snap.budgets.get(name)
            if budget is not None:
                entry["burn_rate"] = {window: _finite(rate) for window, rate in budget.burn_rates.items()}
            if st.regression is not None:
                entry["regression"] = {"regressed": st.regression.regressed, "percent_change": _finite(st.regression.percent_change),
                                       "p_value": _finite(st.regression.p_value)}
            slas[name] = entry
        goodput = snap.window(GOODPUT_SERIES, GOODPUT_WINDOW_S)
        return {
            "model_name": self.model_name,
            "evaluated_at": snap.evaluated_at,
            "sla_violations_total": sum(snap.violation_counts.values()),
            "active_violations": len(snap.active_violations),
            "goodput_requests_per_second": _finite(goodput.rate) if goodput is not None else None,
            "slas": slas,
            "dropped_samples": sum(health.dropped_samples.values()),
            "evaluator": {"evaluations": health.evaluations, "last_duration_ms": _finite(health.last_duration_s * 1000),
                          "running": health.evaluator_running, "errors": dict(health.errors),
                          "dropped_events": sum(health.dropped_events.values()), "last_error": health.last_error},
            "monitor": self.monitor_state(snap),
            **(self.recovery.summary_fields() if self.recovery is not None else {}),
        }

    # -- dispatch --------------------------------------------------------------------------
    def handle(self, method: str, path: str) -> Response | None:
        """The response for ``path``, or None if it is not ours. Never raises: a failure is a 500
        with a JSON error, so a broken component cannot take the engine's app down."""
        if (path not in JSON_PATHS and path != OPENAPI_PATH and not (path == "/metrics" and self.registry is not None)
                and not (path == HISTORY_PATH and self.history is not None)):
            return None
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"{method} not allowed; use GET"})
        try:
            # what the response depends on: the snapshot, (health) the admission policy, recovery's view
            key = (self.snapshots(), self.server.admission.policy if self.server is not None else None,
                   self.recovery.view if self.recovery is not None else None)
            now = time.monotonic()
            cached = self._rendered.get(path)
            if cached is not None and all(a is b for a, b in zip(cached[0], key)) and now - cached[1] < RENDER_TTL_S:
                return cached[2]
            response = self._render(path)
            self._rendered[path] = (key, now, response)
            return response
        except Exception as err:  # pragma: no cover - defensive
            return _json(500, {"error": f"{type(err).__name__}: {err}"})

    def _render(self, path: str) -> Response:
        if path == HEALTH_PATH:
            status, payload = self.health()
            return _json(status, payload)
        if path == SUMMARY_PATH:
            return _json(200, self.summary())
        if path == HISTORY_PATH:
            return _json(200, {"evaluation_interval_s": self.evaluation_interval_s, **self.history.to_json()})
        if path == OPENAPI_PATH:
            schema = openapi_schema()
            if self.recovery is not None:
                schema["paths"].update(self.recovery.api.openapi_paths())
                schema["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
            if self.incidents is not None:  # the incidents API (aphrodite_sla.incidents.api)
                schema["paths"].update(self.incidents.api.openapi_paths())
                schema["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
            if self.rca is not None:  # the RCA API (aphrodite_sla.rca.api)
                schema["paths"].update(self.rca.api.openapi_paths())
                schema["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
            return _json(200, schema)
        return Response(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))  # type: ignore[arg-type]

    # -- adapters --------------------------------------------------------------------------
    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """For the standalone exporter (a WSGI server on 127.0.0.1)."""
        response = self.handle(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"))
        if response is None:
            response = _json(404, {"error": "not found", "paths": ["/metrics", *JSON_PATHS, OPENAPI_PATH]})
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", response.headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    async def asgi_send(self, response: Response, send: Callable[[dict[str, Any]], Any]) -> None:
        """Send ``response`` over ASGI (used by the middleware inside the engine's app)."""
        headers = [(k.lower().encode(), v.encode()) for k, v in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


def openapi_schema() -> dict[str, Any]:
    """OpenAPI 3.1 description of the JSON endpoints."""
    violation = {
        "type": "object",
        "properties": {"sla": {"type": "string"}, "severity": {"enum": [s.value for s in ViolationSeverity]},
                       "observed": {"type": ["number", "null"]}, "bound": {"type": ["number", "null"]},
                       "since": {"type": "number"}, "message": {"type": "string"}},
    }
    monitor = {
        "type": "object",
        "properties": {"evaluating": {"type": "boolean"}, "reason": {"type": ["string", "null"]},
                       "last_evaluation_age_s": {"type": ["number", "null"]}, "evaluator_running": {"type": "boolean"},
                       "errors": {"type": "integer"}, "last_error": {"type": ["string", "null"]}},
    }
    health = {
        "type": "object", "required": ["status", "serving", "reasons", "sla_compliance", "active_violations", "monitor"],
        "properties": {"status": {"enum": ["healthy", "degraded", "critical", "draining"]}, "serving": {"type": "boolean"},
                       "reasons": {"type": "array", "items": {"type": "string"}},
                       "sla_compliance": {"type": ["number", "null"]},
                       "active_violations": {"type": "integer"}, "violations": {"type": "array", "items": violation},
                       "engine_stalled": {"type": "boolean"}, "draining": {"type": "boolean"}, "monitor": monitor,
                       "config_error": {"type": "string"}},
    }
    summary = {
        "type": "object",
        "properties": {"model_name": {"type": "string"}, "sla_violations_total": {"type": "integer"},
                       "active_violations": {"type": "integer"}, "goodput_requests_per_second": {"type": ["number", "null"]},
                       "slas": {"type": "object", "additionalProperties": {"type": "object"}},
                       "dropped_samples": {"type": "integer"}, "evaluator": {"type": "object"}},
    }

    def op(summary_text: str, schema: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        responses = {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}
        responses.update(extra or {})
        return {"get": {"summary": summary_text, "responses": responses}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "aphrodite-sla", "version": "0.1.0"},
        "paths": {
            HEALTH_PATH: op("Can this replica serve, and how are its SLAs (200 unless it cannot serve)", health,
                            {"503": {"description": "not serving: the engine is stalled or the replica is draining "
                                                    "(or, with health_fail_on_critical_sla, a CRITICAL SLA violation)",
                                     "content": {"application/json": {"schema": health}}}}),
            SUMMARY_PATH: op("Every SLA's current value, compliance, burn rates and regression", summary),
        },
    }
