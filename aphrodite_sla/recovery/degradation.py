"""Graceful degradation: levels of engine-side measures (cap max_tokens, reject very long prompts and
low-priority requests, shed a fraction, limit concurrency or rate), activated by a violation's
severity or by hand, reverted when healthy, every change recorded and published.

Why as admission limits: every measure is enforced by the ASGI middleware before a request reaches
the engine, so degrading costs the engine nothing and reverting is immediate. Degradation sets its
measures under its own admission source (``"degradation"``): the admission controller enforces the
stricter of each source's limits, so when recovery also sheds (``LOAD_BALANCER_ADJUST``) the larger
fraction wins, recovery reopening leaves degradation's measures in place, and reverting degradation
leaves recovery's shedding in place.

Default measures (``DegradationLevels``; each level is an ``AdmissionLimits``, configurable). They
escalate; priority follows vLLM/Aphrodite (lower is served first, default 0):

==========  ==========  ==============  =================  =====  ===========  ===========
level       max_tokens  prompt limit    shed priority       shed   concurrency  Retry-After
==========  ==========  ==============  =================  =====  ===========  ===========
minimal     2048        —               above 10            —      —            5 s
moderate    1024        16 384 tokens   above 0             —      —            10 s
severe      512         8 192 tokens    above 0             25%    —            15 s
emergency   256         4 096 tokens    above 0             50%    64           30 s
==========  ==========  ==============  =================  =====  ===========  ===========
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from aphrodite_sla.events import DEGRADATION_ALERT, DegradationChanged, episode_id, fingerprint
from aphrodite_sla.integrations.admission import AdmissionController, AdmissionLimits
from aphrodite_sla.sla.threshold import ViolationSeverity

logger = logging.getLogger(__name__)

ADMISSION_SOURCE = "degradation"  # the admission source degradation's measures are set under
DEFAULT_HISTORY = 256
AUTO = "auto"


class DegradationLevel(str, Enum):
    """How far the server degrades; ``rank`` (0–4) orders them and feeds a gauge."""

    NONE = "none"
    MINIMAL = "minimal"
    MODERATE = "moderate"
    SEVERE = "severe"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __str__(self) -> str:
        return self.value


_RANK = {level: i for i, level in enumerate(DegradationLevel)}

# A violation's severity -> the level it calls for (emergency is only ever set by hand).
SEVERITY_LEVEL = {
    ViolationSeverity.MINOR: DegradationLevel.MINIMAL,
    ViolationSeverity.MAJOR: DegradationLevel.MODERATE,
    ViolationSeverity.CRITICAL: DegradationLevel.SEVERE,
}


# The default measures (the table in the module docstring).
DEFAULT_MINIMAL = AdmissionLimits(max_tokens_cap=2048, max_priority=10, retry_after_s=5.0)
DEFAULT_MODERATE = AdmissionLimits(max_tokens_cap=1024, max_prompt_tokens=16_384, max_priority=0, retry_after_s=10.0)
DEFAULT_SEVERE = AdmissionLimits(max_tokens_cap=512, max_prompt_tokens=8192, max_priority=0, shed_fraction=0.25, retry_after_s=15.0)
DEFAULT_EMERGENCY = AdmissionLimits(
    max_tokens_cap=256, max_prompt_tokens=4096, max_priority=0, shed_fraction=0.5, concurrency_limit=64, retry_after_s=30.0
)


@dataclass(frozen=True)
class DegradationLevels:
    """Each level's measures (see the module docstring for the defaults). A level never closes
    admission: draining a replica is recovery's ``TRAFFIC_ROUTING``, and shows on health."""

    minimal: AdmissionLimits = DEFAULT_MINIMAL
    moderate: AdmissionLimits = DEFAULT_MODERATE
    severe: AdmissionLimits = DEFAULT_SEVERE
    emergency: AdmissionLimits = DEFAULT_EMERGENCY

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, AdmissionLimits):
                raise ValueError(f"DegradationLevels.{f.name} must be AdmissionLimits, got {type(value).__name__}")
            if value.closed:
                raise ValueError(f"DegradationLevels.{f.name}: a degradation level cannot close admission (drain with traffic routing)")
            if value.is_open:
                raise ValueError(f"DegradationLevels.{f.name}: a degradation level needs at least one measure")

    def measures(self, level: DegradationLevel) -> AdmissionLimits:
        """The limits of ``level`` (none for NONE)."""
        level = DegradationLevel(level)
        return AdmissionLimits.none() if level is DegradationLevel.NONE else getattr(self, level.value)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DegradationLevels:
        """From configuration: ``{level: {limit: value, ...}}``; levels left out keep their
        defaults, a level given replaces its defaults whole."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"DegradationLevels: unknown level(s) {unknown}; known: {sorted(known)}")
        given = {k: v if isinstance(v, AdmissionLimits) else AdmissionLimits.from_dict(dict(v)) for k, v in values.items()}
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}


@dataclass(frozen=True)
class DegradationChange:
    """One change of level: when, from, to, why and by whom ("auto" for the monitor itself)."""

    at: float
    old_level: DegradationLevel
    new_level: DegradationLevel
    reason: str
    changed_by: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["old_level"], out["new_level"] = self.old_level.value, self.new_level.value
        return out


class DegradationDisabled(RuntimeError):
    """``activate`` while degradation is disabled."""


class DegradationController:
    """Sets, raises and reverts the degradation level; thread-safe (recovery, the REST API and the
    evaluator's subscribers may call it at once). ``events``: an ``EventStream`` that receives a
    ``DegradationChanged`` per change; one episode runs from leaving NONE to returning to it."""

    def __init__(
        self, admission: AdmissionController, *, events: Any = None, clock: Callable[[], float] = time.time,
        levels: DegradationLevels | Mapping[str, Any] | None = None, history_size: int = DEFAULT_HISTORY,
    ) -> None:
        if not isinstance(admission, AdmissionController):
            raise ValueError(f"DegradationController.admission must be an AdmissionController, got {type(admission).__name__}")
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"DegradationController.history_size must be an integer >= 1, got {history_size!r}")
        self.admission = admission
        self.events = events
        self.clock = clock
        self.levels = levels if isinstance(levels, DegradationLevels) else DegradationLevels.from_dict(levels or {})
        self._lock = threading.RLock()
        self._level = DegradationLevel.NONE
        self._enabled = True
        self._since = clock()
        self._reason = ""
        self._by = ""
        self._episode = ""
        self._history: deque[DegradationChange] = deque(maxlen=history_size)
        self._fingerprint = fingerprint(DEGRADATION_ALERT)

    # -- reading ---------------------------------------------------------------------------------
    @property
    def level(self) -> DegradationLevel:
        return self._level

    @property
    def enabled(self) -> bool:
        return self._enabled

    def measures(self) -> AdmissionLimits:
        """The limits the current level sets (not the admission policy, which may be stricter)."""
        return self.levels.measures(self._level)

    def active(self) -> dict[str, Any]:
        """The measures in force at this level, by limit name (empty at NONE)."""
        return self.measures().active()

    def history(self, limit: int | None = None) -> list[DegradationChange]:
        """The last changes, oldest first (``limit``: at most that many, the newest)."""
        with self._lock:
            items = list(self._history)
        return items if limit is None else items[-limit:] if limit > 0 else []

    def status(self) -> dict[str, Any]:
        """JSON-safe: for the REST API and the console."""
        with self._lock:
            level = self._level
            return {
                "enabled": self._enabled,
                "level": level.value,
                "rank": level.rank,
                "since": self._since,
                "reason": self._reason,
                "changed_by": self._by,
                "episode": self._episode or None,
                "measures": self.levels.measures(level).active(),
                "levels": self.levels.to_dict(),
            }

    # -- changing ----------------------------------------------------------------------------------
    def activate(self, level: DegradationLevel | str, reason: str, by: str = AUTO) -> bool:
        """Set ``level`` (NONE reverts). True if the level changed; raises ``DegradationDisabled``
        while disabled and ``ValueError`` for an unknown level."""
        new = _level(level)
        with self._lock:
            if not self._enabled and new is not DegradationLevel.NONE:
                raise DegradationDisabled(f"graceful degradation is disabled; not activating {new.value} ({reason})")
            return self._change(new, reason, by)

    def activate_for_severity(self, severity: ViolationSeverity | str, reason: str, by: str = AUTO) -> bool:
        """The level a violation of ``severity`` calls for (minor: minimal, major: moderate,
        critical: severe); never lowers a higher level already active. False when disabled."""
        try:
            wanted = SEVERITY_LEVEL[ViolationSeverity(severity)]
        except ValueError:
            raise ValueError(f"DegradationController.activate_for_severity: severity must be one of "
                             f"{[s.value for s in ViolationSeverity]}, got {severity!r}") from None
        with self._lock:
            if not self._enabled or self._level.rank >= wanted.rank:
                return False
            return self._change(wanted, reason, by)

    def revert(self, reason: str, by: str = AUTO) -> bool:
        """Back to NONE (all measures lifted). True if a level was active."""
        with self._lock:
            return self._change(DegradationLevel.NONE, reason, by)

    def enable(self, by: str = "operator") -> None:
        with self._lock:
            if not self._enabled:
                self._enabled = True
                logger.warning("aphrodite-sla degradation: enabled by %s", by)

    def disable(self, reason: str = "", by: str = "operator") -> None:
        """Stop degrading: reverts an active level (recorded) and refuses activation until enabled."""
        _check_by(by)
        with self._lock:
            if self._enabled:
                self._enabled = False
                logger.warning("aphrodite-sla degradation: disabled by %s%s", by, f": {reason}" if reason else "")
            self._change(DegradationLevel.NONE, f"degradation disabled{': ' + reason if reason else ''}", by)

    def _change(self, new: DegradationLevel, reason: str, by: str) -> bool:
        """Under the lock: so the admission policy, the history and the events keep one order."""
        _check_by(by)
        old = self._level
        if new is old:
            return False
        reason = str(reason)
        limits = self.levels.measures(new)
        self.admission.apply(limits, f"degradation {new.value}: {reason}" if reason else f"degradation {new.value}", source=ADMISSION_SOURCE)
        now = self.clock()
        if old is DegradationLevel.NONE:
            self._episode = episode_id(self._fingerprint, now)
        episode = self._episode
        self._level, self._since, self._reason, self._by = new, now, reason, by
        if new is DegradationLevel.NONE:
            self._episode = ""
        self._history.append(DegradationChange(now, old, new, reason, by))
        logger.warning("aphrodite-sla degradation: %s -> %s by %s%s", old.value, new.value, by, f": {reason}" if reason else "")
        if self.events is not None:
            try:
                self.events.publish([DegradationChanged(self._fingerprint, episode, now, old.value, new.value, reason, by)])
            except Exception:
                logger.exception("aphrodite-sla degradation: publishing the change failed")
        return True


def _check_by(by: Any) -> None:
    if not isinstance(by, str) or not by:
        raise ValueError(f"DegradationController: by must be a non-empty string (who changed it), got {by!r}")


def _level(level: DegradationLevel | str) -> DegradationLevel:
    try:
        return DegradationLevel(level)
    except ValueError:
        raise ValueError(f"DegradationController: level must be one of {[lv.value for lv in DegradationLevel]}, got {level!r}") from None


__all__ = [
    "ADMISSION_SOURCE", "SEVERITY_LEVEL", "DegradationChange", "DegradationController", "DegradationDisabled", "DegradationLevel",
    "DegradationLevels",
]
