"""SLA data: thresholds, statistics, severities, violations and per-SLA status (no behaviour here)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from aphrodite_sla.sla.regression import RegressionResult


class Direction(str, Enum):
    """Which side of the target is bad: UPPER for latencies, error rates and utilisation (the value
    must stay at or below the bound), LOWER for throughput and convergence (at or above)."""

    UPPER = "upper"
    LOWER = "lower"


class Statistic(str, Enum):
    """What a threshold reads from its window of raw samples."""

    MEAN = "mean"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    P999 = "p999"
    MIN = "min"
    MAX = "max"
    RATE = "rate"  # sum of the window's values per second (e.g. tokens recorded per step)

    @property
    def quantile(self) -> float | None:
        """The quantile in [0, 1] this statistic selects, or None for mean and rate."""
        return _QUANTILES.get(self)


_QUANTILES = {
    Statistic.P50: 0.5,
    Statistic.P90: 0.9,
    Statistic.P95: 0.95,
    Statistic.P99: 0.99,
    Statistic.P999: 0.999,
    Statistic.MIN: 0.0,
    Statistic.MAX: 1.0,
}


class ViolationSeverity(str, Enum):
    """How far beyond its bound an SLA is: by the ratio observed/bound (bound/observed for lower
    bounds) against the threshold's ``severity_ratios``."""

    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {ViolationSeverity.MINOR: 1, ViolationSeverity.MAJOR: 2, ViolationSeverity.CRITICAL: 3}


def _enum_field(cls: type[Enum], value: object, field_name: str) -> Enum:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(str(m.value) for m in cls)
        raise ValueError(f"SLAThreshold.{field_name}: unknown value {value!r}; expected one of {allowed}") from None


