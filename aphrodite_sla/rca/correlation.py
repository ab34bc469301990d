"""The seed's temporal correlations, done with corrected p-values: Pearson and Spearman of every
metric against the violated SLI over the analysis window, Benjamini-Hochberg across metrics.

Why kept beside the graph attribution: an operator asks "what moved with it?"; but a correlation
ranks symptoms as high as causes, so it is reported, never used to pick the cause."""
from __future__ import annotations

import math
import warnings

import numpy as np

from aphrodite_sla.rca.model import Correlation

ALPHA = 0.05


def correlations(sli: np.ndarray, series: dict[str, np.ndarray], alpha: float = ALPHA) -> list[Correlation]:
    from scipy import stats  # loaded on the first analysis, never by building a monitor

    rows: list[tuple[str, float, float, float, float]] = []
    for name, values in series.items():
        ok = np.isfinite(sli) & np.isfinite(values)
        if ok.sum() < 5 or np.ptp(values[ok]) == 0 or np.ptp(sli[ok]) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r, p = stats.pearsonr(sli[ok], values[ok])
            rho, ps = stats.spearmanr(sli[ok], values[ok])
        if not (math.isfinite(r) and math.isfinite(p)):
            continue
        rows.append((name, float(r), float(p), float(rho), float(ps) if math.isfinite(ps) else 1.0))
    if not rows:
        return []
    adjusted = stats.false_discovery_control([max(row[2], row[4]) for row in rows], method="bh")
    out = [Correlation(n, r, p, rho, ps, float(q), bool(q < alpha)) for (n, r, p, rho, ps), q in zip(rows, adjusted)]
    return sorted(out, key=lambda c: -abs(c.pearson))


def pearson_ranking(sli: np.ndarray, series: dict[str, np.ndarray]) -> list[str]:
    """The seed's method (a baseline in the benchmark): metrics by |Pearson r| with the SLI."""
    return [c.metric for c in correlations(sli, series, alpha=1.0)]
