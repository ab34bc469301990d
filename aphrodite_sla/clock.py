"""Injectable clocks: everything time-based reads one, so tests and the simulator can run hours of
engine time in seconds.

Monitor time never steps. ``system_clock`` is ``time.monotonic()`` placed on the epoch scale once,
at import: it reads like wall time (labels, events and incidents carry sensible timestamps) but an
NTP step or a manual ``date -s`` moves nothing — windows, ages, stall timers and evaluation
intervals are intervals. Why it matters: with the wall clock, a backward step of D seconds made
every new sample look D seconds late (dropped), and a forward step made a busy engine look stalled.
Timestamps a caller passes in wall time are converted by their age (``wall_clock_for``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

# monotonic -> epoch, fixed at import (a later wall-clock step does not move monitor time)
_EPOCH_OFFSET = time.time() - time.monotonic()


class Clock(Protocol):
    """A source of monitor time in seconds (epoch scale, never stepping backwards)."""

    def __call__(self) -> float: ...


def system_clock() -> float:
    """Monitor time: ``time.monotonic()`` on the epoch scale (see the module docstring)."""
    return time.monotonic() + _EPOCH_OFFSET


def wall_clock_for(clock: Clock) -> Callable[[], float]:
    """The wall clock that caller-given timestamps of ``clock``'s monitor are in: ``time.time``
    for the system clock (its samples are converted by age), the clock itself for any other (a
    ``ManualClock`` or a simulator's clock is both)."""
    return time.time if clock is system_clock else clock


class ManualClock:
    """A clock that moves only when told to; thread-safe so a background evaluator can read it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        from aphrodite_sla.forking import reset_in_child

        reset_in_child(self)

    def _reset_after_fork(self) -> None:
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
