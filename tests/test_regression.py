"""Regression detection: Mann–Whitney U plus a minimum effect size."""
import math

import numpy as np
import pytest

from aphrodite_sla import Direction, detect_regression


def lognormal(median, n, seed, sigma=0.4):
    return np.random.default_rng(seed).lognormal(math.log(median), sigma, n)


def test_latency_increase_is_a_regression():
    r = detect_regression(lognormal(100, 3000, 1), lognormal(130, 3000, 2), metric="lat")
    assert r.regressed
    assert r.percent_change == pytest.approx(30, abs=5)
    assert r.p_value < 1e-10
    assert r.effect_size > 0.6
    assert "regression" in r.message


def test_same_distribution_is_not_a_regression():
    r = detect_regression(lognormal(100, 3000, 1), lognormal(100, 3000, 2))
    assert not r.regressed
    assert abs(r.percent_change) < 5


def test_significant_but_small_effect_is_not_a_regression():
    r = detect_regression(lognormal(100, 20000, 1), lognormal(104, 20000, 2), min_effect_percent=10)
    assert r.p_value < 0.01
    assert not r.regressed
    assert "below the minimum" in r.reason


def test_improvement_is_not_a_regression():
    assert not detect_regression(lognormal(100, 3000, 1), lognormal(60, 3000, 2)).regressed


def test_throughput_drop_is_a_regression_for_lower_bound_metrics():
    r = detect_regression(lognormal(120, 500, 1, 0.1), lognormal(80, 500, 2, 0.1), direction=Direction.LOWER)
    assert r.regressed and r.percent_change < -25
    up = detect_regression(lognormal(120, 500, 1, 0.1), lognormal(80, 500, 2, 0.1), direction=Direction.UPPER)
    assert not up.regressed


def test_too_few_samples_and_garbage_do_not_raise():
    r = detect_regression([1.0, 2.0], [np.nan, np.inf, 3.0])
    assert not r.regressed and "too few" in r.reason
    r = detect_regression(np.ones(100), np.ones(100))
    assert not r.regressed and r.p_value == 1.0


def test_invalid_parameters_raise():
    with pytest.raises(ValueError, match="alpha"):
        detect_regression(np.ones(50), np.ones(50), alpha=2)
    with pytest.raises(ValueError, match="min_effect_percent"):
        detect_regression(np.ones(50), np.ones(50), min_effect_percent=-1)
