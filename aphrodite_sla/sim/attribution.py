"""Which injected fault explains which signal: the ground-truth scoring shared by ``simulate`` (the
engine simulator) and ``demo`` (the synthetic stream).

A signal belongs to a fault when it is on one of the SLAs the fault is expected to trip and falls
between the fault's injection and its end plus the SLA's window (the statistic lags the recovery
edge by up to one window). A signal no fault explains is a false alarm.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aphrodite_sla.events import (
    AnomalyDetected,
    MonitorEvent,
    PageRaised,
    PageResolved,
    RegressionDetected,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
)

VIOLATION = "violation"
ESCALATION = "escalation"
ANOMALY = "anomaly"
REGRESSION = "regression"
RESOLVED = "resolved"
PAGE = "page"  # a fast page rule or the stall detector (``PageRaised``)
PAGE_RESOLVED = "page_resolved"


@dataclass(frozen=True)
class Signal:
    """Something the monitor raised, at ``at_s`` seconds of engine time since the start."""

    kind: str
    sla: str
    at_s: float
    detail: str
    severity: str | None = None
    rule: str = ""  # which rule raised a violation or page (``ViolationRule``)


def signal_of(event: MonitorEvent, start: float) -> Signal | None:
    """The signal an event stands for (None for events that are not signals)."""
    at = event.occurred_at - start
    if isinstance(event, PageRaised):
        v = event.violation
        return Signal(PAGE, v.metric_name, at, v.message, v.severity.value, event.rule)
    if isinstance(event, PageResolved):
        return Signal(PAGE_RESOLVED, event.sla, at, f"page resolved after {event.duration_s:.0f}s", rule=event.rule)
    if isinstance(event, ViolationRaised):
        v = event.violation
        return Signal(VIOLATION, v.metric_name, at, v.message, v.severity.value)
    if isinstance(event, ViolationEscalated):
        v = event.violation
        return Signal(ESCALATION, v.metric_name, at, v.message, v.worst_severity.value)
    if isinstance(event, ViolationResolved):
        return Signal(RESOLVED, event.sla, at, f"resolved after {event.duration_s:.0f}s")
    if isinstance(event, AnomalyDetected):
        st = event.status
        return Signal(ANOMALY, st.metric_name, at, f"anomaly score {event.score:.2f} ({event.kind or 'change'})")
    if isinstance(event, RegressionDetected):
        return Signal(REGRESSION, event.sla, at, event.result.message)
    return None


@dataclass(frozen=True)
class InjectedFault:
    """A fault with its ground truth: when, and which SLAs it should trip."""

    name: str
    description: str
    start_s: float
    end_s: float | None  # None: lasts to the end of the run
    slas: tuple[str, ...]

    def explains(self, signal: Signal, window_s: float) -> bool:
        end = self.end_s if self.end_s is not None else math.inf
        return signal.sla in self.slas and self.start_s <= signal.at_s <= end + window_s


@dataclass
class FaultReport:
    """The signals a fault explains, in order."""

    fault: InjectedFault
    signals: list[Signal] = field(default_factory=list)

    def first(self, *kinds: str) -> Signal | None:
        return next((s for s in self.signals if not kinds or s.kind in kinds), None)

    @property
    def first_signal(self) -> Signal | None:
        """The first warning or violation (resolutions are not detections)."""
        return self.first(VIOLATION, PAGE, ANOMALY, REGRESSION, ESCALATION)

    @property
    def first_violation(self) -> Signal | None:
        """The first violation of the seed's sustained rule."""
        return self.first(VIOLATION)

    @property
    def first_page(self) -> Signal | None:
        """The first page: a fast page rule (severity critical) or a stall; tickets are not pages."""
        return next((s for s in self.signals if s.kind == PAGE and s.severity == "critical"), None)

    @property
    def detected(self) -> bool:
        return self.first_signal is not None

    @property
    def mttd_s(self) -> float | None:
        first = self.first_signal
        return None if first is None else first.at_s - self.fault.start_s


@dataclass
class Attribution:
    reports: list[FaultReport]
    unexplained: list[Signal]  # raised while no injected fault explains them: false alarms


def attribute(signals: Iterable[Signal], faults: Iterable[InjectedFault], window_of: Callable[[str], float]) -> Attribution:
    """Give each signal to every fault that explains it; the rest are unexplained."""
    reports = [FaultReport(f) for f in faults]
    unexplained = []
    for sig in signals:
        owners = [r for r in reports if r.fault.explains(sig, window_of(sig.sla))]
        for r in owners:
            r.signals.append(sig)
        if not owners and sig.kind not in (RESOLVED, PAGE_RESOLVED):
            unexplained.append(sig)
    return Attribution(reports, unexplained)


def time_to_recover(report: FaultReport, signals: Iterable[Signal]) -> float | None:
    """MTTR of a fault: from its injection to the resolution of the last violation or page episode
    it explains, or of a violation of one of its SLAs already open when it was injected (a
    resolution may come after the fault's attribution window, so every signal is searched). None
    when there is no such violation, or one was still active when the run ended."""
    ordered = sorted(signals, key=lambda s: s.at_s)
    end: float | None = None
    start = report.fault.start_s

    def ends(r: Signal, s: Signal) -> bool:  # a violation ends by its resolution, a page by its own
        if s.kind == PAGE:
            return r.kind == PAGE_RESOLVED and r.sla == s.sla and r.rule == s.rule
        return r.kind == RESOLVED and r.sla == s.sla

    # a violation of one of its SLAs already open when it was injected lasts for it too
    def counts(s: Signal) -> bool:  # violations and pages; a ticket's long windows outlast the fault by design
        return s.kind == VIOLATION or (s.kind == PAGE and s.severity == "critical")

    open_at_start = [s for s in ordered if counts(s) and s.sla in report.fault.slas and s.at_s < start
                     and not any(ends(r, s) and s.at_s <= r.at_s < start for r in ordered)]
    for violation in [*open_at_start, *(s for s in report.signals if counts(s))]:
        resolved = next((s for s in ordered if ends(s, violation) and s.at_s >= violation.at_s), None)
        if resolved is None:
            return None
        end = resolved.at_s if end is None else max(end, resolved.at_s)
    return None if end is None else end - report.fault.start_s
