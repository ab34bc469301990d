"""A daemon thread that runs a function every few seconds: the evaluator, the stall detector and
the system sampler share it, so each has one tested start/stop and none can die of one bad tick."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from aphrodite_sla.forking import reset_in_child

logger = logging.getLogger(__name__)


class PeriodicThread:
    """Calls ``tick()`` every ``interval_s`` seconds on a daemon thread named ``name``.

    ``run_first``: tick at once on start (else after one interval). ``setup`` runs once on the
    thread before the first tick (e.g. loading numba kernels off the caller's thread). An exception
    from ``setup`` or ``tick`` is counted (``errors``) and handed to ``on_error`` (default: logged);
    the loop goes on. ``start``/``stop`` are idempotent; ``stop`` returns True once the thread has
    ended.
    """

    def __init__(
        self, name: str, tick: Callable[[], object], interval_s: float, *, run_first: bool = True,
        setup: Callable[[], object] | None = None, on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        self.name = name
        self.tick = tick
        self.interval_s = float(interval_s)
        self.run_first = run_first
        self.setup = setup
        self.on_error = on_error
        self.errors = 0
        # each run has its own stop event: a run that outlives a timed-out stop() ends on its own
        # event, and a start() meanwhile begins a new run instead of finding a stopping thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        reset_in_child(self)

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        with self._lock:
            if self.is_running:
                return
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the running thread to end and wait up to ``timeout``; True once it has (a tick that
        is still running finishes on its own, and a later ``start()`` does not wait for it)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
            if thread is None:
                return True
            thread.join(timeout)
            if thread.is_alive():
                return False
            self._thread = None
            return True

    def _run(self, stop: threading.Event) -> None:
        if self.setup is not None:
            try:
                self.setup()
            except Exception as exc:
                self._failed(exc, "set-up")
        if not self.run_first and stop.wait(self.interval_s):
            return
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # one bad tick must not end the loop
                self._failed(exc, "tick")
            if stop.wait(self.interval_s):
                return

    def _reset_after_fork(self) -> None:
        """In a forked child the thread does not exist and the lock may be held: not running."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def _failed(self, exc: Exception, what: str) -> None:
        self.errors += 1
        if self.on_error is None:
            logger.exception("aphrodite-sla: %s %s failed", self.name, what)
            return
        try:
            self.on_error(exc)
        except Exception:
            logger.exception("aphrodite-sla: %s error handler failed", self.name)
