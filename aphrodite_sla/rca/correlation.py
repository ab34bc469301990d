"""The seed's temporal correlations, done with corrected p-values: Pearson and Spearman of every
metric against the violated SLI over the analysis window, Benjamini-Hochberg across metrics.

Why kept beside the graph attribution: an operator asks "what moved with it?"; but a correlation
ranks symptoms as high as causes, so it is reported, never used to pick the cause.

Why computed with numpy here and not ``scipy.stats.pearsonr`` / ``spearmanr`` per metric: those
calls cost ~0.7 ms each in argument checks, and forty of them were 70% of an analysis. The
statistics are the same (Pearson's r with its exact t-test p-value, Spearman's rho as Pearson's r
of average ranks with the t approximation scipy uses); one vectorised ``t.sf`` call gives every
p-value. ``tests/test_rca_correlation.py`` checks them against scipy.
"""
from __future__ import annotations

import numpy as np

from aphrodite_sla.rca.model import Correlation

ALPHA = 0.05
MIN_POINTS = 5


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (``scipy.stats.rankdata``'s default)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.empty(len(xs), dtype=bool)
    new[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    starts = np.nonzero(new)[0]
    ends = np.append(starts[1:], len(xs))
    group = np.cumsum(new) - 1
    ranks = np.empty(len(xs))
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[group]
    return ranks


def _pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.dot(da, da) * np.dot(db, db)))
    if den <= 0.0:
        return float("nan")
    return float(np.clip(np.dot(da, db) / den, -1.0, 1.0))


def _t_pvalues(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-values of correlations ``r`` over ``n`` points (t-test with n - 2 dof)."""
    from scipy import stats  # loaded on the first analysis, never by building a monitor

    dof = n - 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(r) * np.sqrt(dof / np.maximum(1.0 - r * r, 0.0))
    p = 2.0 * stats.t.sf(np.where(np.isfinite(t), t, np.inf), dof)
    return np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)


def correlations(sli: np.ndarray, series: dict[str, np.ndarray], alpha: float = ALPHA) -> list[Correlation]:
    from scipy import stats

    sli = np.asarray(sli, dtype=float)
    sli_ok = np.isfinite(sli)
    n_sli = int(sli_ok.sum())
    sli_ranks = average_ranks(sli[sli_ok]) if n_sli else sli[:0]  # shared by every series without gaps of its own
    names: list[str] = []
    rs: list[float] = []
    rhos: list[float] = []
    ns: list[int] = []
    for name, raw in series.items():
        values = np.asarray(raw, dtype=float)
        if len(values) != len(sli):
            continue
        ok = sli_ok & np.isfinite(values)
        n = int(ok.sum())
        if n < MIN_POINTS:
            continue
        a, b = sli[ok], values[ok]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        r = _pearson_r(a, b)
        if not np.isfinite(r):
            continue
        rho = _pearson_r(sli_ranks if n == n_sli else average_ranks(a), average_ranks(b))
        names.append(name)
        rs.append(r)
        rhos.append(rho if np.isfinite(rho) else 0.0)
        ns.append(n)
    if not names:
        return []
    n_arr = np.asarray(ns, dtype=float)
    r_arr, rho_arr = np.asarray(rs), np.asarray(rhos)
    p, ps = _t_pvalues(r_arr, n_arr), _t_pvalues(rho_arr, n_arr)
    adjusted = stats.false_discovery_control(np.maximum(p, ps), method="bh")
    out = [Correlation(name, float(r), float(pp), float(rho), float(pss), float(q), bool(q < alpha))
           for name, r, pp, rho, pss, q in zip(names, r_arr, p, rho_arr, ps, adjusted)]
    return sorted(out, key=lambda c: -abs(c.pearson))


def pearson_ranking(sli: np.ndarray, series: dict[str, np.ndarray]) -> list[str]:
    """The seed's method (a baseline in the benchmark): metrics by |Pearson r| with the SLI."""
    return [c.metric for c in correlations(sli, series, alpha=1.0)]
