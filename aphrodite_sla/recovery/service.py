"""``RecoverySystem``: recovery's parts built from the configuration and wired to one monitor.

Why one composition root: the breakers, degradation, the recovery engine with its actions, the
production monitor, self-healing and the deployment watch each stand alone (and are tested so);
here they get the monitor's event stream, the server state the middleware shares (admission,
engine handle, breaker) and the configuration, and the REST API, the collector and the health and
summary endpoints get one object to read. Nothing here runs in the evaluator or on the engine's
event loop: reactions come from event-stream subscriptions, slow API work goes to a small pool.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aphrodite_sla.events import (
    ApprovalDecided,
    ApprovalRequested,
    BreakerStateChanged,
    DegradationChanged,
    MonitorEvent,
    MonitoringModeChanged,
    RecoveryFinished,
    RecoveryStarted,
    ResponseEscalated,
    SnapshotPublished,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
)
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.api import RecoveryApi
from aphrodite_sla.recovery.breaker_model import BREAKER_STATE_CODE
from aphrodite_sla.recovery.breaker_registry import MODEL_INFERENCE, BreakerRegistry
from aphrodite_sla.recovery.degradation import DegradationController, DegradationLevel
from aphrodite_sla.recovery.deployment import Deployment, DeploymentMonitor
from aphrodite_sla.recovery.hooks import HookContext, hooks_from_config
from aphrodite_sla.recovery.metrics_view import BreakerView, RecoveryMetricsView, RecoveryView
from aphrodite_sla.recovery.model import ActionHandler, RecoveryAction, RecoveryExecution, parse_action
from aphrodite_sla.recovery.monitoring_mode import MonitoringMode
from aphrodite_sla.recovery.procedures import demand_bound
from aphrodite_sla.recovery.production_monitor import ProductionMonitor
from aphrodite_sla.recovery.root_cause import RootCauseHook, RootCauseSettings
from aphrodite_sla.recovery.self_healing import HealthThresholds, SelfHealing
from aphrodite_sla.recovery.target import RecoveryTarget, ScalingState
from aphrodite_sla.sla.threshold import ViolationSeverity

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.config import SLAConfig
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.recovery.engine import RecoveryEngine

logger = logging.getLogger(__name__)

MAX_TICKETS = 256  # results of API-started work kept for polling
AUDIT_SIZE = 1000
HEAL_TIMEOUT_S = 120.0
# what changes the view: every evaluation (alerts, mode), and what recovery, breakers, degradation do
VIEW_EVENTS = (SnapshotPublished, RecoveryStarted, RecoveryFinished, ApprovalRequested, ApprovalDecided, BreakerStateChanged,
               DegradationChanged, MonitoringModeChanged, ResponseEscalated)
VIEW_EXECUTIONS = 200  # finished executions a reader sees (the console's incident page looks them up)
VERIFY_MIN_SAMPLES = 10  # a settle window with fewer samples shows nothing (a metric "fine" because traffic stopped)


@dataclass(frozen=True)
class AuditEntry:
    """One change made through the API: what, by whom, when."""

    at: float
    what: str
    by: str
    detail: str


class RecoverySystem:
    """Recovery for one ``MonitorContext`` (see the module docstring). ``start()``/``stop()`` own
    the threads (the recovery engine's loop, the production monitor's tick, self-healing,
    deployment checks); building it starts nothing."""

    def __init__(self, context: MonitorContext, *, clock: Callable[[], float] | None = None, self_healing: bool | None = None,
                 deployment_watch: bool = True) -> None:
        from aphrodite_sla.recovery.actions import default_handlers
        from aphrodite_sla.recovery.engine import RecoveryEngine
        from aphrodite_sla.recovery.verification import WindowVerifier

        cfg = context.config
        self.context = context
        self.config = cfg
        self.clock = clock or context.manager.clock
        events = context.events
        server = context.server
        self.mode = cfg.recovery
        self.breakers = BreakerRegistry.with_defaults(clock=self.clock)
        self.breakers.publish_to(events, self.clock)
        server.inference_breaker = self.breakers.get(MODEL_INFERENCE)
        self.degradation = DegradationController(server.admission, events=events, clock=self.clock)
        self.scaling = ScalingState(current_replicas=cfg.fleet_replicas, min_replicas=1,
                                    max_replicas=max(cfg.fleet_replicas, cfg.max_replicas))
        self.hooks = hooks_from_config(cfg.hooks)
        self.target = RecoveryTarget.from_server(
            server, breakers=self.breakers, degradation=self.degradation, scaling=self.scaling, hooks=self.hooks,
            fleet_replicas=cfg.fleet_replicas, health_reset=self._reset_health, clock=self.clock,
        )
        handlers = default_handlers()
        remediation = remediation_settings(cfg, handlers)
        self.engine = RecoveryEngine(
            handlers, self.target, verifier=WindowVerifier(context.manager, min_samples=VERIFY_MIN_SAMPLES), events=events,
            clock=self.clock,
            max_concurrent=cfg.recovery_max_concurrent, global_cooldown_s=cfg.recovery_cooldown_s,
            advisory=cfg.recovery == "advisory" or not remediation.automatic,
            approval_timeout_s=remediation.approval_timeout_s or cfg.recovery_approval_timeout_s,
            require_approval=remediation.require_approval, enabled=cfg.recovery != "off",
        )
        self.monitor = ProductionMonitor(context.manager, clock=self.clock, events=events, recovery_stats=self._recovery_stats)
        healing_on = cfg.self_healing if self_healing is None else self_healing
        self.healing = SelfHealing(
            clock=self.clock, events=events, heal=self._heal,
            thresholds=HealthThresholds(cfg.memory_threshold_percent, cfg.cpu_threshold_percent, cfg.disk_threshold_percent),
            calendar=self.monitor.calendar,
        )
        if not healing_on:
            self.healing.disable()
        self.deployments = DeploymentMonitor(context.manager, clock=self.clock, events=events, rollback_hook=self._rollback,
                                             auto_rollback=cfg.auto_rollback)
        self._deployment_watch = deployment_watch
        self._escalations = 0
        self._audit: deque[AuditEntry] = deque(maxlen=AUDIT_SIZE)
        self._tickets: OrderedDict[str, Future[Any]] = OrderedDict()
        self._ticket_ids = itertools.count(1)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._started = False
        self._tracked_configs: set[str] = set()
        context.manager.subscribe(self._on_event, ViolationRaised, ViolationEscalated, ViolationResolved, name="recovery-degradation")
        self.engine.in_maintenance = lambda: self.monitor.mode is MonitoringMode.MAINTENANCE
        self.engine.attach(events)
        # a confident RCA cause may choose the procedure (RootCauseFound on the stream; RCA never calls us)
        self.root_cause = RootCauseHook(self.engine, RootCauseSettings(cfg.recovery_use_root_cause, cfg.recovery_root_cause_min_confidence))
        self.root_cause.attach(events)
        self._attached = True
        self._executions: tuple[int, tuple[RecoveryExecution, ...]] = (-1, ())  # (engine version, copies)
        self._view = self._build_view()
        context.manager.subscribe(self._publish_view, *VIEW_EVENTS, name="recovery-view")
        self.api = RecoveryApi(self, cfg.api_token or None)
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pool = None
        self._started = False

    def register_engine(self, client: Any, loop: Any = None) -> None:
        """Give recovery the engine to act on when no middleware captured it (an ``AsyncLLM``
        built in code): ``loop`` is the asyncio loop it runs on (default: the running one, when
        called from it); engine calls are scheduled there."""
        import asyncio

        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self.context.server.engine_client = client
        self.context.server.engine_loop = loop

    def track_engine_deployment(self, engine_config: Any) -> Deployment | None:
        """Track the engine's deployment at start-up (model, revision, a hash of the fields that
        define it); once per configuration however many StatLoggers the engine builds. Never
        raises: a config we cannot read is logged and not tracked."""
        from aphrodite_sla.recovery.deployment import config_hash_of, deployment_fields

        try:
            fields = deployment_fields(engine_config)
            digest = config_hash_of(engine_config)
        except Exception as exc:
            logger.info("aphrodite-sla: the engine's deployment is not tracked (%s)", exc)
            return None
        with self._lock:
            if digest in self._tracked_configs:
                return None
            self._tracked_configs.add(digest)
        model = str(fields.get("model", "unknown"))
        version = str(fields.get("revision") or digest[:12])
        try:
            return self.deployments.track(model, version, digest)
        except Exception:
            logger.exception("aphrodite-sla: tracking the deployment of %s failed", model)
            return None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the recovery loop, the production monitor's tick, self-healing and the deployment
        checks (idempotent)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            attach, self._attached = not self._attached, True
        if attach:  # stopped before: stop() detached the engine from the stream
            self.engine.attach(self.context.events)
            self.root_cause.attach(self.context.events)
        self.engine.start()
        self.monitor.start_monitoring()
        self.healing.start()
        if self._deployment_watch:
            self.deployments.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            started, self._started = self._started, False
            pool, self._pool = self._pool, None
            self._attached = False
        self.root_cause.detach()
        self.engine.stop(timeout)  # its loop may run without start(): a violation or the API started it
        if not started:
            return
        self.deployments.stop(timeout)
        self.healing.stop(timeout)
        self.monitor.stop_monitoring(timeout)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- reactions on the event stream -----------------------------------------------------------
    def _on_event(self, event: MonitorEvent) -> None:
        """Graceful degradation follows the violations: a violation at or above the configured
        severity activates the matching level (never lowering one in force); when none is active
        any more, it is reverted. Only violations that less load can fix count: a minimum
        (tokens/s, goodput) breached falls further when requests are shed, and degrading for it
        would hold itself in place. Advisory and off modes change nothing."""
        if self.mode != "act" or self.config.degradation == "off":
            return
        if isinstance(event, (ViolationRaised, ViolationEscalated)):
            severity = event.violation.worst_severity
            if not demand_bound(event.violation) and severity.rank >= ViolationSeverity(self.config.degradation).rank:
                self.degradation.activate_for_severity(severity, f"{event.violation.metric_name}: {event.violation.message}")
        elif (isinstance(event, ViolationResolved) and self.degradation.level is not DegradationLevel.NONE
              and not any(not demand_bound(v) for v in self.context.manager.snapshot().active_violations)):
            self.degradation.revert(f"every violation it answered resolved ({event.sla} last)", by="auto")

    def _reset_health(self) -> None:
        """HEALTH_CHECK_RESET's part on our side: close the breakers the engine's failures opened
        (the engine answered its health check, so failing fast is no longer warranted)."""
        for name, status in self.breakers.statuses().items():
            if status.state.value == "open":
                self.breakers.reset(name)

    def _heal(self, condition: str) -> str:
        """Self-healing's response to a resource condition: the MEMORY_CLEANUP action, through
        the recovery engine (so advisory mode and the history apply)."""
        future = self.engine.submit(self.engine.test_action(RecoveryAction.MEMORY_CLEANUP, by=f"self-healing:{condition}"))
        result = future.result(HEAL_TIMEOUT_S)
        return f"{result.action.value}: {result.outcome.value} {result.detail}".strip()

    async def _run_rollback_hook(self, deployment: Deployment, reason: str) -> bool:
        hook = self.hooks.get(RecoveryAction.DEPLOYMENT_ROLLBACK)
        if hook is None:
            raise RuntimeError("no deployment_rollback hook is configured")
        result = await hook.run(HookContext(action=RecoveryAction.DEPLOYMENT_ROLLBACK.value, sla=deployment.deployment_id, severity=reason))
        if not result.ok:
            raise RuntimeError(result.describe())
        return True

    def _rollback(self, deployment: Deployment, reason: str) -> bool:
        """The deployment watch's rollback: the configured hook, run on the recovery loop."""
        if self.mode != "act":
            raise RuntimeError(f"recovery is {self.mode}: the rollback of {deployment.deployment_id} was not run")
        return bool(self.engine.submit(self._run_rollback_hook(deployment, reason)).result(HEAL_TIMEOUT_S))

    def _recovery_stats(self) -> dict[str, Any]:
        stats = self.engine.stats()
        return {"success_rate_percent": stats.success_rate_percent, "executions": stats.total, "mode": self.mode}

    # -- what readers see ------------------------------------------------------------------------
    @property
    def view(self) -> RecoveryView:
        """The latest published view (readers take this reference; nothing is computed for them)."""
        return self._view

    def metrics_view(self) -> RecoveryMetricsView:
        return self._view.metrics

    def health_fields(self) -> dict[str, Any]:
        """The seed's additions to ``/health/production``."""
        return dict(self._view.health)

    def summary_fields(self) -> dict[str, Any]:
        """The seed's additions to ``/metrics/summary``."""
        return dict(self._view.summary)

    def _publish_view(self, event: object = None) -> None:
        """Rebuild the view (on its subscriber's thread), counting escalations on the way."""
        if isinstance(event, ResponseEscalated):
            self._escalations += 1
        self._view = self._build_view()

    def _build_view(self) -> RecoveryView:
        stats = self.engine.stats()
        pending = tuple(self.engine.approvals.pending())
        statuses = self.breakers.statuses()
        level, mode = self.degradation.level, self.monitor.mode.value
        metrics = RecoveryMetricsView(
            executions=dict(stats.by_procedure), duration_buckets=tuple(stats.duration_buckets),
            duration_sum_s=stats.duration_sum_s, active=stats.active, success_rate_percent=stats.success_rate_percent,
            approvals_pending=len(pending), escalations=self._escalations,
            desired_replicas=self.scaling.desired_replicas,
            breakers={n: BreakerView(st.state.value, BREAKER_STATE_CODE[st.state], st.rejected_total) for n, st in statuses.items()},
            degradation_level=level.rank, degradation_name=level.value, monitoring_mode=mode, mode=self.mode,
            root_cause_decisions=self.root_cause.decision_counts(),
        )
        health = {"circuit_breakers": {n: st.state.value for n, st in statuses.items()}, "degradation_level": level.value,
                  "monitoring_mode": mode}
        summary = {"monitoring_mode": mode, "total_alerts_24h": self.monitor.get_production_summary().get("total_alerts_24h", 0),
                   "recovery_success_rate": stats.success_rate_percent, "recovery_mode": self.mode,
                   "recovery_executions": stats.total, "degradation_level": level.value}
        return RecoveryView(metrics, health, summary, pending, self._recent_executions())

    def _recent_executions(self) -> tuple[RecoveryExecution, ...]:
        """Running and recent executions, copied again only when the engine's version moved (the
        view is rebuilt on every evaluation; the executions change far less often)."""
        version = self.engine.version
        if version != self._executions[0]:
            runs = (*self.engine.active(), *self.engine.history(VIEW_EXECUTIONS))
            self._executions = (version, runs)
        return self._executions[1]

    def overview(self) -> dict[str, Any]:
        return {"recovery": self.recovery_status(), "stats": self.engine.stats().to_dict(),
                "circuit_breakers": {n: st.state.value for n, st in self.breakers.statuses().items()},
                "degradation": self.degradation.status(),
                "monitoring": self.mode_status(), "self_healing": self.healing.status(), "deployment": self.deployment_status(),
                "approvals_pending": len(self.engine.approvals.pending()), "audit": [vars(a) for a in list(self._audit)[-20:]],
                "root_cause": self.root_cause.status()}

    def recovery_status(self) -> dict[str, Any]:
        return {"mode": self.mode, "enabled": self.engine.enabled, "advisory": self.engine.advisory,
                "active": len(self.engine.active()), "procedures": [p.procedure_id for p in self.engine.procedures()],
                "mutations_enabled": self.api.router.mutations_enabled}

    def mode_status(self) -> dict[str, Any]:
        history = self.monitor.mode_history()
        return {"mode": self.monitor.mode.value, "history": history[-20:]}

    def mode_names(self) -> tuple[str, ...]:
        return tuple(m.value for m in MonitoringMode)

    def set_mode(self, mode: str, reason: str, by: str, duration_s: float | None) -> None:
        until = None if duration_s is None else self.clock() + duration_s
        self.monitor.set_mode(mode, reason, by, until=until)
        self.audit("monitoring.mode", by, f"{mode}: {reason}")

    def degradation_levels(self) -> tuple[str, ...]:
        return tuple(level.value for level in DegradationLevel if level is not DegradationLevel.NONE)

    def degradation_level(self, name: str) -> DegradationLevel | None:
        try:
            level = DegradationLevel(name)
        except ValueError:
            return None
        return None if level is DegradationLevel.NONE else level

    def degradation_features(self) -> dict[str, Any]:
        status = self.degradation.status()
        return {"levels": status.get("levels", {}), "level": self.degradation.level.value}

    def healing_task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.healing.status().scheduler.tasks)

    def healing_history(self, limit: int) -> list[Any]:
        return list(self.healing.history(limit))

    def deployment_status(self) -> dict[str, Any]:
        history = self.deployments.history()
        return {"current": history[-1].to_dict() if history else None, "auto_rollback": self.deployments.auto_rollback,
                "tracked": len(history)}

    def audit(self, what: str, by: str, detail: str = "") -> None:
        entry = AuditEntry(self.clock(), what, by, detail)
        self._audit.append(entry)
        logger.warning("aphrodite-sla API: %s by %s%s", what, by, f" ({detail})" if detail else "")

    # -- work started through the API ------------------------------------------------------------
    def _ticket(self, future: Future[Any]) -> str:
        ticket = f"t{next(self._ticket_ids)}"
        with self._lock:
            self._tickets[ticket] = future
            while len(self._tickets) > MAX_TICKETS:
                self._tickets.popitem(last=False)
        return ticket

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="aphrodite-sla-recovery-api")
            return self._pool

    def submit_test_action(self, action: RecoveryAction, by: str) -> str:
        self.audit("recovery.test", by, action.value)
        return self._ticket(self.engine.submit(self.engine.test_action(action, by=by)))

    def submit_healing_task(self, task: str, by: str) -> str:
        self.audit("self_healing.force", by, task)
        return self._ticket(self._executor().submit(self.healing.force, task))

    def submit_rollback(self, deployment_id: str, by: str) -> str:
        self.audit("deployment.rollback", by, deployment_id)
        return self._ticket(self._executor().submit(self.deployments.rollback, deployment_id, by))

    def test_result(self, ticket: str) -> dict[str, Any] | None:
        with self._lock:
            future = self._tickets.get(ticket)
        if future is None:
            return None
        if not future.done():
            return {"ticket": ticket, "state": "running"}
        error = future.exception()
        if error is not None:
            return {"ticket": ticket, "state": "failed", "error": f"{type(error).__name__}: {error}"}
        return {"ticket": ticket, "state": "done", "result": future.result()}


