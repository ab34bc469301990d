"""Injectable clocks: everything time-based reads one, so tests and the simulator can run
hours of engine time in seconds."""
from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in seconds since the epoch."""

    def __call__(self) -> float: ...


def system_clock() -> float:
    """The real wall clock (``time.time``); engine stats carry wall-clock timestamps too."""
    return time.time()


class ManualClock:
    """A clock that moves only when told to; thread-safe so a background evaluator can read it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = float(now)