def _finite(value: object, field_name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"SLAThreshold.{field_name}: must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"SLAThreshold.{field_name}: must be {op} {minimum}, got {value!r}")
    return float(value)


# Bounds that keep a configuration slip from exhausting memory: a window of at most 7 days, and a
# ring (two windows at the sample rate) of at most 20 million samples (320 MB).
MAX_WINDOW_MINUTES = 7 * 24 * 60
MAX_RING_SAMPLES = 20_000_000


@dataclass(frozen=True)
class SLAThreshold:
    """One SLA: ``statistic`` of ``source_metric`` over the last ``measurement_window_minutes`` must
    stay within ``target_value`` × (1 ± ``tolerance_percent``/100), on the side ``direction`` says.

    A violation needs the statistic beyond that bound *and* at least
    ``violation_threshold_percent`` of the evaluation points of the window beyond it (sustained).
    ``metric_name`` names the SLA (the seed's names); ``source_metric`` is the recorded series it
    reads (defaults to ``metric_name``). A violation resolves once the statistic has been back
    inside the bound by ``resolve_margin_percent`` for ``resolve_after_s`` (hysteresis). Invalid
    values raise ``ValueError`` naming the field.
    """

    metric_name: str
    target_value: float
    tolerance_percent: float
    measurement_window_minutes: float = 5.0
    violation_threshold_percent: float = 80.0
    enabled: bool = True
    direction: Direction = Direction.UPPER
    statistic: Statistic = Statistic.MEAN
    source_metric: str | None = None
    description: str = ""
    unit: str = ""
    severity_ratios: tuple[float, float] = (1.2, 1.5)
    min_samples: int = 10
    min_evaluation_points: int = 3
    objective_percent: float | None = None
    sample_rate_hz: float = 10.0
    resolve_margin_percent: float = 5.0
    resolve_after_s: float = 60.0
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):  # a string "false" would be truthy
            raise ValueError(f"SLAThreshold.enabled: must be true or false, got {self.enabled!r}")
        if not isinstance(self.metric_name, str) or not self.metric_name.strip():
            raise ValueError(f"SLAThreshold.metric_name: must be a non-empty string, got {self.metric_name!r}")
        set_ = object.__setattr__
        set_(self, "direction", _enum_field(Direction, self.direction, "direction"))
        set_(self, "statistic", _enum_field(Statistic, self.statistic, "statistic"))
        set_(self, "target_value", _finite(self.target_value, "target_value"))
        set_(self, "tolerance_percent", _finite(self.tolerance_percent, "tolerance_percent", minimum=0.0))
        set_(
            self,
            "measurement_window_minutes",
            _finite(self.measurement_window_minutes, "measurement_window_minutes", minimum=0.0, strict=True),
        )
        vtp = _finite(self.violation_threshold_percent, "violation_threshold_percent", minimum=0.0)
        if vtp > 100.0:
            raise ValueError(f"SLAThreshold.violation_threshold_percent: must be <= 100, got {vtp!r}")
        set_(self, "violation_threshold_percent", vtp)
        set_(self, "sample_rate_hz", _finite(self.sample_rate_hz, "sample_rate_hz", minimum=0.0, strict=True))
        if self.measurement_window_minutes > MAX_WINDOW_MINUTES:
            raise ValueError(
                f"SLAThreshold.measurement_window_minutes: must be <= {MAX_WINDOW_MINUTES} (7 days), got {self.measurement_window_minutes!r}"
            )
        samples = 2 * self.window_seconds * self.sample_rate_hz
        if samples > MAX_RING_SAMPLES:
            raise ValueError(
                f"SLAThreshold.sample_rate_hz: {self.sample_rate_hz:g} Hz over two {self.measurement_window_minutes:g}-minute "
                f"windows is {samples:,.0f} samples; at most {MAX_RING_SAMPLES:,} (lower the rate or the window)"
            )
        if self.direction is Direction.LOWER and self.tolerance_percent >= 100.0:
            raise ValueError(
                "SLAThreshold.tolerance_percent: must be < 100 for a lower-bound SLA "
                f"(the bound would be <= 0), got {self.tolerance_percent!r}"
            )
        ratios = self.severity_ratios
        if (
            not isinstance(ratios, (tuple, list))
            or len(ratios) != 2
            or not all(isinstance(r, (int, float)) and math.isfinite(r) for r in ratios)
            or not 1.0 <= ratios[0] <= ratios[1]
        ):
            raise ValueError(
                f"SLAThreshold.severity_ratios: must be (major, critical) with 1 <= major <= critical, got {ratios!r}"
            )
        set_(self, "severity_ratios", (float(ratios[0]), float(ratios[1])))
        for name in ("min_samples", "min_evaluation_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SLAThreshold.{name}: must be an integer >= 1, got {value!r}")
        if self.objective_percent is not None:
            obj = _finite(self.objective_percent, "objective_percent", minimum=0.0, strict=True)
            if obj >= 100.0:
                raise ValueError(f"SLAThreshold.objective_percent: must be < 100, got {obj!r}")
            set_(self, "objective_percent", obj)
        set_(self, "resolve_margin_percent", _finite(self.resolve_margin_percent, "resolve_margin_percent", minimum=0.0))
        if self.resolve_margin_percent >= 100.0:
            raise ValueError(f"SLAThreshold.resolve_margin_percent: must be < 100, got {self.resolve_margin_percent!r}")
        set_(self, "resolve_after_s", _finite(self.resolve_after_s, "resolve_after_s", minimum=0.0))
        if self.source_metric is not None and (not isinstance(self.source_metric, str) or not self.source_metric):
            raise ValueError(f"SLAThreshold.source_metric: must be a non-empty string or None, got {self.source_metric!r}")

    @property
    def source(self) -> str:
        """The recorded series this SLA reads."""
        return self.source_metric or self.metric_name

    @property
    def objective(self) -> float | None:
        """Fraction of samples that must be within the bound (the SLO behind the SLA), for error
        budgets and burn rates: ``objective_percent`` if set, else the quantile of a pXX statistic
        (p95: 95% of requests within the bound), else None (gauges have no error budget)."""
        if self.objective_percent is not None:
            return self.objective_percent / 100.0
        q = self.statistic.quantile
        return q if q is not None and 0.0 < q < 1.0 else None

    @property
    def window_seconds(self) -> float:
        return self.measurement_window_minutes * 60.0

    @property
    def bound(self) -> float:
        """The value beyond which the SLA is breached: target × (1 ± tolerance)."""
        factor = self.tolerance_percent / 100.0
        if self.direction is Direction.UPPER:
            return self.target_value * (1.0 + factor)
        return self.target_value * (1.0 - factor)

    def is_sustained(self, beyond: int, points: int, watched_s: float, interval_s: float) -> bool:
        """The seed's sustained rule: at least ``min_evaluation_points`` judged points in the window,
        ``violation_threshold_percent`` of them beyond the bound. Before the monitor has watched a
        whole window (``watched_s``), the points it has not seen yet count as not beyond: a violation
        is sustained once it has held for that share of a window, so the first 25 s after a start
        (four points, all beyond: an empty engine's low throughput) are not 80% of a 5-minute
        window. The fast page rules cover severe faults in that time."""
        if points < self.min_evaluation_points:  # (at least 1: validated)
            return False
        if watched_s < self.window_seconds and interval_s > 0:
            points = max(points, int(self.window_seconds / interval_s))
        return 100.0 * beyond / points >= self.violation_threshold_percent

    def is_beyond(self, value: float) -> bool:
        if self.direction is Direction.UPPER:
            return value > self.bound
        return value < self.bound

    @property
    def recovery_bound(self) -> float:
        """Where a violated SLA counts as recovered: ``resolve_margin_percent`` of the bound inside
        it (hysteresis, so a statistic sitting at its bound does not raise and resolve in turn)."""
        margin = abs(self.bound) * self.resolve_margin_percent / 100.0
        return self.bound - margin if self.direction is Direction.UPPER else self.bound + margin

    def is_recovered(self, value: float) -> bool:
        if self.direction is Direction.UPPER:
            return value <= self.recovery_bound
        return value >= self.recovery_bound

    def severity(self, value: float) -> ViolationSeverity:
        """MINOR below the first severity ratio, CRITICAL at or past the second."""
        bound = self.bound
        if self.direction is Direction.UPPER:
            ratio = value / bound if bound > 0 else math.inf
        else:
            ratio = bound / value if value > 0 else math.inf
        major, critical = self.severity_ratios
        if ratio >= critical:
            return ViolationSeverity.CRITICAL
        if ratio >= major:
            return ViolationSeverity.MAJOR
        return ViolationSeverity.MINOR


