"""``MonitorContext``: the one object the runtime builds and passes down.

Why: the StatLoggers, the ASGI middleware, the exporter, the system sampler and the stall detector
need the same manager, the same event stream and snapshot, the same server state (requests in
flight, engine handle, admission controller). Passing one context down replaces module-level
service locators and upward reaches, and later features (recovery, RCA, incidents) attach to its
event stream and read its snapshots without touching the parts that detect.

Components built with no arguments of ours (the middleware vLLM constructs) find the context of
the process runtime: ``aphrodite_sla.runtime.get_runtime().context``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import SnapshotPublished
from aphrodite_sla.export.collector import watch_exported_windows
from aphrodite_sla.export.endpoints import SLAEndpoints
from aphrodite_sla.integrations.asgi import register_http_metrics
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder, ServiceObjectives
from aphrodite_sla.integrations.server_state import ServerState
from aphrodite_sla.integrations.stall import StallDetector
from aphrodite_sla.self_metrics import SelfMetrics
from aphrodite_sla.sla.evaluation_history import EvaluationHistory
from aphrodite_sla.sla.manager import SLAManager
from aphrodite_sla.snapshot import MonitorSnapshot

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.incidents.service import IncidentSystem
    from aphrodite_sla.rca.service import RCAService
    from aphrodite_sla.recovery.service import RecoverySystem


@dataclass(eq=False)
class MonitorContext:
    """The monitor's parts, wired together (see the module docstring)."""

    config: SLAConfig
    manager: SLAManager
    recorder: EngineStatsRecorder
    stall: StallDetector
    server: ServerState
    endpoints: SLAEndpoints
    config_error: str | None = None
    model_name: str = ""
    recovery: RecoverySystem | None = None
    incidents: IncidentSystem | None = None
    rca: RCAService | None = None

    @classmethod
    def build(cls, config: SLAConfig | None = None, *, clock: Clock = system_clock, config_error: str | None = None,
              model_name: str = "", with_recovery: bool = True, with_rca: bool = True) -> MonitorContext:
        """The SLAs of ``config`` (``config.active_thresholds()``), the engine recorder, the stall
        detector, the HTTP series, the exported windows and (``with_recovery``) the recovery system
        on its event stream, started with the runtime."""
        config = config or SLAConfig()
        manager = SLAManager(config.active_thresholds(), clock=clock, evaluation_interval_s=config.evaluation_interval_s,
                             page_rules=config.page_rules, warning_rules=config.warning_rules)
        server = ServerState()
        stall = StallDetector(manager, stall_after_s=config.stall_after_s, clock=clock, in_flight=server.in_flight_requests)
        recorder = EngineStatsRecorder(
            manager,
            objectives=ServiceObjectives(config.ttft_objective_ms, config.tpot_objective_ms, config.abort_is_error),
            stall_detector=stall,
        )
        register_http_metrics(manager)
        watch_exported_windows(manager)
        endpoints = SLAEndpoints(
            manager.snapshot, config_error=config_error, server=server, clock=clock,
            stale_after_s=max(3 * config.evaluation_interval_s, 15.0), fail_on_critical_sla=config.health_fail_on_critical_sla,
        )
        history = EvaluationHistory()
        manager.subscribe(history.on_snapshot, SnapshotPublished, name="evaluation_history")
        endpoints.history, endpoints.evaluation_interval_s = history, config.evaluation_interval_s
        ctx = cls(config, manager, recorder, stall, server, endpoints, config_error, model_name)
        ctx.set_model_name(model_name)
        if with_recovery:
            from aphrodite_sla.recovery.service import RecoverySystem

            ctx.recovery = RecoverySystem(ctx, clock=clock)
            endpoints.recovery = ctx.recovery
        if with_rca:  # RCA on every violation, on its own subscription thread
            from aphrodite_sla.rca.service import RCAService

            ctx.rca = RCAService(ctx)
            endpoints.rca = ctx.rca  # its API's routes in /openapi.json
        return ctx

    def attach_incidents(self, *, clock: Clock | None = None, config: Any = None,
                         notifier_env: Mapping[str, str] | None = None) -> IncidentSystem:
        """Build the incident system on this context's stream (its store opened and migrated;
        ``start()`` subscribes). Attached on demand: opening a database is the runtime's choice."""
        from aphrodite_sla.incidents.service import IncidentSystem

        if self.incidents is None:
            self.incidents = IncidentSystem.for_context(self, clock=clock, config=config, notifier_env=notifier_env)
            self.endpoints.incidents = self.incidents
            self.recorder.outcome_listener = self.incidents.record_engine_event  # the detection rules' engine feed
            from aphrodite_sla.console.mount import attach_console

            attach_console(self)  # the web console (/console), its SLI series from now on
        return self.incidents

    def set_model_name(self, name: str) -> None:
        """The served model (a constant label of our metrics), known once an engine reports it."""
        self.model_name = name
        self.endpoints.model_name = name

    @property
    def events(self) -> EventStream:
        return self.manager.events

    @property
    def self_metrics(self) -> SelfMetrics:
        return self.manager.self_metrics

    def snapshot(self) -> MonitorSnapshot:
        return self.manager.snapshot()
