"""Is a short window's count of bad outcomes evidence that the error rate jumped?

The severe-breach page of an error-rate SLA (a mean of 0/100 outcomes with an error budget) used
to wait for five errors in 60 s. Five is a fixed floor: at 4 requests a second and 5% errors it
takes ~25 s to collect, yet where the service normally fails one request in 20,000, three errors
in a minute are already far beyond chance; where it normally fails one in 300, five are not.

So the evidence is a one-sided binomial test against the service's own healthy rate: with
``n`` outcomes and ``k`` bad ones in the window, how likely is ``k`` or more if each outcome failed
at the baseline rate ``p0``? The baseline is what the error budget tracker counted before the
window (an hour by default), shrunk toward the rate the SLA's objective allows by a prior worth
one bad outcome among ``1 / (1 - objective)`` (a Beta prior): with little history the test
assumes the objective's rate (conservative: more errors needed), with a clean hour it assumes
about one error in that hour's traffic. A page needs ``P(X >= k | n, p0)`` below the configured
false-page probability, a floor of bad outcomes (errors come in small clusters, e.g. a client
retrying a failing request, which a binomial does not model), and the window's error rate at
``severe_factor`` times the bound (the page says "far beyond", not just "unusual").

Pure functions (data in, numbers out); ``sla.pages`` applies them. The binomial tail is
``scipy.special.bdtrc`` (the regularised incomplete beta function), evaluated only once the cheap
conditions hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorEvidence:
    """One window's test: ``bad`` of ``samples`` outcomes against ``baseline``; ``p_value`` is
    ``P(X >= bad)`` for ``X ~ Binomial(samples, baseline)`` (1.0 when not computed)."""

    window_s: float
    samples: int
    bad: int
    baseline: float
    p_value: float

    @property
    def share(self) -> float:
        return self.bad / self.samples if self.samples else 0.0


def baseline_share(bad_before: int, samples_before: int, objective: float) -> float:
    """The healthy bad share: the counts before the tested window, with a Beta prior at the
    objective's rate ``1 - objective`` worth one bad outcome (posterior mean)."""
    allowed = min(max(1.0 - objective, 1e-9), 1.0)
    prior_samples = 1.0 / allowed
    bad = max(bad_before, 0)
    samples = max(samples_before, bad)
    return (bad + 1.0) / (samples + prior_samples)


def tail_probability(bad: int, samples: int, share: float) -> float:
    """``P(X >= bad)`` for ``X ~ Binomial(samples, share)``."""
    if bad <= 0:
        return 1.0
    if bad > samples:
        return 0.0
    if share <= 0.0:
        return 0.0
    if share >= 1.0:
        return 1.0
    from scipy.special import bdtrc  # scipy loads on the evaluator thread, never at package import

    p = float(bdtrc(bad - 1, samples, share))
    return p if math.isfinite(p) else 1.0


def window_evidence(window_s: float, samples: int, bad: int, bad_before: int, samples_before: int, objective: float,
                *, min_bad: int) -> ErrorEvidence:
    """The evidence of one window; the tail is computed only when ``bad >= min_bad``."""
    baseline = baseline_share(bad_before, samples_before, objective)
    p = tail_probability(bad, samples, baseline) if bad >= min_bad else 1.0
    return ErrorEvidence(window_s, samples, bad, baseline, p)


__all__ = ["ErrorEvidence", "baseline_share", "tail_probability", "window_evidence"]
