"""The error-rate severe breach (``sla.error_evidence`` applied by ``sla.pages``): a binomial test
against the service's own healthy rate pages on three errors in a minute where there are
normally none, needs more where there are normally some, never pages healthy traffic whose errors
stay under the bound, and at night pages through the SLA's own window."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

from aphrodite_sla.sla.error_evidence import baseline_share, tail_probability, window_evidence
from aphrodite_sla.sla.page_rules import PageRulesConfig
from tests.test_fast_pages import Harness, error_sla


def test_tail_probability_is_the_binomial_survival_function():
    for k, n, p in ((3, 258, 6e-5), (1, 10, 0.1), (7, 129, 0.003), (50, 60, 0.5)):
        assert math.isclose(tail_probability(k, n, p), binom.sf(k - 1, n, p), rel_tol=1e-9)
    assert tail_probability(0, 10, 0.1) == 1.0 and tail_probability(11, 10, 0.1) == 0.0
    assert tail_probability(2, 10, 0.0) == 0.0 and tail_probability(2, 10, 1.0) == 1.0


def test_baseline_starts_at_the_objective_and_follows_the_history():
    assert math.isclose(baseline_share(0, 0, 0.999), 0.001)  # no history: the rate the objective allows
    clean_hour = baseline_share(0, 15_000, 0.999)
    assert clean_hour < 1e-4  # a clean hour of 4 requests/s: about one error in that hour's traffic
    noisy_hour = baseline_share(45, 15_000, 0.999)
    assert math.isclose(noisy_hour, 46 / 16_000)  # 0.3% errors: its own rate
    # fewer errors are evidence against a clean baseline than against a noisy one
    assert window_evidence(60, 258, 3, 0, 15_000, 0.999, min_bad=3).p_value < 1e-5
    assert window_evidence(60, 258, 3, 45, 15_000, 0.999, min_bad=3).p_value > 0.01
    assert window_evidence(60, 258, 2, 0, 15_000, 0.999, min_bad=3).p_value == 1.0  # under the floor: not computed


def bernoulli(share: float, seed: int):
    rng = np.random.default_rng(seed)
    return lambda src, i: 100.0 if rng.random() < share else 0.0


def test_three_errors_in_a_minute_page_a_service_that_has_none():
    h = Harness(error_sla())
    h.run(3600, 4, lambda src, i: 0.0)  # a clean hour at 4 requests/s
    onset = h.clock()
    h.run(20, 4, lambda src, i: 100.0 if i == 0 and int(h.clock() - onset) % 6 == 0 else 0.0)  # an error every 6 s
    pages = h.pages("severe_breach")
    assert len(pages) == 1 and pages[0].occurred_at - onset <= 20.0
    assert "healthy rate" in pages[0].violation.message and pages[0].violation.sample_count >= 3


def test_a_service_with_errors_under_its_bound_is_not_paged_by_the_same_three():
    # 0.3% errors at 4 requests/s (under the 0.5% bound) for three hours: healthy for this service,
    # and three or four errors in a minute happen by chance: the test must not page on them
    h = Harness(error_sla(), config=PageRulesConfig(burn_rate=False))
    h.run(3 * 3600, 4, bernoulli(0.003, 1))
    assert h.pages() == [] and h.sustained() == []
    # a real jump on the same service (5% errors) pages
    onset = h.clock()
    h.run(120, 4, bernoulli(0.05, 2))
    pages = h.pages("severe_breach")
    assert len(pages) == 1 and pages[0].occurred_at - onset <= 90.0


def test_night_traffic_pages_through_the_slas_own_window():
    # 0.6 requests/s is 0 or 1 a second: feed one request every 1.67 s on average
    h = Harness(error_sla(), config=PageRulesConfig(burn_rate=False))
    rng = np.random.default_rng(3)
    for _ in range(3600):  # a clean hour
        h.clock.advance(1.0)
        if rng.random() < 0.6:
            h.mgr.record_measurement("outcome", 0.0)
        if int(h.clock() - 1_700_000_000.0) % 5 == 0:
            h.mgr.evaluate()
    onset = h.clock()
    for _ in range(400):  # 5% errors: about 2 a minute
        h.clock.advance(1.0)
        if rng.random() < 0.6:
            h.mgr.record_measurement("outcome", 100.0 if rng.random() < 0.05 else 0.0)
        if int(h.clock() - 1_700_000_000.0) % 5 == 0:
            h.mgr.evaluate()
    pages = h.pages("severe_breach")
    assert len(pages) == 1 and pages[0].occurred_at - onset <= 300.0
    assert pages[0].violation.window_seconds in (60.0, 300.0)
