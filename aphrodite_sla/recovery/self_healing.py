"""Self-healing: the seed's maintenance tasks and health checks, with healing and escalation.

Default tasks (``MaintenanceScheduler``, its own daemon thread), and what each really does in an
inference server:

* ``cleanup`` (every 6 h): drops expired entries of our own bounded stores and caches — the
  ``cleanups`` callables passed in, each ``fn(now) -> entries dropped`` — then ``gc.collect()``.
  It deletes no files: the engine's and the operator's files are not ours to remove.
* ``memory_optimization`` (every 4 h): ``gc.collect()``, then glibc's ``malloc_trim(0)`` through
  ctypes where the C library is glibc, which returns freed heap pages to the OS (Python's
  allocator and numpy leave them mapped otherwise); reports the process RSS before and after.
* ``health_check`` (every 1 h): system memory, CPU and disk use against ``HealthThresholds``
  (85% / 80% / 90% by default, the seed's ``MEMORY_THRESHOLD``/``CPU_THRESHOLD``/``DISK_THRESHOLD``)
  and an optional engine check; each breached condition runs the configured ``heal(condition)``
  (e.g. the recovery engine's MEMORY_CLEANUP test action). A condition still failing after
  ``escalate_after_s`` (30 min) publishes one ``ResponseEscalated`` per episode: a person must look.
* ``log_rotation`` (every 24 h): ``doRollover()`` on the ``RotatingFileHandler`` and
  ``TimedRotatingFileHandler`` handlers of the ``aphrodite_sla`` logger; nothing when there are none.

Readings come from the system sampler's latest sample when it is fresh (no duplicate psutil
work), else from psutil directly (CPU over 0.2 s, on the scheduler's thread).

Maintenance windows (``maintenance_window(start, end)``) go on a ``MaintenanceCalendar``; share the
production monitor's (``calendar=monitor.calendar``) and the monitor enters MAINTENANCE for the
window too. Inside a window health checks still run and are recorded, but no healing response is
run and nothing is escalated (planned work may hold resources on purpose).
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import inspect
import logging
import math
import os
import platform
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from logging.handlers import RotatingFileHandler, TimedRotatingFileHandler
from typing import Any

import psutil

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import ESCALATION_ALERT, ResponseEscalated, episode_id, fingerprint
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.maintenance import MaintenanceScheduler, MaintenanceTask, SchedulerStatus, TaskFn, TaskRun
from aphrodite_sla.recovery.monitoring_mode import MaintenanceCalendar, MaintenanceWindow

logger = logging.getLogger(__name__)

HOUR = 3600.0
DEFAULT_INTERVALS_S: dict[str, float] = {
    "cleanup": 6 * HOUR,
    "memory_optimization": 4 * HOUR,
    "health_check": 1 * HOUR,
    "log_rotation": 24 * HOUR,
}
ESCALATE_AFTER_S = 30 * 60.0
HEAL_TIMEOUT_S = 300.0  # a heal coroutine that has not finished by then counts as failed
CPU_SAMPLE_S = 0.2
LOGGER_NAME = "aphrodite_sla"

Heal = Callable[[str], Any]
EngineCheck = Callable[[], Any]
Cleanup = Callable[[float], Any]


# -- data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthThresholds:
    """Percent limits of system memory, CPU and disk use (the seed's defaults)."""

    memory_percent: float = 85.0
    cpu_percent: float = 80.0
    disk_percent: float = 90.0

    def __post_init__(self) -> None:
        for name in ("memory_percent", "cpu_percent", "disk_percent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 100:
                raise ValueError(f"HealthThresholds.{name}: must be a percentage in (0, 100], got {value!r}")

    @classmethod
    def from_seed_env(cls, environ: Mapping[str, str] | None = None) -> HealthThresholds:
        """From the seed's ``MEMORY_THRESHOLD``, ``CPU_THRESHOLD`` and ``DISK_THRESHOLD`` (absent: default)."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for var, name in (("MEMORY_THRESHOLD", "memory_percent"), ("CPU_THRESHOLD", "cpu_percent"), ("DISK_THRESHOLD", "disk_percent")):
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"HealthThresholds.{name}: {var}={raw!r} is not a number") from None
        return cls(**values)


@dataclass(frozen=True)
class HealthReadings:
    """One reading of system use (None where it could not be read) and where it came from."""

    at: float
    memory_percent: float | None
    cpu_percent: float | None
    disk_percent: float | None
    source: str = "psutil"


@dataclass(frozen=True)
class ConditionCheck:
    """One condition against its limit (``engine``: value None, ``detail`` says why)."""

    condition: str
    value: float | None
    threshold: float | None
    breached: bool
    detail: str = ""


@dataclass(frozen=True)
class HealthReport:
    """A health check: readings against thresholds, what was healed, what was escalated."""

    at: float
    readings: HealthReadings
    checks: tuple[ConditionCheck, ...]
    healed: tuple[str, ...] = ()
    escalated: tuple[str, ...] = ()
    in_maintenance: bool = False

    @property
    def breached(self) -> tuple[str, ...]:
        return tuple(c.condition for c in self.checks if c.breached)

    @property
    def ok(self) -> bool:
        return not self.breached

    @property
    def detail(self) -> str:
        parts = [c.detail for c in self.checks if c.breached] or ["all conditions within thresholds"]
        if self.healed:
            parts.append(f"healed: {', '.join(self.healed)}")
        if self.escalated:
            parts.append(f"escalated: {', '.join(self.escalated)}")
        if self.in_maintenance:
            parts.append("maintenance window: no healing")
        return "; ".join(parts)


@dataclass(frozen=True)
class HealingEpisode:
    """A condition failing since ``failing_since``: the healing attempts made and whether it was
    escalated (once per episode)."""

    condition: str
    failing_since: float
    last_value: float | None
    heal_attempts: int = 0
    last_heal_detail: str = ""
    escalated_at: float | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """What a default task did (``ok`` and ``detail`` are what the scheduler records)."""

    ok: bool
    detail: str
    freed_bytes: int | None = None


@dataclass(frozen=True)
class SelfHealingStatus:
    enabled: bool
    scheduler: SchedulerStatus
    thresholds: HealthThresholds
    active_episodes: int
    escalations: int
    maintenance_windows: tuple[MaintenanceWindow, ...]


# -- behaviour -------------------------------------------------------------------------------------
class SelfHealing:
    """The seed's self-healing service (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        events: EventStream | None = None,
        heal: Heal | None = None,
        thresholds: HealthThresholds | None = None,
        readings: Callable[[], HealthReadings] | None = None,
        sampler: Any = None,
        engine_check: EngineCheck | None = None,
        cleanups: Sequence[Cleanup] = (),
        escalate_after_s: float = ESCALATE_AFTER_S,
        calendar: MaintenanceCalendar | None = None,
        intervals_s: Mapping[str, float] | None = None,
        disk_path: str | None = None,
        tick_s: float = 30.0,
    ) -> None:
        if heal is not None and not callable(heal):
            raise ValueError(f"SelfHealing.heal: must be callable or None, got {type(heal).__name__}")
        if engine_check is not None and not callable(engine_check):
            raise ValueError(f"SelfHealing.engine_check: must be callable or None, got {type(engine_check).__name__}")
        if any(not callable(c) for c in cleanups):
            raise ValueError("SelfHealing.cleanups: every entry must be a callable fn(now) -> entries dropped")
        if isinstance(escalate_after_s, bool) or not isinstance(escalate_after_s, (int, float)) or not math.isfinite(escalate_after_s) \
                or escalate_after_s <= 0:
            raise ValueError(f"SelfHealing.escalate_after_s: must be a finite number > 0, got {escalate_after_s!r}")
        intervals = dict(DEFAULT_INTERVALS_S)
        for name, value in (intervals_s or {}).items():
            if name not in intervals:
                raise ValueError(f"SelfHealing.intervals_s: unknown task {name!r}; known: {', '.join(intervals)}")
            intervals[name] = value
        self.clock = clock
        self.events = events
        self.heal = heal
        self.thresholds = thresholds if thresholds is not None else HealthThresholds()
        self.readings_fn = readings
        self.sampler = sampler
        self.engine_check = engine_check
        self.cleanups = tuple(cleanups)
        self.escalate_after_s = float(escalate_after_s)
        self.calendar = calendar if calendar is not None else MaintenanceCalendar()
        self.disk_path = disk_path if disk_path is not None else os.getcwd()
        self.escalations = 0
        self._episodes: dict[str, HealingEpisode] = {}
        self._lock = threading.Lock()
        reset_in_child(self)
        self.scheduler = MaintenanceScheduler(clock=clock, tick_s=tick_s, name="self-healing")
        self.scheduler.add_task("cleanup", intervals["cleanup"], self.cleanup, "drop expired entries of our stores and caches; gc")
        self.scheduler.add_task("memory_optimization", intervals["memory_optimization"], self.optimize_memory,
                                "gc.collect and malloc_trim; RSS before/after")
        self.scheduler.add_task("health_check", intervals["health_check"], self.check_health,
                                "memory/CPU/disk vs thresholds, engine check; heal and escalate")
        self.scheduler.add_task("log_rotation", intervals["log_rotation"], self.rotate_logs, "roll the aphrodite_sla rotating log handlers")

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- scheduling (delegated) --------------------------------------------------------------
    def add_task(self, name: str, interval_s: float, fn: TaskFn, description: str = "", *, enabled: bool = True) -> MaintenanceTask:
        """A custom task: ``fn()`` every ``interval_s`` (a sync callable returning a result or raising)."""
        return self.scheduler.add_task(name, interval_s, fn, description, enabled=enabled)

    def run_due(self, now: float | None = None) -> list[TaskRun]:
        return self.scheduler.run_due(now)

    def force(self, task_name: str) -> TaskRun:
        return self.scheduler.force(task_name)

    def history(self, limit: int | None = None) -> list[TaskRun]:
        return self.scheduler.history(limit)

    def enable(self) -> None:
        self.scheduler.enable()

    def disable(self) -> None:
        """No scheduled task and no healing response until ``enable()`` (``force`` still runs)."""
        self.scheduler.disable()

    @property
    def enabled(self) -> bool:
        return self.scheduler.enabled

    def start(self) -> None:
        self.scheduler.start()

    def stop(self, timeout: float = 5.0) -> bool:
        return self.scheduler.stop(timeout)

    def maintenance_window(self, start: float, end: float, reason: str = "", by: str = "") -> MaintenanceWindow:
        """Plan a window on the shared calendar (no healing or escalation inside it)."""
        return self.calendar.add(MaintenanceWindow(start, end, reason, by))

    # -- reading -----------------------------------------------------------------------------
    def status(self) -> SelfHealingStatus:
        now = self.clock()
        with self._lock:
            episodes, escalations = len(self._episodes), self.escalations
        return SelfHealingStatus(self.enabled, self.scheduler.status(), self.thresholds, episodes, escalations,
                                 tuple(self.calendar.upcoming(now)))

    def active(self) -> list[HealingEpisode]:
        """Conditions failing now, with their healing attempts."""
        with self._lock:
            return list(self._episodes.values())

    def health(self) -> HealthReport:
        """Current readings against the thresholds (and the engine check); heals nothing."""
        now = self.clock()
        readings = self.read()
        return HealthReport(now, readings, self._checks(readings), in_maintenance=self.calendar.active_at(now) is not None)

    def read(self) -> HealthReadings:
        """System use now: the injected reader, else the sampler's fresh sample, else psutil."""
        if self.readings_fn is not None:
            return self.readings_fn()
        now = self.clock()
        latest = getattr(self.sampler, "latest", None)
        interval = float(getattr(self.sampler, "interval_s", 0.0) or 0.0)
        if latest is not None and now - latest.timestamp <= 2 * interval:
            return HealthReadings(latest.timestamp, latest.system_memory_percent, latest.system_cpu_percent, latest.disk_usage_percent,
                                  "system_sampler")
        return HealthReadings(now, _safe(lambda: psutil.virtual_memory().percent), _safe(lambda: psutil.cpu_percent(interval=CPU_SAMPLE_S)),
                              _safe(lambda: psutil.disk_usage(self.disk_path).percent), "psutil")

    def _checks(self, r: HealthReadings) -> tuple[ConditionCheck, ...]:
        th = self.thresholds
        checks = [
            _limit("memory", r.memory_percent, th.memory_percent),
            _limit("cpu", r.cpu_percent, th.cpu_percent),
            _limit("disk", r.disk_percent, th.disk_percent),
        ]
        if self.engine_check is not None:
            try:
                answer = self.engine_check()
                healthy = answer is None or answer is True
                detail = "" if healthy else f"engine check failed: {answer!r}"
            except Exception as exc:
                healthy, detail = False, f"engine check raised {type(exc).__name__}: {exc}"
            checks.append(ConditionCheck("engine", None, None, not healthy, detail))
        return tuple(checks)

    # -- the default tasks ---------------------------------------------------------------------
    def check_health(self, now: float | None = None) -> HealthReport:
        """The health-check task: read, compare, heal each breached condition, escalate episodes
        failing past ``escalate_after_s`` (once each), end episodes that recovered."""
        at = self.clock() if now is None else float(now)
        readings = self.read()
        checks = self._checks(readings)
        maintenance = self.calendar.active_at(at) is not None
        healing = self.enabled and not maintenance
        healed: list[str] = []
        escalated: list[str] = []
        for check in checks:
            if not check.breached:
                with self._lock:
                    ended = self._episodes.pop(check.condition, None)
                if ended is not None:
                    logger.info("aphrodite-sla: self-healing: %s recovered after %.0fs", check.condition, at - ended.failing_since)
                continue
            with self._lock:
                episode = self._episodes.get(check.condition)
                if episode is None:
                    if maintenance:
                        continue  # planned work: no episode starts inside a window
                    episode = HealingEpisode(check.condition, at, check.value)
                episode = replace(episode, last_value=check.value)
                self._episodes[check.condition] = episode
            if healing and self.heal is not None:
                detail = self._heal(check.condition)
                healed.append(check.condition)
                episode = replace(episode, heal_attempts=episode.heal_attempts + 1, last_heal_detail=detail)
            if healing and episode.escalated_at is None and at - episode.failing_since >= self.escalate_after_s:
                episode = replace(episode, escalated_at=at)
                self._escalate(episode, check, at)
                escalated.append(check.condition)
            with self._lock:
                self._episodes[check.condition] = episode
        return HealthReport(at, readings, checks, tuple(healed), tuple(escalated), maintenance)

    def _heal(self, condition: str) -> str:
        """Run ``heal(condition)`` (awaiting it if it returns an awaitable); never raises."""
        assert self.heal is not None
        try:
            result = self.heal(condition)
            if inspect.isawaitable(result):
                result = run_awaitable(result, HEAL_TIMEOUT_S)
        except Exception as exc:
            logger.warning("aphrodite-sla: self-healing response for %s failed: %s", condition, exc, exc_info=True)
            return f"heal raised {type(exc).__name__}: {exc}"
        return "" if result is None else str(getattr(result, "detail", result))

    def _escalate(self, episode: HealingEpisode, check: ConditionCheck, now: float) -> None:
        subject = f"self_healing:{episode.condition}"
        fp = fingerprint(ESCALATION_ALERT, subject=subject)
        detail = (f"{check.detail or episode.condition} for {now - episode.failing_since:.0f}s after "
                  f"{episode.heal_attempts} healing attempt(s); last: {episode.last_heal_detail or 'none'}")
        with self._lock:
            self.escalations += 1
        logger.error("aphrodite-sla: self-healing escalates %s: %s", subject, detail)
        if self.events is not None:
            self.events.publish([ResponseEscalated(fp, episode_id(fp, episode.failing_since), now, subject, episode.failing_since, detail)])

    def cleanup(self) -> TaskOutcome:
        """The cleanup task: each ``cleanups`` callable drops its expired entries; then gc."""
        now = self.clock()
        dropped, failed = 0, []
        for fn in self.cleanups:
            try:
                n = fn(now)
                dropped += int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else 0
            except Exception as exc:
                failed.append(f"{getattr(fn, '__qualname__', fn)!r}: {type(exc).__name__}: {exc}")
        collected = gc.collect()
        detail = f"dropped {dropped} expired entries from {len(self.cleanups)} store(s); gc collected {collected} objects"
        if failed:
            detail += f"; failed: {'; '.join(failed)}"
        return TaskOutcome(not failed, detail)

    def optimize_memory(self) -> TaskOutcome:
        """The memory task: gc, then malloc_trim on glibc; freed bytes from the process RSS."""
        process = psutil.Process()
        before = _safe(lambda: process.memory_info().rss)
        collected = gc.collect()
        trimmed = _malloc_trim()
        after = _safe(lambda: process.memory_info().rss)
        freed = int(before - after) if before is not None and after is not None else None
        trim = {None: "malloc_trim unavailable (not glibc)", True: "malloc_trim released memory", False: "malloc_trim had nothing to release"}
        rss = f"RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB" if before is not None and after is not None else "RSS unavailable"
        return TaskOutcome(True, f"gc collected {collected} objects; {trim[trimmed]}; {rss}", freed)

    def rotate_logs(self) -> TaskOutcome:
        """The log task: roll the rotating file handlers of the ``aphrodite_sla`` logger."""
        handlers = [h for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, (RotatingFileHandler, TimedRotatingFileHandler))]
        if not handlers:
            return TaskOutcome(True, "no rotating log handlers on the aphrodite_sla logger")
        failed = []
        for handler in handlers:
            try:
                handler.acquire()
                try:
                    handler.doRollover()
                finally:
                    handler.release()
            except Exception as exc:
                failed.append(f"{getattr(handler, 'baseFilename', handler)}: {type(exc).__name__}: {exc}")
        detail = f"rolled {len(handlers) - len(failed)} of {len(handlers)} handler(s)"
        return TaskOutcome(not failed, detail + (f"; failed: {'; '.join(failed)}" if failed else ""))


