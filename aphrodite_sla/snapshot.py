"""The monitor's published state: an immutable ``MonitorSnapshot`` (data only, no behaviour).

Why one immutable value: every reader (the Prometheus collector at scrape time, the health and
summary endpoints inside the engine's app, the multiprocess mirror, later the REST API, CLI and
console) reads the latest snapshot by reference. It takes no lock against the evaluator, runs no
kernel and computes nothing, so a scrape can never slow the engine's event loop or see half of an
evaluation. The evaluator publishes a new snapshot after each evaluation; the stall detector
replaces only its own part (``stall``) once a second (see ``snapshot_board``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple

from aphrodite_sla.sla.threshold import SLAStatus, SLAThreshold, SLAViolation

_EMPTY: Mapping = MappingProxyType({})


def _empty() -> Mapping:
    return _EMPTY


# -- engine stall ------------------------------------------------------------------------------------
class StallState(str, Enum):
    OK = "ok"
    STALLED = "stalled"


class StallReason(str, Enum):
    NO_TOKENS = "no_tokens"  # steps (maybe) continue, but no token is processed
    NO_STEPS = "no_steps"  # the engine stopped reporting steps altogether


@dataclass(frozen=True)
class StallStatus:
    """The stall detector's view after a check (for health endpoints and RCA)."""

    state: StallState
    reason: StallReason | None
    checked_at: float
    seconds_without_progress: float
    stalled_since: float | None
    last_record_at: float | None
    last_progress_at: float | None
    running_requests: int
    in_flight_requests: int
    stalls_total: int
    dropped_inputs: int

    @property
    def stalled(self) -> bool:
        return self.state is StallState.STALLED


# -- windows and error budgets ---------------------------------------------------------------------
class WindowStatistics(NamedTuple):
    """Exact statistics of one watched series over its window, as of one evaluation (computed by
    the evaluator's selection pass, so exporters only read them). Built per window at every
    evaluation: a NamedTuple is cheaper to build than a frozen dataclass, and as immutable."""

    series: str
    window_s: float
    evaluated_at: float
    samples: int
    quantiles: Mapping[float, float]
    mean: float
    rate: float  # sum of the window's values per second


class ErrorBudget(NamedTuple):
    """Samples of one SLA classified against its bound since start, and its burn rates (built per
    SLA at every evaluation: a NamedTuple, like ``WindowStatistics``)."""

    sla: str
    objective: float
    good: int
    bad: int
    burn_rates: Mapping[str, float | None]  # window label ("5m") -> bad fraction / (1 - objective)


# -- the monitor's own health ------------------------------------------------------------------------
@dataclass(frozen=True)
class DurationHistogram:
    """Cumulative counts of evaluation durations (Prometheus histogram semantics)."""

    buckets: tuple[tuple[float, int], ...]  # (upper bound in seconds, cumulative count), +Inf last
    total_s: float
    count: int


@dataclass(frozen=True)
class MonitorHealth:
    """How the monitor itself is doing: a monitor that cannot evaluate must say so."""

    evaluator_running: bool
    evaluations: int
    last_evaluation_at: float | None
    last_duration_s: float
    max_duration_s: float
    durations: DurationHistogram
    errors: Mapping[str, int]  # component -> failures since start (see self_metrics.Component)
    last_error: str | None
    dropped_events: Mapping[str, int]  # subscriber -> events dropped because its queue was full
    dropped_samples: Mapping[tuple[str, str], int]  # (series, reason) -> samples refused by the store
    store_bytes: int
    evaluation_failing: bool = False  # the latest evaluation attempt raised (``last_error`` says why)
    thinned_samples: Mapping[str, int] = field(default_factory=_empty)  # series -> arrivals not kept (store.thinning)

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())


EMPTY_HEALTH = MonitorHealth(
    evaluator_running=False, evaluations=0, last_evaluation_at=None, last_duration_s=0.0, max_duration_s=0.0,
    durations=DurationHistogram((), 0.0, 0), errors=_EMPTY, last_error=None, dropped_events=_EMPTY,
    dropped_samples=_EMPTY, store_bytes=0,
)


# -- the snapshot ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonitorSnapshot:
    """Everything a reader may show, as of evaluation number ``sequence``."""

    sequence: int
    evaluated_at: float | None
    thresholds: Mapping[str, SLAThreshold] = field(default_factory=_empty)
    statuses: Mapping[str, SLAStatus] = field(default_factory=_empty)
    violations: tuple[SLAViolation, ...] = ()  # active SLA violations
    windows: Mapping[tuple[str, float], WindowStatistics] = field(default_factory=_empty)
    coverage: Mapping[tuple[str, float], float] = field(default_factory=_empty)  # (series, window s) -> share held
    budgets: Mapping[str, ErrorBudget] = field(default_factory=_empty)
    violation_counts: Mapping[tuple[str, str], int] = field(default_factory=_empty)  # (sla, severity) -> raised or escalated
    breach_counts: Mapping[str, int] = field(default_factory=_empty)  # sla -> evaluation points beyond the bound
    health: MonitorHealth = field(default=EMPTY_HEALTH)
    stall: StallStatus | None = None
    stall_violation: SLAViolation | None = None  # set while the engine is stalled
    pages: tuple[SLAViolation, ...] = ()  # active fast pages and tickets (``sla.pages``)
    page_counts: Mapping[tuple[str, str], int] = field(default_factory=_empty)  # (sla, rule) -> pages raised
    page_states: Mapping[tuple[str, str], bool] = field(default_factory=_empty)  # (sla, rule) -> active

    @property
    def active_violations(self) -> tuple[SLAViolation, ...]:
        """Every active violation: sustained ones, fast pages and the engine stall."""
        if self.stall_violation is None and not self.pages:
            return self.violations
        stall = () if self.stall_violation is None else (self.stall_violation,)
        return (*self.violations, *self.pages, *stall)

    @property
    def engine_stalled(self) -> bool:
        return self.stall is not None and self.stall.stalled

    def window(self, series: str, window_s: float) -> WindowStatistics | None:
        return self.windows.get((series, float(window_s)))


EMPTY_SNAPSHOT = MonitorSnapshot(sequence=0, evaluated_at=None)


def frozen(mapping: dict) -> Mapping:
    """A read-only view of a fresh dict (the snapshot's mappings are never mutated after publish)."""
    return MappingProxyType(mapping)
