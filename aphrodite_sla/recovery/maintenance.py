"""A scheduler of periodic maintenance tasks on a daemon thread of its own.

Why its own thread: a task (a ``gc.collect`` over a large heap, a log rollover on a slow disk, a
0.2 s CPU reading) must never run on the engine's event loop or inside the evaluator. The thread
only calls ``run_due(clock())`` every ``tick_s``; tests call ``run_due(now)`` with a manual clock
instead. A task's function is a plain callable: what it returns is its result (an object with a
boolean ``ok`` says whether it succeeded; ``detail`` or ``str()`` describes it), what it raises is
a failure. Every run is kept in a bounded history.

Scheduling: a task is first due one interval after it is added; after each run it is due again
one interval later (no catch-up burst after a stall). Runs are sequential on the scheduler's thread;
a task already running (forced from another thread) is not started twice.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.periodic import PeriodicThread

logger = logging.getLogger(__name__)

TaskFn = Callable[[], Any]
HISTORY_SIZE = 500
TICK_S = 30.0


# -- data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskRun:
    """One run of one task: when, how long (wall seconds of work), whether it succeeded, and what it
    said. ``forced``: run by hand (``force``), not by the schedule."""

    task: str
    started_at: float
    duration_s: float
    ok: bool
    detail: str
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "started_at": self.started_at, "duration_s": self.duration_s, "ok": self.ok,
                "detail": self.detail, "forced": self.forced}


@dataclass
class MaintenanceTask:
    """A task: ``fn()`` every ``interval_s`` seconds (state: next due time, counts, last run)."""

    name: str
    interval_s: float
    fn: TaskFn
    description: str = ""
    enabled: bool = True
    next_due: float = math.inf
    successes: int = 0
    failures: int = 0
    last_run: TaskRun | None = None
    running_since: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"MaintenanceTask.name: a non-empty string is required, got {self.name!r}")
        value = self.interval_s
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"MaintenanceTask.interval_s: must be a finite number of seconds > 0, got {value!r}")
        self.interval_s = float(value)
        if not callable(self.fn):
            raise ValueError(f"MaintenanceTask.fn: must be callable, got {type(self.fn).__name__}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"MaintenanceTask.enabled: must be true or false, got {self.enabled!r}")


@dataclass(frozen=True)
class TaskStatus:
    """A task as reported by ``status()``."""

    name: str
    description: str
    interval_s: float
    enabled: bool
    next_due: float
    successes: int
    failures: int
    running: bool
    last_run: TaskRun | None

    @property
    def success_rate_percent(self) -> float | None:
        runs = self.successes + self.failures
        return 100.0 * self.successes / runs if runs else None


@dataclass(frozen=True)
class SchedulerStatus:
    enabled: bool
    running: bool  # the scheduler's thread
    tasks: tuple[TaskStatus, ...]


# -- behaviour -------------------------------------------------------------------------------------
class MaintenanceScheduler:
    """Runs due tasks (see the module docstring). ``on_run(run)`` is called after every run."""

    def __init__(
        self, *, clock: Clock = system_clock, tick_s: float = TICK_S, history_size: int = HISTORY_SIZE,
        timer: Callable[[], float] = time.perf_counter, on_run: Callable[[TaskRun], Any] | None = None, name: str = "maintenance",
    ) -> None:
        if isinstance(tick_s, bool) or not isinstance(tick_s, (int, float)) or not math.isfinite(tick_s) or tick_s <= 0:
            raise ValueError(f"MaintenanceScheduler.tick_s: must be a finite number > 0, got {tick_s!r}")
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"MaintenanceScheduler.history_size: must be an integer >= 1, got {history_size!r}")
        self.clock = clock
        self.timer = timer
        self.on_run = on_run
        self.enabled = True
        self._tasks: dict[str, MaintenanceTask] = {}
        self._history: deque[TaskRun] = deque(maxlen=history_size)
        self._lock = threading.Lock()
        reset_in_child(self)
        self._worker = PeriodicThread(f"aphrodite-sla-{name}", self.run_due, float(tick_s))

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        for task in self._tasks.values():
            task.running_since = None

    # -- tasks -------------------------------------------------------------------------------
    def add_task(self, name: str, interval_s: float, fn: TaskFn, description: str = "", *, enabled: bool = True,
                 first_due: float | None = None) -> MaintenanceTask:
        """Add a task, first due at ``first_due`` (default: one interval from now)."""
        task = MaintenanceTask(name, interval_s, fn, description, enabled)
        task.next_due = self.clock() + task.interval_s if first_due is None else float(first_due)
        with self._lock:
            if name in self._tasks:
                raise ValueError(f"add_task.name: a task named {name!r} exists already")
            self._tasks[name] = task
        return task

    def remove_task(self, name: str) -> bool:
        with self._lock:
            return self._tasks.pop(name, None) is not None

    def task_names(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    # -- running -----------------------------------------------------------------------------
    def run_due(self, now: float | None = None) -> list[TaskRun]:
        """Run every enabled task that is due at ``now`` (default: the clock), in order of due time."""
        if not self.enabled:
            return []
        at = self.clock() if now is None else float(now)
        with self._lock:
            due = sorted((t for t in self._tasks.values() if t.enabled and t.next_due <= at and t.running_since is None),
                         key=lambda t: t.next_due)
        runs = []
        for task in due:
            run = self._run(task, at, forced=False)
            if run is not None:
                runs.append(run)
        return runs

    def force(self, name: str) -> TaskRun:
        """Run ``name`` now on the caller's thread (even when disabled); its schedule moves on from now."""
        with self._lock:
            task = self._tasks.get(name)
            known = ", ".join(self._tasks)
        if task is None:
            raise ValueError(f"force.task_name: unknown task {name!r}; known: {known}")
        run = self._run(task, self.clock(), forced=True)
        if run is None:
            return TaskRun(name, self.clock(), 0.0, False, "already running", forced=True)
        return run

    def _run(self, task: MaintenanceTask, at: float, *, forced: bool) -> TaskRun | None:
        with self._lock:
            if task.running_since is not None:
                return None
            task.running_since = at
        started = self.timer()
        try:
            ok, detail = _outcome(task.fn())
        except Exception as exc:  # a task's failure is recorded, never raised into the scheduler
            ok, detail = False, f"{type(exc).__name__}: {exc}"
            logger.warning("aphrodite-sla: maintenance task %s failed: %s", task.name, detail, exc_info=True)
        run = TaskRun(task.name, at, max(0.0, self.timer() - started), ok, detail, forced)
        with self._lock:
            task.running_since = None
            task.last_run = run
            task.next_due = at + task.interval_s
            if ok:
                task.successes += 1
            else:
                task.failures += 1
            self._history.append(run)
        if self.on_run is not None:
            try:
                self.on_run(run)
            except Exception:
                logger.exception("aphrodite-sla: maintenance on_run hook failed")
        return run

    # -- reading -----------------------------------------------------------------------------
    def history(self, limit: int | None = None) -> list[TaskRun]:
        """Runs, newest first (at most ``limit``)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"history.limit: must be an integer >= 0 or None, got {limit!r}")
        with self._lock:
            runs = list(reversed(self._history))
        return runs if limit is None else runs[:limit]

    def running(self) -> dict[str, float]:
        """Tasks running now: name -> when they started."""
        with self._lock:
            return {t.name: t.running_since for t in self._tasks.values() if t.running_since is not None}

    def status(self) -> SchedulerStatus:
        with self._lock:
            tasks = tuple(
                TaskStatus(t.name, t.description, t.interval_s, t.enabled, t.next_due, t.successes, t.failures,
                           t.running_since is not None, t.last_run)
                for t in self._tasks.values()
            )
        return SchedulerStatus(self.enabled, self._worker.is_running, tasks)

    # -- switches ----------------------------------------------------------------------------
    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        """No scheduled runs until ``enable()``; ``force`` still runs a task."""
        self.enabled = False

    @property
    def is_running(self) -> bool:
        return self._worker.is_running

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> bool:
        return self._worker.stop(timeout)


def _outcome(result: Any) -> tuple[bool, str]:
    """A task's return value as (ok, detail)."""
    ok = getattr(result, "ok", True)
    if not isinstance(ok, bool):
        ok = True
    detail = getattr(result, "detail", None)
    if not isinstance(detail, str):
        detail = "" if result is None else str(result)
    return ok, detail


__all__ = ["MaintenanceScheduler", "MaintenanceTask", "SchedulerStatus", "TaskRun", "TaskStatus"]