def _limit(condition: str, value: float | None, threshold: float) -> ConditionCheck:
    if value is None:
        return ConditionCheck(condition, None, threshold, False, f"{condition}: no reading")
    breached = value > threshold
    return ConditionCheck(condition, value, threshold, breached, f"{condition} {value:.1f}% > {threshold:g}%" if breached else "")


_libc: Any = None


def _malloc_trim() -> bool | None:
    """glibc's malloc_trim(0): True if memory was returned to the OS; None where unavailable."""
    global _libc
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6")
        return bool(_libc.malloc_trim(0))
    except (OSError, AttributeError):
        return None


def run_awaitable(awaitable: Any, timeout_s: float, loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """Wait, from a worker thread of ours, for an awaitable a hook returned: on ``loop`` (the
    engine's, when the hook needs its objects) or else a fresh event loop on a helper thread (the
    calling thread may run a loop of its own, which must not be blocked on or re-entered). Raises
    what the awaitable raised, or ``TimeoutError`` after ``timeout_s``."""

    async def wrap() -> Any:
        return await awaitable

    if loop is not None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("run_awaitable: called on the loop it would wait for (deadlock); call from a worker thread")
        return asyncio.run_coroutine_threadsafe(wrap(), loop).result(timeout_s)
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = asyncio.run(wrap())
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, name="aphrodite-sla-hook", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:.0f}s")
    if "error" in out:
        raise out["error"]
    return out.get("result")


def _safe(fn: Callable[[], Any]) -> float | None:
    try:
        return float(fn())
    except Exception:
        return None


__all__ = [
    "DEFAULT_INTERVALS_S", "ConditionCheck", "HealingEpisode", "HealthReadings", "HealthReport", "HealthThresholds", "SelfHealing",
    "SelfHealingStatus", "TaskOutcome", "run_awaitable",
]
