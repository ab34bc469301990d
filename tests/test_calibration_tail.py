"""The tail fit behind calibrated bounds: declustering, the return level against scipy's own
quantile function, the confidence limit's coverage on histories with a known tail, the property a
bound is for (later healthy days stay inside it; the old worst-plus-10% rule is broken by them),
the shape estimated from a long history, the fallbacks, and the lower-bound mirror."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import genpareto

from aphrodite_sla.calibration import OUTLIER_HISTORIES, WindowSeries, propose
from aphrodite_sla.calibration_tail import TailSettings, declustered_peaks, fit_tail, incident_windows, return_level
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic

DAY_S = 86_400.0
POINTS_PER_DAY = 500  # evaluation points 172.8 s apart: longer than the 60 s window, so every point is its own peak
LAT = SLAThreshold("lat_p95", 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat_ms", unit="ms", min_samples=1)


def _days(rng: np.random.Generator, days: int, draw) -> WindowSeries:
    """``days`` of independent windows, ``POINTS_PER_DAY`` a day, each value ``draw(rng, n)``."""
    n = days * POINTS_PER_DAY
    step = DAY_S / POINTS_PER_DAY
    return WindowSeries(np.arange(1, n + 1) * step, np.asarray(draw(rng, n), dtype=float), step)


def _latency(rng: np.random.Generator, n: int) -> np.ndarray:
    return 20.0 + rng.exponential(5.0, n)  # ms: a floor and an exponential tail, as a queue's waiting time


def test_declustered_peaks_keep_one_maximum_per_run():
    ends = np.arange(0.0, 200.0, 5.0)
    values = np.zeros_like(ends)
    values[2:6] = [3.0, 5.0, 4.0, 3.0]  # one run
    values[8] = 6.0  # 10 s later: the same run (the gap is shorter than 60 s)
    values[30:32] = [2.0, 7.0]  # 120 s after: a new run
    values[20] = math.nan  # unjudged: below
    assert declustered_peaks(ends, values, 1.0, 60.0).tolist() == [6.0, 7.0]
    assert declustered_peaks(ends, values, 1.0, 5.0).tolist() == [5.0, 6.0, 7.0]  # a 5 s run gap splits them
    assert len(declustered_peaks(ends, values, 10.0, 60.0)) == 0


@pytest.mark.parametrize("shape", [-0.2, 0.0, 0.3])
def test_return_level_is_the_quantile_exceeded_once_in_the_period(shape):
    rate, days, u, scale = 40.0, 30.0, 10.0, 2.0
    expected = u + float(genpareto.isf(1.0 / (rate * days), shape, 0.0, scale))  # P(excess > x) = 1 / peaks in the period
    assert return_level(u, shape, scale, rate, days) == pytest.approx(expected, rel=1e-9)
    assert return_level(u, shape, scale, 0.01, days) == u  # fewer than one peak in the period: the threshold


def test_confidence_limit_covers_the_true_level_about_as_often_as_stated():
    """Exponential excesses over the threshold, one day of history: the 90% limit is at or above the
    true once-in-30-days level in about 9 histories of 10; the estimate in about half."""
    settings = TailSettings(return_period_days=30.0, confidence=0.9)
    # P(value > x) = exp(-(x - 20) / 5) per window, POINTS_PER_DAY windows a day
    truth = 20.0 + 5.0 * math.log(POINTS_PER_DAY * 30.0)
    rng = np.random.default_rng(7)
    limits, estimates = [], []
    for _ in range(300):
        s = _days(rng, 1, _latency)
        fit = fit_tail(s.ends, s.values, 60.0, s.span_s, settings)
        assert fit is not None and not fit.shape_fitted and fit.peaks == pytest.approx(50, abs=1)
        limits.append(fit.limit >= truth)
        estimates.append(fit.estimate >= truth)
    assert 0.84 <= np.mean(limits) <= 0.96
    assert 0.30 <= np.mean(estimates) <= 0.70


def test_tail_bound_holds_on_later_days_where_worst_plus_margin_breaks():
    """The reason for the fit: calibrated on one healthy day, the old rule's bound (worst x 1.1) is
    passed by the worst window of many later days of the same traffic; the tail's bound by few
    (20 calibration days, each against the 30 days after it)."""
    rng = np.random.default_rng(11)
    broken_old = broken_tail = 0
    flagged = 0
    for _ in range(20):
        history = _days(rng, 1, _latency)
        cal = propose(LAT, history)
        tail = cal.proposed
        old = propose(LAT, history, tail=None).proposed
        assert tail is not None and old is not None
        # never below the old rule, unless the worst window is one the rest's tail calls an
        # incident (one of these 20 days: its largest window is a 1-in-150 draw, over a rest
        # whose mean excess is 3 sd low)
        if "overload or incident" in cal.note:
            flagged += 1
        else:
            assert tail.bound >= old.bound
        later = [float(_latency(rng, POINTS_PER_DAY).max()) for _ in range(30)]
        broken_old += sum(w > old.bound for w in later)
        broken_tail += sum(w > tail.bound for w in later)
    assert flagged <= 1
    assert broken_old / 600 >= 0.15  # the next day passes worst + 10% about a quarter of the time
    assert broken_tail / 600 <= 1 / 30  # at most once a month


def test_a_week_of_history_narrows_the_interval_and_lowers_the_bound():
    settings = TailSettings(shape_min_peaks=10_000)  # exponential both times: the interval is what changes
    rng = np.random.default_rng(3)
    one, seven = _days(rng, 1, _latency), _days(rng, 7, _latency)
    day = fit_tail(one.ends, one.values, 60.0, one.span_s, settings)
    week = fit_tail(seven.ends, seven.values, 60.0, seven.span_s, settings)
    assert day is not None and week is not None
    assert week.peaks_per_day == pytest.approx(day.peaks_per_day, rel=0.05)  # the rate is per day of history
    assert (week.limit - week.estimate) < 0.5 * (day.limit - day.estimate)


def test_shape_is_estimated_from_a_long_history_and_clipped_when_implausible():
    rng = np.random.default_rng(5)
    heavy = _days(rng, 10, lambda r, n: 20.0 + genpareto.rvs(0.25, scale=5.0, size=n, random_state=r))
    fit = fit_tail(heavy.ends, heavy.values, 60.0, heavy.span_s, TailSettings(bootstrap=50))
    assert fit is not None and fit.shape_fitted and fit.peaks >= 150
    assert 0.05 <= fit.shape <= 0.45 and not fit.clipped
    assert fit.limit >= fit.estimate > fit.threshold
    wild = _days(rng, 10, lambda r, n: 20.0 + genpareto.rvs(1.5, scale=5.0, size=n, random_state=r))
    clipped = fit_tail(wild.ends, wild.values, 60.0, wild.span_s, TailSettings(bootstrap=20))
    assert clipped is not None and clipped.clipped and clipped.shape == 0.5
    assert "shape +0.50 clipped" in clipped.describe()


def test_short_or_flat_history_falls_back_to_worst_plus_margin_and_says_so():
    values = [80.0, 90.0, 100.0, 110.0, 140.0, 95.0, 100.0]
    s = WindowSeries(np.arange(1, 8) * 5.0, np.asarray(values), 5.0)
    cal = propose(LAT, s)
    assert cal.tail is None and cal.proposed is not None and cal.proposed.bound == pytest.approx(154.0)
    assert "too few peaks for a tail fit (< 8): worst x 1.1" in cal.note
    flat = _days(np.random.default_rng(0), 1, lambda r, n: np.full(n, 3072.0))
    assert fit_tail(flat.ends, flat.values, 60.0, flat.span_s) is None


def test_fitted_bound_is_reported_with_its_interval():
    cal = propose(LAT, _days(np.random.default_rng(2), 1, _latency))
    assert cal.tail is not None and cal.proposed is not None
    assert cal.proposed.bound == pytest.approx(cal.tail.limit, rel=1e-3) and cal.proposed.bound >= cal.tail.limit
    assert cal.note.startswith("once-in-30-days level ") and "90% limit" in cal.note and "exponential tail" in cal.note
    longer = propose(LAT, _days(np.random.default_rng(2), 1, _latency), tail=TailSettings(return_period_days=365.0))
    assert longer.proposed is not None and longer.proposed.bound > cal.proposed.bound


def test_lower_bound_sla_fits_the_dips():
    tps = SLAThreshold("tps", 6000.0, 20.0, 1, direction=Direction.LOWER, unit="tokens/s", min_samples=1)
    s = _days(np.random.default_rng(4), 1, lambda r, n: 6000.0 - r.exponential(150.0, n))
    cal = propose(tps, s)
    assert cal.tail is not None and cal.proposed is not None
    assert cal.proposed.bound < cal.worst * 0.9 + 1e-6 or "beyond the tail" in cal.note
    assert "peaks under" in cal.note
    # dips that can reach 0 (throughput that follows the load): no positive bound from the tail
    low = _days(np.random.default_rng(4), 1, lambda r, n: 400.0 - r.exponential(60.0, n).clip(0, 300.0))
    cal0 = propose(tps, low)
    assert cal0.proposed is not None and cal0.proposed.bound == pytest.approx(cal0.worst * 0.9, rel=1e-3)  # type: ignore[operator]
    assert "the tail reaches 0" in cal0.note


def test_a_percentage_bound_past_100_is_called_out():
    kv = SLAThreshold("kv_cache_usage_percent", 80.0, 20.0, 1, unit="%", min_samples=1)
    s = _days(np.random.default_rng(6), 1, lambda r, n: np.minimum(30.0 + r.exponential(12.0, n), 99.0))
    cal = propose(kv, s)
    assert cal.proposed is not None and cal.proposed.bound >= 100.0 and "never fires" in cal.note
    calm = propose(kv, _days(np.random.default_rng(6), 1, lambda r, n: 30.0 + r.exponential(3.0, n)))
    assert calm.proposed is not None and calm.proposed.bound < 100.0 and "never fires" not in calm.note


def test_an_incident_in_the_healthy_history_does_not_set_the_bound():
    """A week whose worst window is an overload (10x the tail's reach): "never below worst + 10%"
    would make that overload the bound; it is named instead, and the tail's limit is the bound."""
    history = _days(np.random.default_rng(8), 7, _latency)
    clean = propose(LAT, history)
    values = history.values.copy()
    values[1234] = 20.0 * float(values.max())
    hit = propose(LAT, WindowSeries(history.ends, values, history.step_s))
    assert clean.proposed is not None and hit.proposed is not None and hit.tail is not None
    assert "overload or incident" in hit.note and "overload or incident" not in clean.note
    assert hit.proposed.bound == pytest.approx(clean.proposed.bound, rel=1e-3)  # as if the overload had not been
    assert hit.worst == pytest.approx(clean.worst)
    assert hit.proposed_replay is not None and hit.proposed_replay.breaches >= 1  # the replay shows the window beyond it
    # the same for a lower-bound SLA's dip
    tps = SLAThreshold("tps", 6000.0, 20.0, 1, direction=Direction.LOWER, unit="tokens/s", min_samples=1)
    dips = _days(np.random.default_rng(9), 7, lambda r, n: 6000.0 - r.exponential(150.0, n))
    low = dips.values.copy()
    low[99] = 500.0
    cal = propose(tps, WindowSeries(dips.ends, low, dips.step_s))
    assert cal.proposed is not None and "overload or incident" in cal.note and cal.proposed.bound > 4000.0


def test_too_few_peaks_to_judge_leave_the_history_whole():
    """Many windows above the threshold but in few runs (a short history of overlapping windows):
    too few peaks to judge a largest one by the rest, so nothing is called an incident."""
    ends = np.arange(1.0, 301.0) * 5.0  # 5 s steps, 60 s windows: runs of overlapping windows
    values = 20.0 + 5.0 * np.sin(ends / 200.0) + np.where(np.arange(300) == 150, 500.0, 0.0)
    mask = incident_windows(ends, values, 60.0, 1500.0, TailSettings(), OUTLIER_HISTORIES)
    assert not mask.any()
    cal = propose(LAT, WindowSeries(ends, values, 5.0))
    assert cal.proposed is not None and "overload or incident" not in cal.note


def test_healthy_histories_are_rarely_called_outliers():
    """By construction the guard calls about one healthy history in ``OUTLIER_HISTORIES`` an
    outlier (the fit's own error adds some): 300 one-day histories, 20 weeks of a heavier tail."""
    rng = np.random.default_rng(10)
    flagged = 0
    for _ in range(300):
        h = _days(rng, 1, _latency)
        flagged += bool(incident_windows(h.ends, h.values, 60.0, h.span_s, TailSettings(), OUTLIER_HISTORIES).any())
    assert flagged <= 2
    heavy = 0  # a heavier tail than exponential, a week each (the shape is estimated)
    for _ in range(20):
        h = _days(rng, 7, lambda r, n: 20.0 + genpareto.rvs(0.2, scale=5.0, size=n, random_state=r))
        heavy += bool(incident_windows(h.ends, h.values, 60.0, h.span_s, TailSettings(), OUTLIER_HISTORIES).any())
    assert heavy <= 2


def test_settings_refuse_nonsense():
    for bad in ({"return_period_days": 0.0}, {"return_period_days": math.inf}, {"confidence": 1.0}, {"confidence": 0.2},
                {"tail_share": 0.0}, {"min_peaks": 2}, {"shape_min_peaks": 3}, {"bootstrap": 5}, {"max_abs_shape": 2.0}):
        with pytest.raises(ValueError):
            TailSettings(**bad)  # type: ignore[arg-type]
