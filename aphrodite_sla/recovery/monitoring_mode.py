"""The production monitor's data: monitoring modes and their policies, alerts, maintenance windows.

Why modes: how loudly to page and how often to look depends on the situation. In NORMAL a repeat
of the same alert within 5 min is noise; in EMERGENCY a responder wants it every 30 s. MAINTENANCE
is set by a person for planned work: alerts are kept (suppressed) but nobody is paged.

``MaintenanceCalendar`` is the one shared schedule of planned windows: the production monitor
enters MAINTENANCE while a window is open, and self-healing pauses its healing responses and
escalations inside one (both hold the same calendar object).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from enum import Enum

from aphrodite_sla.forking import reset_in_child


class MonitoringMode(str, Enum):
    """How alert delivery and health checks behave (see ``POLICIES``)."""

    NORMAL = "normal"
    HIGH_ALERT = "high_alert"
    EMERGENCY = "emergency"
    MAINTENANCE = "maintenance"

    @property
    def policy(self) -> ModePolicy:
        return POLICIES[self]

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ModePolicy:
    """What a mode means. ``alert_cooldown_s``: a repeat of one alert fingerprint within it is
    counted, not delivered again. ``health_check_interval_s``: how often the monitor reconciles its
    view with the SLA manager's snapshot. ``calm_period_s``: how long without an active violation
    before the mode steps down once (None: never steps down by itself)."""

    alert_cooldown_s: float
    health_check_interval_s: float
    calm_period_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("alert_cooldown_s", "health_check_interval_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ModePolicy.{name}: must be a finite number > 0, got {value!r}")
        calm = self.calm_period_s
        if calm is not None and (isinstance(calm, bool) or not isinstance(calm, (int, float)) or not math.isfinite(calm) or calm <= 0):
            raise ValueError(f"ModePolicy.calm_period_s: must be a finite number > 0 or None, got {calm!r}")


POLICIES: dict[MonitoringMode, ModePolicy] = {
    MonitoringMode.NORMAL: ModePolicy(alert_cooldown_s=300.0, health_check_interval_s=60.0),
    MonitoringMode.HIGH_ALERT: ModePolicy(alert_cooldown_s=60.0, health_check_interval_s=30.0, calm_period_s=600.0),
    MonitoringMode.EMERGENCY: ModePolicy(alert_cooldown_s=30.0, health_check_interval_s=15.0, calm_period_s=300.0),
    MonitoringMode.MAINTENANCE: ModePolicy(alert_cooldown_s=900.0, health_check_interval_s=300.0),
}

# One step down after a calm period: EMERGENCY -> HIGH_ALERT -> NORMAL.
STEP_DOWN: dict[MonitoringMode, MonitoringMode] = {
    MonitoringMode.EMERGENCY: MonitoringMode.HIGH_ALERT,
    MonitoringMode.HIGH_ALERT: MonitoringMode.NORMAL,
}


class AlertSeverity(str, Enum):
    """How urgent an alert is. WARNING: an early signal (anomaly, regression) while the SLA may
    still hold; MINOR/MAJOR/CRITICAL follow the violation's severity."""

    WARNING = "warning"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __str__(self) -> str:
        return self.value


_RANK = {AlertSeverity.WARNING: 0, AlertSeverity.MINOR: 1, AlertSeverity.MAJOR: 2, AlertSeverity.CRITICAL: 3}


class SuppressedReason(str, Enum):
    """Why an alert was recorded but not delivered to the callbacks."""

    MAINTENANCE = "maintenance"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Alert:
    """One alert as delivered (or recorded). ``count``: occurrences of this fingerprint folded into
    it (repeats within the mode's cooldown are counted here instead of delivered again);
    ``first_seen``/``last_seen`` span them.
    ``suppressed_reason`` is None when the callbacks received it."""

    alert_id: int
    fingerprint: str
    episode: str
    name: str
    sla: str | None
    severity: AlertSeverity
    message: str
    escalated: bool
    mode: MonitoringMode
    first_seen: float
    last_seen: float
    count: int = 1
    suppressed_reason: SuppressedReason | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "alert_id": self.alert_id, "fingerprint": self.fingerprint, "episode": self.episode, "name": self.name,
            "sla": self.sla, "severity": self.severity.value, "message": self.message, "escalated": self.escalated,
            "mode": self.mode.value, "first_seen": self.first_seen, "last_seen": self.last_seen, "count": self.count,
            "suppressed_reason": None if self.suppressed_reason is None else self.suppressed_reason.value,
        }


@dataclass(frozen=True)
class ModeChange:
    """One change of monitoring mode: when, from what to what, why and by whom ("auto" for the
    monitor's own escalation and de-escalation, "calendar" for a planned window)."""

    at: float
    old_mode: MonitoringMode
    new_mode: MonitoringMode
    reason: str
    by: str
    until: float | None = None  # a manual MAINTENANCE's planned end


@dataclass(frozen=True)
class MaintenanceWindow:
    """A planned maintenance window [start, end) on the monitor's clock."""

    start: float
    end: float
    reason: str = ""
    by: str = ""

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"MaintenanceWindow.{name}: must be a finite time in seconds, got {value!r}")
        if self.end <= self.start:
            raise ValueError(f"MaintenanceWindow.end: must be after start ({self.start}), got {self.end}")

    def contains(self, now: float) -> bool:
        return self.start <= now < self.end


class MaintenanceCalendar:
    """Planned maintenance windows, shared by the production monitor and self-healing (thread-safe).
    Windows that ended are dropped when read."""

    def __init__(self) -> None:
        self._windows: list[MaintenanceWindow] = []
        self._lock = threading.Lock()
        reset_in_child(self)

    def add(self, window: MaintenanceWindow) -> MaintenanceWindow:
        with self._lock:
            self._windows.append(window)
            self._windows.sort(key=lambda w: w.start)
        return window

    def cancel(self, window: MaintenanceWindow) -> bool:
        with self._lock:
            if window in self._windows:
                self._windows.remove(window)
                return True
            return False

    def active_at(self, now: float) -> MaintenanceWindow | None:
        """The open window at ``now`` (the one ending last if several overlap)."""
        with self._lock:
            self._windows = [w for w in self._windows if w.end > now]
            open_ = [w for w in self._windows if w.contains(now)]
        return max(open_, key=lambda w: w.end) if open_ else None

    def upcoming(self, now: float) -> list[MaintenanceWindow]:
        with self._lock:
            return [w for w in self._windows if w.end > now]

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()


__all__ = [
    "POLICIES", "STEP_DOWN", "Alert", "AlertSeverity", "MaintenanceCalendar", "MaintenanceWindow", "ModeChange", "ModePolicy",
    "MonitoringMode", "SuppressedReason",
]
