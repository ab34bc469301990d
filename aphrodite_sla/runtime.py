"""The process-wide runtime an engine plugin attaches to: builds one ``MonitorContext`` from the
configuration and owns its threads (evaluator, stall timer, system sampler), the collector on the
engine's ``/metrics`` and the optional standalone exporter, started once however many StatLoggers
the engine creates.

Why one per process: vLLM builds one StatLogger per engine core (and the ASGI middleware
separately, with no arguments of ours); they must all feed the same monitor. ``get_runtime()`` is
the documented way for such components to find it (``get_runtime().context``).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.config import ConfigError, SLAConfig, load_config
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.event_stream import Subscription
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder
from aphrodite_sla.integrations.stall import StallDetector
from aphrodite_sla.sla.manager import SLAManager

logger = logging.getLogger(__name__)


@dataclass
class RuntimeInfo:
    """What was configured, for health and summary endpoints."""

    config: SLAConfig
    config_error: str | None
    started: bool = False


class SLARuntime:
    """Owns the context's threads and exposition; ``start()`` and ``stop()`` are idempotent."""

    def __init__(self, config: SLAConfig | None = None, *, clock: Clock = system_clock, config_error: str | None = None) -> None:
        self.config = config or SLAConfig()
        self.info = RuntimeInfo(self.config, config_error)
        self.clock = clock
        self.context = MonitorContext.build(self.config, clock=clock, config_error=config_error)
        self.system: Any = None
        self.exporter: Any = None
        self.collector: Any = None
        self.recovery_collector: Any = None
        self.incident_collectors: list[Any] = []
        self._mirror: Subscription | None = None
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        """A forked child (an engine worker, a multiprocessing fork) has none of our threads: the
        runtime is stopped there (every lock it may meet is reset, see ``forking``), so the child's
        recording, flushes and evaluations never wait on a lock a parent thread held; a StatLogger in
        the child starts it again if the child serves."""
        self._lock = threading.Lock()
        self.info.started = False
        self.exporter = None
        self.system = None

    # the context's parts, for callers of the seed-era API
    @property
    def manager(self) -> SLAManager:
        return self.context.manager

    @property
    def recorder(self) -> EngineStatsRecorder:
        return self.context.recorder

    @property
    def stall(self) -> StallDetector:
        return self.context.stall

    @property
    def model_name(self) -> str:
        return self.context.model_name

    @model_name.setter
    def model_name(self, name: str) -> None:
        self.context.set_model_name(name)
        if self.collector is not None:
            self.collector.model_name = name
        if self.recovery_collector is not None:
            self.recovery_collector.model_name = name

    def start(self) -> None:
        """Start the exporter, the evaluator, the stall timer and the system sampler (once). All or
        nothing: if a part fails (the exporter's port is taken), what was started is stopped again
        and the error raised, so a retry (one per data-parallel engine) starts clean and never
        leaves extra threads behind."""
        with self._lock:
            if self.info.started or not self.config.enabled:
                return
            ctx = self.context
            if self.config.numba_cache_dir:  # read when the kernels load, on the evaluator thread
                os.environ.setdefault("APHRODITE_SLA_NUMBA_CACHE_DIR", self.config.numba_cache_dir)
            self._attach_incidents()
            try:
                if self.config.exporter_port:  # first: the part most likely to fail (a busy port)
                    from aphrodite_sla.console.mount import console_of
                    from aphrodite_sla.export.server import start_exporter
                    from aphrodite_sla.incidents.api import combined_handler
                    from aphrodite_sla.rca.api import with_rca_routes

                    console = console_of(ctx)  # the incident console, when incidents run

                    self.exporter, port, registry = start_exporter(
                        ctx.manager, self.config.exporter_port, self.config.exporter_host, model_name=ctx.model_name,
                        config_error=self.info.config_error, endpoints=ctx.endpoints if ctx.recovery is not None else None,
                        api=with_rca_routes(ctx.rca, combined_handler(ctx.incidents.api if ctx.incidents is not None else None,
                                                                      ctx.recovery.api.handle if ctx.recovery is not None else None)),
                        console=console.handle if console is not None else None,
                    )
                    if ctx.recovery is not None:
                        from aphrodite_sla.export.recovery_collector import RecoveryCollector

                        registry.register(RecoveryCollector(ctx.recovery.metrics_view, model_name=ctx.model_name))
                    if ctx.incidents is not None:
                        for incident_collector in ctx.incidents.collectors(ctx.model_name):
                            registry.register(incident_collector)
                    if ctx.rca is not None:
                        from aphrodite_sla.export.rca_collector import RCACollector

                        registry.register(RCACollector(ctx.rca.metrics_view, model_name=ctx.model_name))
                    logger.info("aphrodite-sla: exporter on http://%s:%d/metrics", self.config.exporter_host, port)
                    if console is not None:
                        logger.info("aphrodite-sla: incident console on http://%s:%d/console/", self.config.exporter_host, port)
                self._register_collector()
                ctx.manager.start_monitoring()
                ctx.stall.start()
                if ctx.recovery is not None:
                    ctx.recovery.start()
                if ctx.incidents is not None:
                    ctx.incidents.start()
                if self.config.system_sampler:
                    from aphrodite_sla.integrations.system import SystemSampler

                    self.system = SystemSampler(ctx.manager, interval_s=self.config.system_interval_s)
                    self.system.start()
            except BaseException:
                self._stop_parts(timeout=5.0)
                raise
            self.info.started = True

    def _attach_incidents(self) -> None:
        """The incident system (its store opened), unless switched off; a store that cannot be
        opened is logged and leaves the engine serving without incidents."""
        if not self.config.incidents or self.context.incidents is not None or self.config.incident_response.get("enabled") is False:
            return
        try:
            self.context.attach_incidents()
        except Exception:
            logger.exception("aphrodite-sla: the incident store could not be opened; incidents are off")

    def _register_collector(self) -> None:
        """Put our families on the engine's own ``/metrics``: prometheus_client's default registry,
        which vLLM and Aphrodite serve, or, under multiprocess mode (several API servers), the
        metric files their MultiProcessCollector reads (see ``export.multiprocess``)."""
        from prometheus_client import REGISTRY

        from aphrodite_sla.events import SnapshotPublished
        from aphrodite_sla.export.collector import SLACollector
        from aphrodite_sla.export.multiprocess import MultiprocessMirror, mark_this_process_dead, multiprocess_mode

        if self.collector is not None:
            return
        ctx = self.context
        self.collector = SLACollector(ctx.snapshot, model_name=ctx.model_name, self_metrics=ctx.self_metrics)
        try:
            REGISTRY.register(self.collector)
        except ValueError:  # already registered (a second runtime in one process)
            logger.warning("aphrodite-sla: collector already registered on the default registry")
        if ctx.recovery is not None and self.recovery_collector is None:
            from aphrodite_sla.export.recovery_collector import RecoveryCollector

            self.recovery_collector = RecoveryCollector(ctx.recovery.metrics_view, model_name=ctx.model_name)
            try:
                REGISTRY.register(self.recovery_collector)
            except ValueError:
                logger.warning("aphrodite-sla: recovery collector already registered on the default registry")
        if ctx.incidents is not None and not self.incident_collectors:
            self.incident_collectors = ctx.incidents.collectors(ctx.model_name)
            for incident_collector in self.incident_collectors:
                try:
                    REGISTRY.register(incident_collector)
                except ValueError:
                    logger.warning("aphrodite-sla: incident collector already registered on the default registry")
        if multiprocess_mode() and self._mirror is None:
            # the engine's /metrics then reads metric files only: mirror every published snapshot
            mirror = MultiprocessMirror(self.collector, ctx.self_metrics)
            self._mirror = ctx.manager.subscribe(mirror.on_event, SnapshotPublished, name="multiprocess_mirror")
            atexit.register(mark_this_process_dead)  # a process gone must not leave its series behind
            logger.info("aphrodite-sla: prometheus multiprocess mode: publishing SLA metrics as multiprocess gauges")

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            if not self.info.started:
                return
            self._stop_parts(timeout)
            self.info.started = False

    def _stop_parts(self, timeout: float) -> None:
        """Stop whatever is running (each part is idempotent)."""
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
        if self.recovery_collector is not None:
            from prometheus_client import REGISTRY

            try:
                REGISTRY.unregister(self.recovery_collector)
            except KeyError:
                pass
            self.recovery_collector = None
        if self.incident_collectors:
            from prometheus_client import REGISTRY

            for incident_collector in self.incident_collectors:
                try:
                    REGISTRY.unregister(incident_collector)
                except KeyError:
                    pass
            self.incident_collectors = []
        if self.context.recovery is not None:
            self.context.recovery.stop(timeout)
        if self.context.incidents is not None:
            self.context.incidents.stop()
        if self._mirror is not None:
            self.context.events.unsubscribe(self._mirror)
            self._mirror = None
        self.context.manager.stop_monitoring(timeout)
        self.context.stall.stop(timeout)
        if self.system is not None:
            self.system.stop(timeout)
            self.system = None


_runtime: SLARuntime | None = None
_runtime_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _runtime_lock
    _runtime_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def get_runtime() -> SLARuntime:
    """The process's runtime, created from the environment on first use. A malformed configuration
    is logged as an error naming the problem and the defaults are used: a monitoring typo must not
    keep an inference server from starting (``runtime.info.config_error`` reports it)."""
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
