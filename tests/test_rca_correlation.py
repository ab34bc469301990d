"""The vectorised correlations give scipy's statistics (they replaced per-metric scipy calls)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aphrodite_sla.rca.correlation import average_ranks, correlations


def test_average_ranks_match_scipy_with_ties():
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 1.0, 2.0])
    assert np.allclose(average_ranks(x), stats.rankdata(x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_and_spearman_match_scipy(seed):
    rng = np.random.default_rng(seed)
    sli = rng.normal(size=120)
    series = {
        "linked": sli * 0.5 + rng.normal(size=120),
        "rounded": np.round(sli + rng.normal(size=120)),  # ties for Spearman
        "noise": rng.normal(size=120),
        "gappy": np.where(rng.random(120) < 0.2, np.nan, sli + rng.normal(size=120)),
    }
    got = {c.metric: c for c in correlations(sli, series)}
    for name, values in series.items():
        ok = np.isfinite(values)
        r, p = stats.pearsonr(sli[ok], values[ok])
        rho, ps = stats.spearmanr(sli[ok], values[ok])
        assert got[name].pearson == pytest.approx(r, abs=1e-9)
        assert got[name].pearson_p == pytest.approx(p, rel=1e-6, abs=1e-12)
        assert got[name].spearman == pytest.approx(rho, abs=1e-9)
        assert got[name].spearman_p == pytest.approx(ps, rel=1e-6, abs=1e-12)


def test_constant_short_and_misaligned_series_are_skipped():
    sli = np.arange(20.0)
    out = correlations(sli, {"flat": np.ones(20), "short": np.array([1.0, 2.0]), "nan": np.full(20, np.nan),
                             "perfect": 2.0 * sli})
    assert [c.metric for c in out] == ["perfect"]
    assert out[0].pearson == pytest.approx(1.0) and out[0].pearson_p == 0.0
