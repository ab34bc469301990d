"""Where the latest ``MonitorSnapshot`` is published and read.

Two writers own disjoint parts: the evaluator (everything but the stall, every evaluation) and the
stall detector (``stall`` and ``stall_violation``, every check, so a stall shows within a second
rather than at the next evaluation). Writers combine under a small lock; readers take
``board.latest`` — one reference read, no lock, never a partial state.
"""
from __future__ import annotations

import threading
from dataclasses import replace

from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.sla.threshold import SLAViolation
from aphrodite_sla.snapshot import EMPTY_SNAPSHOT, MonitorHealth, MonitorSnapshot, StallStatus


class SnapshotBoard:
    """The latest snapshot; ``latest`` is what every reader reads."""

    def __init__(self) -> None:
        self._latest = EMPTY_SNAPSHOT
        self._lock = threading.Lock()
        reset_in_child(self)

    @property
    def latest(self) -> MonitorSnapshot:
        return self._latest

    def publish_evaluation(self, snapshot: MonitorSnapshot) -> MonitorSnapshot:
        """Publish an evaluation's snapshot, keeping the stall detector's part; returns it."""
        with self._lock:
            current = self._latest
            if current.stall is not None or current.stall_violation is not None:
                snapshot = replace(snapshot, stall=current.stall, stall_violation=current.stall_violation)
            self._latest = snapshot
            return snapshot

    def publish_health(self, health: MonitorHealth) -> None:
        """Replace the monitor's own health (an evaluation that failed publishes no statuses)."""
        with self._lock:
            self._latest = replace(self._latest, health=health)

    def publish_stall(self, status: StallStatus, violation: SLAViolation | None) -> None:
        """Replace the stall part (``violation`` is set while stalled)."""
        with self._lock:
            self._latest = replace(self._latest, stall=status, stall_violation=violation)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