def create_production_recovery_engine(context: MonitorContext | None = None) -> RecoveryEngine:
    """The seed's entry point: the recovery engine of ``context`` (default: the process runtime's,
    the one the engine's StatLogger feeds), started. ``await engine.execute_recovery(violation)``
    runs the procedure for a violation by hand; violations on the monitor's stream run it anyway
    (in the configured mode: ``APHRODITE_SLA_RECOVERY`` = off, advisory (default) or act)."""
    if context is None:
        from aphrodite_sla.runtime import get_runtime

        context = get_runtime().context
    if context.recovery is None:
        raise RuntimeError("this monitor was built without recovery (MonitorContext.build(with_recovery=False))")
    context.recovery.engine.start()
    return context.recovery.engine


@dataclass(frozen=True)
class RemediationSettings:
    """What the seed's ``incident_response`` remediation settings ask of recovery (``None``: keep
    recovery's own setting)."""

    automatic: bool = True
    approval_timeout_s: float | None = None
    require_approval: frozenset[RecoveryAction] | None = None


def remediation_settings(cfg: SLAConfig, handlers: Mapping[RecoveryAction, ActionHandler]) -> RemediationSettings:
    """``incident_response.auto_remediation`` (false: recovery only advises) and ``remediation``:
    ``require_approval_for`` (seed names or action values) plus, with ``safe_actions_only`` (the
    default), every action whose handler is risky; ``approval_timeout_seconds``. Why here: one
    configuration file, so the incident settings a user writes change what recovery does."""
    raw = cfg.incident_response or {}
    if "remediation" not in raw and "auto_remediation" not in raw:
        return RemediationSettings()
    from aphrodite_sla.incidents.config import parse_incident_config

    parsed = parse_incident_config(raw)  # validated with the config already
    rem = parsed.remediation
    if "remediation" not in raw:
        return RemediationSettings(automatic=parsed.auto_remediation)
    required = {parse_action(n) for n in rem.require_approval_for}
    if rem.safe_actions_only:
        required |= {a for a, h in handlers.items() if getattr(h, "requires_approval", False)}
    return RemediationSettings(parsed.auto_remediation, rem.approval_timeout_seconds, frozenset(required))
