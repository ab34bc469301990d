"""The violation lifecycle of one SLA as explicit states (in the style of pybreaker's state classes).

::

    INACTIVE --breached--> PENDING --sustained--> FIRING --recovered--> RESOLVING --held--> INACTIVE
                              |                    ^   \\__breached, new peak: escalate     |
                              +--not breached--> INACTIVE  \\___breached / not recovered______/

* PENDING: the statistic is beyond its bound but not yet sustained (the seed's rule: beyond at
  ``violation_threshold_percent`` of at least ``min_evaluation_points`` points of the window).
* FIRING: one violation episode. ``ViolationRaised`` on entry; ``ViolationEscalated`` only when
  the severity rises past the episode's peak, so a severity that steps down and up again does not
  page again.
* RESOLVING: recovered — inside the bound by ``resolve_margin_percent`` (or no data to judge) —
  and waiting for ``resolve_after_s`` of it (hysteresis). A breach returns to FIRING in the same
  episode, with no new event; so does a point inside the bound but not past the recovery margin.
  Held long enough, ``ViolationResolved`` ends the episode.

Why explicit states: the lifecycle was implicit in flags and branches, and two bugs hid there
(re-raising on every severity step, resolving on one in-bound point). Each transition now has one
place, and the hypothesis state-machine test checks the event grammar.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from aphrodite_sla.events import (
    VIOLATION_ALERT,
    MonitorEvent,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
    episode_id,
    fingerprint,
)
from aphrodite_sla.sla.threshold import SLAViolation, ViolationSeverity


class LifecycleState(str, Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVING = "resolving"


@dataclass(frozen=True)
class EvaluationPoint:
    """What one evaluation says about one SLA. ``severity`` is set when ``breached``."""

    at: float
    breached: bool  # the statistic is beyond the bound
    recovered: bool  # inside the recovery bound, or not enough data to judge
    sustained: bool  # the seed's sustained rule holds (implies breached)
    severity: ViolationSeverity | None = None


# Builds the episode's violation for a point: (first_breach_time, raised_at, current severity, peak).
ViolationFactory = Callable[[float, float, ViolationSeverity, ViolationSeverity], SLAViolation]


class _State:
    name: LifecycleState

    def on_point(self, lc: ViolationLifecycle, p: EvaluationPoint) -> None:
        raise NotImplementedError


class _Inactive(_State):
    name = LifecycleState.INACTIVE

    def on_point(self, lc: ViolationLifecycle, p: EvaluationPoint) -> None:
        if p.breached:
            lc._first_breach = p.at
            lc._enter(PENDING)
            PENDING.on_point(lc, p)


class _Pending(_State):
    name = LifecycleState.PENDING

    def on_point(self, lc: ViolationLifecycle, p: EvaluationPoint) -> None:
        if not p.breached:
            lc._first_breach = None
            lc._enter(INACTIVE)
        elif p.sustained:
            lc._raise(p)


class _Firing(_State):
    name = LifecycleState.FIRING

    def on_point(self, lc: ViolationLifecycle, p: EvaluationPoint) -> None:
        if p.breached:
            lc._update(p)
        elif p.recovered:
            lc._recovered_since = p.at
            lc._enter(RESOLVING)
            RESOLVING.on_point(lc, p)


class _Resolving(_State):
    name = LifecycleState.RESOLVING

    def on_point(self, lc: ViolationLifecycle, p: EvaluationPoint) -> None:
        if not p.recovered:  # breached again, or back near the bound: the same episode goes on
            lc._recovered_since = None
            lc._enter(FIRING)
            if p.breached:
                lc._update(p)
        elif lc._recovered_since is not None and p.at - lc._recovered_since >= lc.resolve_after_s:
            lc._resolve(p.at)


INACTIVE, PENDING, FIRING, RESOLVING = _Inactive(), _Pending(), _Firing(), _Resolving()


class ViolationLifecycle:
    """One SLA's episodes. ``observe`` moves the state and returns the events of the transition;
    ``violation`` is the episode's current violation (None when INACTIVE or PENDING)."""

    def __init__(
        self, sla: str, resolve_after_s: float, build: ViolationFactory, *, alert_fingerprint: str | None = None,
        raised: type[ViolationRaised] = ViolationRaised, resolved: type[ViolationResolved] = ViolationResolved,
    ) -> None:
        """``alert_fingerprint``/``raised``/``resolved``: a page rule's episodes use the same states
        with their own identity and event classes (``sla.pages``)."""
        self.sla = sla
        self.resolve_after_s = float(resolve_after_s)
        self.build = build
        self.fingerprint = alert_fingerprint or fingerprint(VIOLATION_ALERT, sla=sla)
        self._raised_event = raised
        self._resolved_event = resolved
        self._state: _State = INACTIVE
        self._first_breach: float | None = None
        self._raised_at: float | None = None
        self._recovered_since: float | None = None
        self._peak: ViolationSeverity | None = None
        self._violation: SLAViolation | None = None
        self._events: list[MonitorEvent] = []

    @property
    def state(self) -> LifecycleState:
        return self._state.name

    @property
    def violation(self) -> SLAViolation | None:
        return self._violation

    @property
    def episode(self) -> str | None:
        return None if self._first_breach is None or self._violation is None else episode_id(self.fingerprint, self._first_breach)

    def observe(self, point: EvaluationPoint) -> list[MonitorEvent]:
        self._events = []
        self._state.on_point(self, point)
        return self._events

    # -- transitions (called by the states) ------------------------------------------------------
    def _enter(self, state: _State) -> None:
        self._state = state

    def _raise(self, p: EvaluationPoint) -> None:
        severity = p.severity or ViolationSeverity.MINOR
        first = self._first_breach if self._first_breach is not None else p.at
        self._first_breach, self._raised_at, self._peak = first, p.at, severity
        self._violation = self.build(first, p.at, severity, severity)
        self._enter(FIRING)
        self._events.append(self._raised_event(self.fingerprint, episode_id(self.fingerprint, first), p.at, self._violation))

    def _update(self, p: EvaluationPoint) -> None:
        assert self._first_breach is not None and self._raised_at is not None and self._peak is not None
        severity = p.severity or ViolationSeverity.MINOR
        previous = self._peak
        if severity.rank > previous.rank:
            self._peak = severity
        self._violation = self.build(self._first_breach, self._raised_at, severity, self._peak)
        if self._peak is not previous:
            self._events.append(ViolationEscalated(
                self.fingerprint, episode_id(self.fingerprint, self._first_breach), p.at, self._violation, previous
            ))

    def _resolve(self, at: float) -> None:
        assert self._first_breach is not None and self._violation is not None
        self._events.append(self._resolved_event(
            self.fingerprint, episode_id(self.fingerprint, self._first_breach), at, self._violation, self._first_breach
        ))
        self._first_breach = self._raised_at = self._recovered_since = self._peak = None
        self._violation = None
        self._enter(INACTIVE)
