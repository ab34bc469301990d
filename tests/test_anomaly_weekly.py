"""Tests of the weekly seasonal model's switch-on: ``Seasonality.learn`` reports the fold that
switches the weekly profile on (and only that one), and the detector's level statistics then
relearn their spreads from the deseasonalised series instead of keeping, for days, the spread of
the weekends they saw as level shifts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from aphrodite_sla.sla.anomaly import AnomalyDetector, AnomalyDetectorConfig
from aphrodite_sla.sla.anomaly.seasonal import DAILY_ON, WEEKLY_ON, Seasonality

DAY = 86_400.0
WEEK = 7 * DAY
HOUR = 3_600.0


def weekly_metric(weeks: float, step: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Traffic in log space: a daily curve, weekends 0.4 lower and half as curved, AR(1) noise.
    Starts on a Thursday 00:00 UTC (the Unix epoch's weekday), so weekly cycles are whole."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0.0, weeks * WEEK, step)
    day = np.floor(ts / DAY).astype(np.int64)
    weekend = (day % 7 == 2) | (day % 7 == 3)  # day 0 is a Thursday: 2 and 3 are Saturday, Sunday
    curve = np.sin(2.0 * math.pi * ts / DAY)
    noise = np.empty(ts.size)
    prev = 0.0
    for i, e in enumerate(rng.normal(0.0, 0.05 * math.sqrt(1.0 - 0.25), ts.size)):
        prev = 0.5 * prev + e
        noise[i] = prev
    y = np.log(1e6) + np.where(weekend, 0.2 * curve - 0.4, 0.4 * curve) + noise
    return ts, np.exp(y)


def test_learn_reports_each_profiles_switch_on_once():
    ts, values = weekly_metric(4.0, HOUR, seed=1)
    season = Seasonality(DAY, 24, True, 0.25, 2)
    y = np.log(values)
    season.start(float(np.median(y[:30])), HOUR)
    reported = []
    daily_reported = []
    daily_on = weekly_on = math.nan
    for t, v in zip(ts.tolist(), y.tolist()):
        off = season.offset(t)
        switched = season.learn(t, v, off)
        if switched & WEEKLY_ON:
            reported.append(t)
        if switched & DAILY_ON:
            daily_reported.append(t)
        if daily_on != daily_on and season.daily.target > 0.5:
            daily_on = t
        if weekly_on != weekly_on and season.weekly is not None and season.weekly.target > 0.5:
            weekly_on = t
    assert daily_on < 3 * DAY  # the daily profile came on early ...
    assert daily_reported == [daily_on], (daily_reported, daily_on)  # ... reported at the fold that did it
    assert reported == [weekly_on], (reported, weekly_on)
    assert 2 * WEEK <= weekly_on < 3 * WEEK


def test_the_written_out_offset_and_learn_match_each_profiles_own():
    """``Seasonality.offset`` / ``learn`` are the profiles' ``offset`` / ``learn`` written out for
    speed: fed the same samples, two profiles driven through their own methods agree with them
    at every sample, through the daily and the weekly switch-on."""
    ts, values = weekly_metric(3.0, HOUR, seed=3)
    y = np.log(values)
    season = Seasonality(DAY, 24, True, 0.25, 2)
    ref = Seasonality(DAY, 24, True, 0.25, 2)
    season.start(float(np.median(y[:30])), HOUR)
    assert ref.weekly is not None and season.weekly is not None
    daily, weekly = ref.daily, ref.weekly
    for t, v in zip(ts.tolist(), y.tolist()):
        off = season.offset(t)
        ref_daily = daily.offset(t)
        assert off == pytest.approx(ref_daily + weekly.offset(t), abs=1e-12)
        season.learn(t, v, off)
        dev = v - season.base  # the base the written-out learn used (it moves first)
        daily.learn(t, dev)
        weekly.learn(t, dev - ref_daily)
    assert season.daily.value == pytest.approx(daily.value, abs=1e-12)
    assert season.weekly.value == pytest.approx(weekly.value, abs=1e-12)
    assert season.daily.target > 0.5 and season.weekly.cycles >= 2  # the daily profile is in use


def test_learn_reports_no_weekly_switch_on_without_a_weekly_profile():
    ts, values = weekly_metric(3.0, HOUR, seed=2)
    season = Seasonality(DAY, 24, False, 0.25, 2)
    y = np.log(values)
    season.start(float(np.median(y[:30])), HOUR)
    reports = [season.learn(t, v, season.offset(t)) for t, v in zip(ts.tolist(), y.tolist())]
    assert not any(r & WEEKLY_ON for r in reports)
    assert sum(1 for r in reports if r & DAILY_ON) == 1


def level_spread_after_switch_on(relearn: int) -> tuple[float, float, int]:
    """The level statistic's spread (in its white-noise floors) two days after the weekly profile
    came on (it is applied in full after a quarter of its period), and the update count it was
    left with at the switch-on."""
    ts, values = weekly_metric(3.5, 1_800.0, seed=3)
    det = AnomalyDetector(relearn_updates=relearn)
    on = math.nan
    n_at_switch = -1
    for t, v in zip(ts.tolist(), values.tolist()):
        m = det._m
        before = m.level.spread.n if m is not None else -1
        det.update(v, t)
        m = det._m
        if on != on and m is not None and m.season is not None and m.season.weekly is not None \
                and m.season.weekly.target > 0.0:
            on = t
            n_at_switch = m.level.spread.n if m.level.spread.n < before else before
        if on == on and t >= on + 2.0 * DAY:
            lv = m.level
            return lv.spread.sd / lv.floor, on, n_at_switch
    raise AssertionError("the weekly profile never came on")


def test_weekly_switch_on_makes_the_level_spreads_relearn():
    relearned, on, n = level_spread_after_switch_on(20)
    kept, on_kept, _ = level_spread_after_switch_on(10**9)  # never relearns: the old behaviour
    assert on == on_kept
    assert n <= 21  # the old spread was kept as a prior of 20 updates (plus this sample's)
    # the weekends had inflated the spread; relearned on the deseasonalised series it is smaller
    assert relearned < 0.8 * kept, (relearned, kept)


def test_relearn_updates_must_be_positive():
    with pytest.raises(ValueError, match="relearn_updates"):
        AnomalyDetectorConfig(relearn_updates=0)
