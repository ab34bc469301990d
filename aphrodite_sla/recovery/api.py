"""The recovery REST API under ``/api/auto-recovery`` (seed 004's routes, mapped onto an inference
engine), served inside the engine's app by the ASGI middleware and by the standalone exporter.

Why every handler is short and synchronous: the middleware answers on the engine's event loop, so
a handler only reads copies or flips a thread-safe switch; anything slow (running an action,
rolling back a deployment) is handed to the recovery loop and answered ``202 Accepted`` with what
to poll. See ``api_routing`` for authentication and validation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aphrodite_sla.recovery.api_routing import ApiError, ApiRequest, Field, Route, Router
from aphrodite_sla.recovery.model import RecoveryAction

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.recovery.service import RecoverySystem

API_PREFIX = "/api/auto-recovery"

_BY = Field(str, description="who does this (recorded in the history)")
_REASON = Field(str, description="why (recorded in the history)")
_LIMIT = {"limit": Field(int, minimum=1, maximum=1000, description="newest entries to return (default 50)")}


def _limit(params: dict[str, str]) -> int:
    return int(params.get("limit", 50))


def _by(body: dict[str, Any]) -> str:
    return str(body.get("by") or "api")


class RecoveryApi:
    """The routes of one ``RecoverySystem``; ``handle(request)`` answers one request."""

    def __init__(self, system: RecoverySystem, token: str | None) -> None:
        self.system = system
        self.router = Router(API_PREFIX, self._routes(), token)

    def owns(self, path: str) -> bool:
        return self.router.owns(path)

    def handle(self, request: ApiRequest) -> Any:
        return self.router.handle(request)

    def openapi_paths(self) -> dict[str, Any]:
        return self.router.openapi_paths()

    # -- routes --------------------------------------------------------------------------------
    def _routes(self) -> list[Route]:
        s = self.system
        actions = tuple(a.value for a in RecoveryAction)

        # overview and the recovery engine
        def overview(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.overview()

        def status(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.recovery_status()

        def stats(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.engine.stats().to_dict()

        def active(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"active": [e.to_dict() for e in s.engine.active()]}

        def history(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"history": [e.to_dict() for e in s.engine.history(_limit(p))]}

        def procedures(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"procedures": [p.to_dict() for p in s.engine.procedures()]}

        def root_cause(p: dict[str, str], b: dict[str, Any]) -> Any:
            hook = s.root_cause
            return {"enabled": hook.settings.enabled, "min_confidence": hook.settings.min_confidence,
                    "decisions": [d.to_dict() for d in hook.decisions(_limit(p))]}

        def set_enabled(on: bool) -> Any:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                (s.engine.enable if on else s.engine.disable)()
                s.audit("recovery.enable" if on else "recovery.disable", _by(b), b.get("reason", ""))
                return s.recovery_status()
            return handler

        def set_advisory(p: dict[str, str], b: dict[str, Any]) -> Any:
            s.engine.advisory = b["advisory"]
            s.audit("recovery.advisory", _by(b), str(b["advisory"]))
            return s.recovery_status()

        def test_action(p: dict[str, str], b: dict[str, Any]) -> Any:
            try:
                action = RecoveryAction(p["action"].replace("-", "_"))
            except ValueError:
                raise ApiError(404, f"unknown action {p['action']!r}; known: {', '.join(actions)}") from None
            ticket = s.submit_test_action(action, _by(b))
            return 202, {"accepted": True, "action": action.value, "ticket": ticket,
                         "poll": f"{API_PREFIX}/tests/{ticket}"}

        def test_result(p: dict[str, str], b: dict[str, Any]) -> Any:
            result = s.test_result(p["ticket"])
            if result is None:
                raise ApiError(404, f"unknown test ticket {p['ticket']!r}")
            return result

        # approvals
        def approvals(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"pending": [a.to_dict() for a in s.engine.approvals.pending()]}

        def decide(approve: bool) -> Any:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                book = s.engine.approvals
                try:
                    if approve:
                        book.approve(p["id"], _by(b))
                    else:
                        book.deny(p["id"], _by(b), b.get("reason", ""))
                except KeyError:
                    raise ApiError(404, f"unknown approval {p['id']!r}") from None
                except ValueError as err:
                    raise ApiError(409, str(err)) from None
                return book.get(p["id"]).to_dict()
            return handler

        # circuit breakers
        def breaker_status(p: dict[str, str], b: dict[str, Any]) -> Any:
            statuses = s.breakers.statuses()
            return {"circuits": {n: st.state.value for n, st in statuses.items()},
                    "open": sorted(n for n, st in statuses.items() if st.state.value in ("open", "forced_open", "half_open"))}

        def circuits(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"circuits": [st.to_dict() for st in s.breakers.statuses().values()]}

        def circuit(p: dict[str, str], b: dict[str, Any]) -> Any:
            return self._breaker(p["id"]).status().to_dict()

        def circuit_reset(p: dict[str, str], b: dict[str, Any]) -> Any:
            self._breaker(p["id"])
            s.breakers.reset(p["id"])
            s.audit("breaker.reset", _by(b), p["id"])
            return self._breaker(p["id"]).status().to_dict()

        def circuit_reset_all(p: dict[str, str], b: dict[str, Any]) -> Any:
            s.breakers.reset_all()
            s.audit("breaker.reset_all", _by(b), b.get("reason", ""))
            return circuits(p, b)

        def circuit_force_open(p: dict[str, str], b: dict[str, Any]) -> Any:
            self._breaker(p["id"])
            s.breakers.force_open(p["id"], b.get("reason") or f"forced open by {_by(b)}")
            s.audit("breaker.force_open", _by(b), p["id"])
            return self._breaker(p["id"]).status().to_dict()

        # graceful degradation
        def degradation_status(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.degradation.status()

        def degradation_active(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"active": s.degradation.active()}

        def degradation_features(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.degradation_features()

        def degradation_activate(p: dict[str, str], b: dict[str, Any]) -> Any:
            level = s.degradation_level(p["id"])
            if level is None:
                raise ApiError(404, f"unknown degradation level {p['id']!r}; known: {', '.join(s.degradation_levels())}")
            if not s.degradation.enabled:
                raise ApiError(409, "graceful degradation is disabled; enable it first")
            s.degradation.activate(level, b.get("reason") or "activated by hand", by=_by(b))
            return s.degradation.status()

        def degradation_revert(p: dict[str, str], b: dict[str, Any]) -> Any:
            if s.degradation_level(p["id"]) is None:
                raise ApiError(404, f"unknown degradation level {p['id']!r}; known: {', '.join(s.degradation_levels())}")
            s.degradation.revert(b.get("reason") or "reverted by hand", by=_by(b))
            return s.degradation.status()

        def degradation_enabled(on: bool) -> Any:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                if on:
                    s.degradation.enable()
                else:
                    s.degradation.disable()
                s.audit("degradation.enable" if on else "degradation.disable", _by(b), b.get("reason", ""))
                return s.degradation.status()
            return handler

        # monitoring mode (production monitor)
        def mode(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.mode_status()

        def set_mode(p: dict[str, str], b: dict[str, Any]) -> Any:
            s.set_mode(b["mode"], b.get("reason") or "set by hand", _by(b), b.get("duration_s"))
            return s.mode_status()

        # self-healing
        def healing_status(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.healing.status()

        def healing_health(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.healing.health()

        def healing_history(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"history": s.healing_history(_limit(p))}

        def healing_active(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"active": s.healing.active()}

        def healing_enabled(on: bool) -> Any:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                (s.healing.enable if on else s.healing.disable)()
                s.audit("self_healing.enable" if on else "self_healing.disable", _by(b), b.get("reason", ""))
                return s.healing.status()
            return handler

        def healing_force(p: dict[str, str], b: dict[str, Any]) -> Any:
            if b["task"] not in s.healing_task_names():
                raise ApiError(404, f"unknown task {b['task']!r}; known: {', '.join(s.healing_task_names())}")
            ticket = s.submit_healing_task(b["task"], _by(b))
            return 202, {"accepted": True, "task": b["task"], "ticket": ticket, "poll": f"{API_PREFIX}/tests/{ticket}"}

        # deployments
        def deployment_status(p: dict[str, str], b: dict[str, Any]) -> Any:
            return s.deployment_status()

        def deployment_active(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"active": [d.to_dict() for d in s.deployments.active()]}

        def deployment_history(p: dict[str, str], b: dict[str, Any]) -> Any:
            return {"history": [d.to_dict() for d in s.deployments.history()][-_limit(p):]}

        def deployment_get(p: dict[str, str], b: dict[str, Any]) -> Any:
            found = s.deployments.get(p["id"])
            if found is None:
                raise ApiError(404, f"unknown deployment {p['id']!r}")
            return found.to_dict()

        def deployment_track(p: dict[str, str], b: dict[str, Any]) -> Any:
            deployment = s.deployments.track(b["model"], b["version"], b.get("config_hash") or f"{b['model']}@{b['version']}")
            s.audit("deployment.track", _by(b), deployment.deployment_id)
            return 201, deployment.to_dict()

        def deployment_rollback(p: dict[str, str], b: dict[str, Any]) -> Any:
            if s.deployments.get(p["id"]) is None:
                raise ApiError(404, f"unknown deployment {p['id']!r}")
            ticket = s.submit_rollback(p["id"], _by(b))
            return 202, {"accepted": True, "deployment": p["id"], "ticket": ticket, "poll": f"{API_PREFIX}/tests/{ticket}"}

        def auto_rollback(on: bool) -> Any:
            def handler(p: dict[str, str], b: dict[str, Any]) -> Any:
                (s.deployments.enable_auto_rollback if on else s.deployments.disable_auto_rollback)()
                s.audit("deployment.auto_rollback", _by(b), str(on))
                return s.deployment_status()
            return handler

        by = {"by": _BY, "reason": _REASON}
        return [
            Route("GET", "/overview", overview, "Recovery, breakers, degradation, mode, self-healing and deployments at a glance"),
            Route("GET", "/status", status, "Is automated recovery enabled, advisory, and what runs now"),
            Route("GET", "/stats", stats, "Executions by procedure and status, success rate, MTTR, initiation latency"),
            Route("GET", "/active", active, "Recovery executions running or awaiting approval"),
            Route("GET", "/history", history, "Finished recovery executions, newest last", query=_LIMIT),
            Route("GET", "/procedures", procedures, "The recovery procedures and their action ladders"),
            Route("GET", "/root-cause", root_cause, "What recovery did with each root cause RCA found (switched procedure or why not)",
                  query=_LIMIT),
            Route("POST", "/enable", set_enabled(True), "Enable automated recovery", mutating=True, body=by),
            Route("POST", "/disable", set_enabled(False), "Disable automated recovery (detection goes on)", mutating=True, body=by),
            Route("POST", "/advisory", set_advisory, "Switch advisory (dry-run) mode on or off", mutating=True,
                  body={"advisory": Field(bool, required=True, description="true: dry run, nothing is changed"), "by": _BY}),
            Route("POST", "/test/{action}", test_action, "Run one recovery action now (approval rules apply); answered 202",
                  mutating=True, body={"by": _BY}),
            Route("GET", "/tests/{ticket}", test_result, "The result of an action, healing task or rollback started through the API"),
            Route("GET", "/approvals", approvals, "Risky actions waiting for a person"),
            Route("POST", "/approvals/{id}/approve", decide(True), "Approve a pending action", mutating=True, body=by),
            Route("POST", "/approvals/{id}/deny", decide(False), "Deny a pending action", mutating=True, body=by),
            Route("GET", "/circuit-breaker/status", breaker_status, "State of every circuit breaker"),
            Route("GET", "/circuit-breaker/circuits", circuits, "Every circuit breaker with its counts and configuration"),
            Route("POST", "/circuit-breaker/circuits/reset-all", circuit_reset_all, "Close every circuit breaker", mutating=True, body=by),
            Route("GET", "/circuit-breaker/circuits/{id}", circuit, "One circuit breaker"),
            Route("POST", "/circuit-breaker/circuits/{id}/reset", circuit_reset, "Close one circuit breaker", mutating=True, body=by),
            Route("POST", "/circuit-breaker/circuits/{id}/force-open", circuit_force_open, "Hold one circuit breaker open",
                  mutating=True, body=by),
            Route("GET", "/degradation/status", degradation_status, "Graceful degradation: level, measures, enabled"),
            Route("GET", "/degradation/active", degradation_active, "The degradation measures in force"),
            Route("GET", "/degradation/features", degradation_features, "Every level and the measures it applies"),
            Route("POST", "/degradation/rules/{id}/activate", degradation_activate, "Activate a degradation level by hand",
                  mutating=True, body=by),
            Route("POST", "/degradation/rules/{id}/revert", degradation_revert, "Revert degradation", mutating=True, body=by),
            Route("POST", "/degradation/enable", degradation_enabled(True), "Enable graceful degradation", mutating=True, body=by),
            Route("POST", "/degradation/disable", degradation_enabled(False), "Disable (and revert) graceful degradation",
                  mutating=True, body=by),
            Route("GET", "/monitoring/mode", mode, "The production monitor's mode (normal, high_alert, emergency, maintenance)"),
            Route("POST", "/monitoring/mode", set_mode, "Set the monitoring mode by hand (e.g. maintenance for a planned window)",
                  mutating=True, body={"mode": Field(str, required=True, choices=s.mode_names()), "by": _BY, "reason": _REASON,
                                       "duration_s": Field(float, minimum=1, maximum=7 * 86400, description="maintenance: end after this long")}),
            Route("GET", "/self-healing/status", healing_status, "Self-healing: tasks, schedules, enabled"),
            Route("GET", "/self-healing/health", healing_health, "Memory, CPU and disk against their thresholds"),
            Route("GET", "/self-healing/history", healing_history, "Maintenance and healing runs, newest last", query=_LIMIT),
            Route("GET", "/self-healing/active", healing_active, "Failing conditions being healed"),
            Route("POST", "/self-healing/enable", healing_enabled(True), "Enable self-healing", mutating=True, body=by),
            Route("POST", "/self-healing/disable", healing_enabled(False), "Disable self-healing", mutating=True, body=by),
            Route("POST", "/self-healing/force", healing_force, "Run a maintenance task now; answered 202", mutating=True,
                  body={"task": Field(str, required=True, description="a task name from self-healing/status"), "by": _BY}),
            Route("GET", "/deployment/status", deployment_status, "Deployment watch: current deployment, auto-rollback"),
            Route("GET", "/deployment/active", deployment_active, "Deployments in their stabilisation period"),
            Route("GET", "/deployment/history", deployment_history, "Tracked deployments, newest last", query=_LIMIT),
            Route("POST", "/deployment/track", deployment_track, "Track a new deployment against the previous one's baseline",
                  mutating=True, body={"model": Field(str, required=True), "version": Field(str, required=True),
                                       "config_hash": Field(str, description="defaults to model@version"), "by": _BY}),
            Route("POST", "/deployment/auto-rollback/enable", auto_rollback(True), "Roll back a regressed deployment automatically",
                  mutating=True, body=by),
            Route("POST", "/deployment/auto-rollback/disable", auto_rollback(False), "Only report regressed deployments",
                  mutating=True, body=by),
            Route("GET", "/deployment/{id}", deployment_get, "One tracked deployment"),
            Route("POST", "/deployment/{id}/rollback", deployment_rollback, "Roll a deployment back through the rollback hook; 202",
                  mutating=True, body=by),
        ]

    def _breaker(self, name: str) -> Any:
        try:
            return self.system.breakers.get(name)
        except KeyError:
            raise ApiError(404, f"unknown circuit breaker {name!r}; known: {', '.join(self.system.breakers.names())}") from None
