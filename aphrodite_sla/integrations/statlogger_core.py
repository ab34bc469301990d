"""What the vLLM and Aphrodite StatLoggers share: ``StatLoggerCore`` (the engine-neutral body: the
hot-path ``record()``, start-up, periodic log, sleep state), the lookup of a user-given monitor's
recorder, and ``lazy_engine_class`` (why: each engine's class must be built on first access, so
importing our modules never imports vLLM, Aphrodite or torch).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder

logger = logging.getLogger(__name__)

# Series for the engine's sleep state (vLLM ``sleep()``/``wake_up()``): 0 awake, else the sleep
# level (release_kv_cache_memory reports asleep at level 0, recorded as 1).
SLEEP_SERIES = "engine_sleep_level"


def served_model_name(config: Any) -> str | None:
    """The served model name from an engine config, read defensively (``served_model_name`` may be
    a string or a list; falls back to ``model``); None when the config has neither."""
    model_config = getattr(config, "model_config", None)
    for attr in ("served_model_name", "model"):
        value = getattr(model_config, attr, None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    return None


def recorder_for(production_monitor: Any) -> EngineStatsRecorder:
    """The stats recorder to feed for a user-supplied monitor object: its ``recorder`` (an
    ``SLARuntime`` or ``MonitorContext`` has one), or the recorder of the SLA manager found at
    ``manager`` / ``sla_manager`` (or the object itself, if it is an SLA manager), shared by every
    logger feeding that manager. Raises ``TypeError`` naming what was expected."""
    from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder

    recorder = getattr(production_monitor, "recorder", None)
    if recorder is not None and callable(getattr(recorder, "record", None)):
        return recorder
    candidates = [getattr(production_monitor, a, None) for a in ("manager", "sla_manager")] + [production_monitor]
    for manager in candidates:
        if manager is None or not hasattr(manager, "record_batch") or not hasattr(manager, "register_pre_evaluation_hook"):
            continue
        try:
            return EngineStatsRecorder.for_manager(manager)
        except TypeError:  # not weak-referenceable: one recorder per logger, still correct
            return EngineStatsRecorder(manager)
    raise TypeError(
        "production_monitor: expected an object with a `recorder` (EngineStatsRecorder), a `manager` or "
        f"`sla_manager` (SLAManager), or an SLAManager; got {type(production_monitor).__name__}"
    )


class StatLoggerCore:
    """Engine-neutral body of the engine StatLoggers (vLLM, Aphrodite). Subclasses also derive from
    their engine's ``StatLoggerBase`` and call ``_sla_init`` from ``__init__``."""

    engine_name = "engine"

    def _sla_init(
        self,
        config: Any,
        engine_index: Any = 0,
        *,
        production_monitor: Any = None,
        local_interval: Any = 10.0,
        ignored: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        try:
            self.engine_index = int(engine_index)
        except (TypeError, ValueError):
            self.engine_index = 0
        try:
            interval = float(local_interval)
            self.local_interval = interval if interval > 0 else 10.0  # NaN fails `> 0` too
        except (TypeError, ValueError):
            self.local_interval = 10.0
        self.model_name = served_model_name(config)
        self.ignored_kwargs = tuple(sorted(ignored or ()))
        self.record_errors = 0  # exceptions caught around the recorder (it catches its own too)
        self.sleep_level = 0
        self._last_log = time.monotonic()
        self._last_problems = 0
        self.production_monitor = production_monitor
        if production_monitor is not None:
            self._runtime = None
            recorder = recorder_for(production_monitor)
            enabled = True
        else:
            try:
                from aphrodite_sla.runtime import get_runtime

                self._runtime = get_runtime()
            except Exception:
                logger.exception("aphrodite-sla: cannot create the SLA runtime; this engine runs unmonitored")
                self._runtime = None
                self._recorder = None
                self.enabled = False
                return
            recorder = self._runtime.recorder
            enabled = bool(getattr(self._runtime.config, "enabled", True))
            if self.model_name and not self._runtime.model_name:
                self._runtime.model_name = self.model_name
            recovery = getattr(getattr(self._runtime, "context", None), "recovery", None)
            if enabled and recovery is not None and config is not None:
                recovery.track_engine_deployment(config)  # the deployment watch compares it with the previous one
        self._recorder = recorder
        self.enabled = enabled
        if enabled:
            # The recorder's record() takes the engine's arguments and never raises: bound as this
            # logger's own record(), the engine's call reaches it with no frame of ours between.
            self.record = recorder.record  # type: ignore[method-assign]
        try:
            recorder.manager.register_metric(SLEEP_SERIES, 600.0, 1.0, unit="level")
        except Exception:
            logger.debug("aphrodite-sla: cannot register %s", SLEEP_SERIES, exc_info=True)

    @property
    def recorder(self) -> EngineStatsRecorder | None:
        """The recorder fed by ``record()`` (None only if the runtime could not be created)."""
        return self._recorder

    # -- the engine's hot path --------------------------------------------------------------
    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0, **_: Any) -> None:
        """Disabled or unmonitored: nothing. (Enabled, ``_sla_init`` replaced this with the
        recorder's own ``record`` on the instance.)"""

    # -- lifecycle ---------------------------------------------------------------------------
    def log_engine_initialized(self) -> None:
        """Start the runtime (evaluator, stall timer, system sampler; idempotent) and say so once."""
        try:
            if self._recorder is None:
                return
            if self._runtime is not None:
                if self.enabled:
                    self._runtime.start()
                manager = self._runtime.manager
                state = "started" if self.enabled else "disabled by configuration (APHRODITE_SLA_ENABLED)"
                logger.info(
                    "aphrodite-sla: SLA monitoring %s for %s engine %d (model %s): %d SLAs, evaluation every %g s",
                    state, self.engine_name, self.engine_index, self.model_name or "?",
                    len(manager.thresholds), manager.evaluation_interval_s,
                )
            else:
                logger.info(
                    "aphrodite-sla: %s engine %d (model %s) feeding the given production monitor",
                    self.engine_name, self.engine_index, self.model_name or "?",
                )
        except Exception:
            logger.exception("aphrodite-sla: could not start SLA monitoring; the engine runs without it")

    def log(self) -> None:
        """Called by the engine every few seconds: at most every ``local_interval`` s, a DEBUG line
        with the recorder's counters, or a WARNING when steps could not be read since the last."""
        try:
            now = time.monotonic()
            if self._recorder is None or now - self._last_log < self.local_interval:
                return
            self._last_log = now
            c = self._recorder.counters
            problems = c.bad_steps + c.record_errors + self.record_errors
            if problems > self._last_problems:
                logger.warning(
                    "aphrodite-sla: %d engine steps could not be recorded in the last %.0f s (%d in all, of %d)",
                    problems - self._last_problems, self.local_interval, problems, c.steps_recorded,
                )
            elif logger.isEnabledFor(logging.DEBUG):
                logger.debug("aphrodite-sla: %d steps recorded, %d flushed", c.steps_recorded, c.steps_flushed)
            self._last_problems = problems
        except Exception:
            self.record_errors += 1

    def record_sleep_state(self, is_awake: Any = 0, level: Any = 0, *_: Any, **__: Any) -> None:
        """vLLM's manager calls this with (1, level) after ``sleep(level)``, (1, 0) after
        ``release_kv_cache_memory()`` and (0, 0) after ``wake_up()`` (the first argument is
        "asleep", despite its name in ``StatLoggerBase``). Recorded as ``engine_sleep_level``.
        Note: vLLM 0.32's ``PerEngineStatLoggerAdapter`` does not forward it to per-engine loggers."""
        try:
            asleep = bool(is_awake)
            lvl = int(level) if asleep else 0
            self.sleep_level = max(lvl, 1) if asleep else 0
            if self._recorder is not None:
                self._recorder.manager.record_measurement(SLEEP_SERIES, float(self.sleep_level))
        except Exception:
            self.record_errors += 1


def lazy_engine_class(module_globals: dict[str, Any], name: str, build: Callable[[], type]) -> Callable[[str], Any]:
    """A PEP 562 module ``__getattr__`` that builds ``name`` with ``build()`` on first access (once,
    under a lock) and caches it in the module."""
    lock = threading.Lock()

    def __getattr__(attr: str) -> Any:
        if attr == name:
            with lock:
                cls = module_globals.get(name)
                if cls is None:
                    cls = module_globals[name] = build()
            return cls
        raise AttributeError(f"module {module_globals['__name__']!r} has no attribute {attr!r}")

    return __getattr__


__all__ = ["SLEEP_SERIES", "StatLoggerCore", "lazy_engine_class", "recorder_for", "served_model_name"]
