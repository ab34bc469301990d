"""What an analysis returns (data only; ``report`` renders it, ``engine`` computes it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RootCause:
    cause: str
    category: str
    metric: str
    description: str
    confidence: float
    score: float
    evidence_for: tuple[str, ...] = ()
    evidence_against: tuple[str, ...] = ()


@dataclass(frozen=True)
class Correlation:
    metric: str
    pearson: float
    pearson_p: float
    spearman: float
    spearman_p: float
    p_adjusted: float  # Benjamini-Hochberg over every metric tested
    significant: bool


@dataclass(frozen=True)
class LeadingIndicator:
    metric: str
    lead_s: float  # how long before the violated SLI this metric moved
    first_moved_at: float


@dataclass(frozen=True)
class Recommendation:
    action: str
    reason: str
    cause: str


@dataclass
class RCAAnalysis:
    sla: str
    analyzed_at: float
    onset_at: float
    detected_at: float
    primary_root_cause: RootCause
    alternatives: list[RootCause] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)
    leading_indicators: list[LeadingIndicator] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    insufficient_reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    fingerprint: str = ""
    episode: str = ""

    @property
    def insufficient_evidence(self) -> bool:
        return bool(self.insufficient_reasons)

    def ranked_causes(self) -> list[str]:
        return [c.cause for c in [self.primary_root_cause, *self.alternatives]]

    def ranked_metrics(self) -> list[str]:
        return [c.metric for c in [self.primary_root_cause, *self.alternatives]]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["insufficient_evidence"] = self.insufficient_evidence
        return out
