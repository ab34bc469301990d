"""What the RCA service has done, as one immutable view for the Prometheus collector and the API.

Why a view: a scrape must not take the service's lock or compute anything (the same rule as the
recovery view); the service rebuilds this after each analysis, off the engine's loop."""
from __future__ import annotations

from dataclasses import dataclass, field

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class RCAMetricsView:
    analyses: dict[tuple[str, str], int] = field(default_factory=dict)  # (cause, category) -> count
    duration_buckets: tuple[tuple[float, int], ...] = ()  # cumulative, +Inf last
    duration_sum_s: float = 0.0
    confidence_buckets: tuple[tuple[float, int], ...] = ()
    confidence_sum: float = 0.0
    correlations_found: int = 0  # significant correlations in the latest analysis
    correlations_found_total: int = 0
    recommendations: dict[str, int] = field(default_factory=dict)  # action -> count
    last_confidence: float = 0.0


def cumulative(values: list[float], bounds: tuple[float, ...]) -> tuple[tuple[float, int], ...]:
    out = [(b, sum(1 for v in values if v <= b)) for b in bounds]
    out.append((float("inf"), len(values)))
    return tuple(out)