class ViolationRule(str, Enum):
    """Which rule raised a violation: the seed's sustained rule over the window's evaluation
    points, the engine stall detector, or a fast page rule (``sla.pages``)."""

    SUSTAINED = "sustained"
    STALL = "stall"
    SEVERE_BREACH = "severe_breach"  # the statistic far beyond its bound over a short window
    BURN_RATE_PAGE = "burn_rate_page"  # error budget burning fast over a long and a short window
    BURN_RATE_TICKET = "burn_rate_ticket"  # the same, slower: a ticket, not a page


@dataclass(frozen=True)
class SLAViolation:
    """One violation episode of one SLA as of its latest evaluation: ``severity`` is the current
    one, ``peak_severity`` the highest since it was raised (what escalation follows)."""

    metric_name: str
    source_metric: str
    statistic: Statistic
    direction: Direction
    observed_value: float
    bound: float
    target_value: float
    severity: ViolationSeverity
    window_seconds: float
    first_breach_time: float
    detected_at: float
    sustained_ratio: float
    evaluation_points: int
    sample_count: int
    anomaly_score: float | None = None
    zscore: float | None = None
    peak_severity: ViolationSeverity | None = None
    rule: ViolationRule = ViolationRule.SUSTAINED
    detail: str = ""  # what a page rule saw, in words (its figures are not the SLA's statistic)

    @property
    def worst_severity(self) -> ViolationSeverity:
        """The peak severity of the episode (the current one if no peak was recorded)."""
        return self.peak_severity if self.peak_severity is not None else self.severity

    @property
    def message(self) -> str:
        if self.rule is ViolationRule.STALL:
            return (
                f"{self.metric_name}: no engine progress for {self.observed_value:.0f}s with requests in flight "
                f"(stall after {self.bound:.0f}s) [{self.severity.value}]"
            )
        if self.detail:
            return f"{self.metric_name}: {self.detail} [{self.severity.value}]"
        side = ">" if self.direction is Direction.UPPER else "<"
        return (
            f"{self.metric_name}: {self.statistic.value} = {self.observed_value:.4g} {side} bound "
            f"{self.bound:.4g} (target {self.target_value:.4g}) over {self.window_seconds:.0f}s, "
            f"beyond at {self.sustained_ratio:.0%} of {self.evaluation_points} evaluation points "
            f"[{self.severity.value}]"
        )


class SLAStatus(NamedTuple):
    """The latest evaluation of one SLA, for exporters, summaries and health endpoints.

    A NamedTuple rather than a frozen dataclass: one is built per SLA at every evaluation, and a
    tuple is built several times faster (immutable all the same; ``_replace`` makes a changed copy)."""

    metric_name: str
    statistic: Statistic
    value: float | None
    bound: float
    breached: bool
    violated: bool
    severity: ViolationSeverity | None
    sample_count: int
    evaluation_points: int
    sustained_ratio: float
    compliance_percent: float | None
    anomaly_score: float | None
    zscore: float | None
    evaluated_at: float
    regression: RegressionResult | None = None
