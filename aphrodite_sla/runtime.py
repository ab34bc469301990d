"""The process-wide runtime an engine plugin attaches to: one SLA manager, one stats recorder, the
stall detector and system sampler, started once however many StatLoggers the engine creates.

Why a singleton: vLLM builds one StatLogger per engine core (and the ASGI middleware separately,
with no arguments of ours); they must all feed the same manager and the same exporter.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.config import ConfigError, SLAConfig, load_config
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder, ServiceObjectives
from aphrodite_sla.sla.defaults import default_thresholds
from aphrodite_sla.sla.manager import SLAManager

logger = logging.getLogger(__name__)


@dataclass
class RuntimeInfo:
    """What was configured, for health and summary endpoints."""

    config: SLAConfig
    config_error: str | None
    started: bool = False


class SLARuntime:
    """Owns the components; ``start()`` and ``stop()`` are idempotent."""

    def __init__(self, config: SLAConfig | None = None, *, clock: Clock = system_clock, config_error: str | None = None) -> None:
        self.config = config or SLAConfig()
        self.info = RuntimeInfo(self.config, config_error)
        self.clock = clock
        thresholds = [t for t in default_thresholds() if t.metric_name not in self.config.disabled_slas]
        thresholds += [t for t in self.config.thresholds if t.metric_name not in self.config.disabled_slas]
        self.manager = SLAManager(thresholds, clock=clock, evaluation_interval_s=self.config.evaluation_interval_s)
        self.stall = self._make_stall_detector()
        self.recorder = EngineStatsRecorder(
            self.manager,
            objectives=ServiceObjectives(self.config.ttft_objective_ms, self.config.tpot_objective_ms, self.config.abort_is_error),
            stall_detector=self.stall,
        )
        self.system = None
        self.endpoints: Any = None
        self.exporter: Any = None
        self.collector: Any = None
        self.model_name = ""
        self._lock = threading.Lock()

    def _make_stall_detector(self) -> Any:
        from aphrodite_sla.integrations.asgi import get_in_flight_requests
        from aphrodite_sla.integrations.stall import StallDetector

        return StallDetector(
            self.manager, stall_after_s=self.config.stall_after_s, clock=self.clock, in_flight=get_in_flight_requests
        )

    def start(self) -> None:
        """Start the evaluator, stall timer and system sampler (once)."""
        with self._lock:
            if self.info.started or not self.config.enabled:
                return
            self.manager.start_monitoring()
            self.stall.start()
            if self.config.system_sampler:
                from aphrodite_sla.integrations.system import SystemSampler

                self.system = SystemSampler(self.manager, interval_s=self.config.system_interval_s)
                self.system.start()
            from aphrodite_sla.export.endpoints import SLAEndpoints
            from aphrodite_sla.integrations.asgi import set_default_endpoints, set_default_manager

            set_default_manager(self.manager)
            self.endpoints = SLAEndpoints(self.manager, stall=self.stall, config_error=self.info.config_error,
                                          model_name=self.model_name)
            set_default_endpoints(self.endpoints)
            self._register_collector()
            if self.config.exporter_port:
                from aphrodite_sla.export.server import start_exporter

                self.exporter, port, _ = start_exporter(
                    self.manager, self.config.exporter_port, self.config.exporter_host, model_name=self.model_name,
                    stall=self.stall, config_error=self.info.config_error,
                )
                logger.info("aphrodite-sla: exporter on http://%s:%d/metrics", self.config.exporter_host, port)
            self.info.started = True

    def _register_collector(self) -> None:
        """Put our families on the engine's own ``/metrics``: prometheus_client's default registry,
        which vLLM and Aphrodite serve, or, under multiprocess mode (several API servers), the
        metric files their MultiProcessCollector reads (see ``export.multiprocess``)."""
        from prometheus_client import REGISTRY

        from aphrodite_sla.export.collector import SLACollector

        if self.collector is None:
            self.collector = SLACollector(self.manager, model_name=self.model_name, stall=self.stall)
            try:
                REGISTRY.register(self.collector)
            except ValueError:  # already registered (a second runtime in one process)
                logger.warning("aphrodite-sla: collector already registered on the default registry")
            from aphrodite_sla.export.multiprocess import MultiprocessMirror, multiprocess_mode

            if multiprocess_mode():
                # the engine's /metrics then reads metric files only: mirror our families there
                mirror = MultiprocessMirror(self.collector)
                self.manager.register_pre_evaluation_hook(mirror.publish)
                logger.info("aphrodite-sla: prometheus multiprocess mode: publishing SLA metrics as multiprocess gauges")

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            if not self.info.started:
                return
            if self.exporter is not None:
                self.exporter.shutdown()
                self.exporter.server_close()
                self.exporter = None
            if self.collector is not None:
                from prometheus_client import REGISTRY

                try:
                    REGISTRY.unregister(self.collector)
                except KeyError:
                    pass
                self.collector = None
            self.manager.stop_monitoring(timeout)
            self.stall.stop(timeout)
            if self.system is not None:
                self.system.stop(timeout)
            self.info.started = False


_runtime: SLARuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> SLARuntime:
    """The process's runtime, created from the environment on first use. A malformed configuration
    is logged as an error naming the problem and the defaults are used: a monitoring typo must not
    keep an inference server from starting (``get_runtime_info().config_error`` reports it)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            error = None
            try:
                config = load_config()
            except ConfigError as err:
                error = str(err)
                logger.error("aphrodite-sla: invalid configuration, using defaults: %s", err)
                config = SLAConfig()
            _runtime = SLARuntime(config, config_error=error)
        return _runtime


def reset_runtime() -> None:
    """Stop and forget the process's runtime (tests, and engines that restart in-process)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.stop()
        _runtime = None
