"""The season-fit statistic (``season_fit.SeasonFit``), the level memory forgotten when a
seasonal profile switches on, the drift statistic stepped on pairs of samples, and the seasonal
profile's next-bin fast path."""
from __future__ import annotations

import math

import numpy as np

from aphrodite_sla.sla.anomaly import AnomalyDetector
from aphrodite_sla.sla.anomaly.scoring import RunningSpread
from aphrodite_sla.sla.anomaly.seasonal import WEEKLY_ON, SeasonalProfile
from aphrodite_sla.sla.anomaly.statistics import LevelChange

DAY = 86_400.0
STEP = 300.0
T0 = 1_699_920_000.0


def seasonal_metric(seed: int, amp: float = 3.0, phi: float = 0.8) -> tuple[np.ndarray, np.ndarray, int]:
    """12 days at 5-minute samples: a daily sine of ``amp`` sd on AR(1) noise; the pattern goes
    flat for a day from a random time of day 9, with no level change."""
    rng = np.random.default_rng(seed)
    n = int(12 * DAY / STEP)
    ts = T0 + STEP * np.arange(n)
    noise = np.zeros(n)
    prev = 0.0
    for i, e in enumerate(rng.standard_normal(n) * math.sqrt(1.0 - phi * phi)):
        prev = phi * prev + e
        noise[i] = prev
    season = amp * np.sin(2.0 * np.pi * (ts - T0) / DAY + rng.uniform(0.0, 2.0 * np.pi))
    onset = int(9 * DAY / STEP) + int(rng.integers(0, int(DAY / STEP)))
    gain = np.ones(n)
    gain[onset:onset + int(DAY / STEP)] = 0.0
    return ts, 100.0 + gain * season + noise, onset


def first_alarm(det: AnomalyDetector, ts: np.ndarray, x: np.ndarray, onset: int, within: int = 80
                ) -> tuple[int | None, float, str]:
    """Samples from the onset to the first score >= 0.5 within ``within`` (None: none), the
    highest score from day 5 to the onset, and the kind of the first alarm."""
    out = np.zeros(x.size)
    kind = ""
    first = None
    for i, (v, t) in enumerate(zip(x.tolist(), ts.tolist())):
        out[i] = det.update(v, t)
        if first is None and onset <= i < onset + within and out[i] >= 0.5:
            first = i - onset
            kind = det.last_explanation.kind
    return first, float(out[int(5 * DAY / STEP):onset].max()), kind


def test_a_daily_pattern_gone_flat_is_found_sooner_by_the_season_fit():
    with_fit: list[int | None] = []
    without: list[int | None] = []
    quiet_broken = 0
    kinds = []
    for seed in range(8):
        ts, x, onset = seasonal_metric(seed)
        first, quiet, kind = first_alarm(AnomalyDetector(), ts, x, onset)
        with_fit.append(first)
        quiet_broken += quiet >= 0.5
        if first is not None:
            kinds.append(kind)
        first, _, _ = first_alarm(AnomalyDetector(season_fit_z=1e9), ts, x, onset)  # the statistic off
        without.append(first)
    found = sum(f is not None for f in with_fit)
    assert found >= sum(f is not None for f in without) + 2, (with_fit, without)
    for a, b in zip(with_fit, without):
        if b is not None:
            assert a is not None and a <= b  # never later than without it
    assert quiet_broken <= 1  # the healthy days before stay (almost always) below the alert level
    assert "seasonal" in kinds  # named as a change that is wrong for the time of day


def test_nothing_is_computed_without_an_applied_profile():
    rng = np.random.default_rng(0)
    det = AnomalyDetector()
    for i, v in enumerate((100.0 + rng.standard_normal(int(DAY / 5.0))).tolist()):  # 24 hours at 5 s
        det.update(v, T0 + 5.0 * i)
    m = det._m
    assert m is not None and m.season is not None and not m.season.in_use()
    assert m.fit.spread.n == 0 and m.fit.ss == 0.0 and m.fit.ratio == 0.0


def test_a_young_profile_does_not_score_its_own_error():
    """Until the daily profile has folded ``season_fit_min_cycles`` days, the fit is learned but
    never scores (a profile of two or three days carries their noise)."""
    ts, x, _ = seasonal_metric(3)
    det = AnomalyDetector()
    for v, t in zip(x.tolist(), ts.tolist()):
        det.update(v, t)
        m = det._m
        if m is not None and m.season is not None and m.season.daily.cycles < det.config.season_fit_min_cycles:
            assert m.fit.ratio == 0.0
        if t > T0 + 3.5 * DAY:
            break
    assert m is not None and m.fit.spread.n > 0  # it was learning


def test_remembered_levels_are_forgotten_when_the_weekly_profile_switches_on():
    rng = np.random.default_rng(1)
    det = AnomalyDetector()
    for i, v in enumerate((100.0 + rng.standard_normal(600)).tolist()):
        det.update(v, T0 + 60.0 * i)
    m = det._m
    assert m is not None
    m.levels.jumped(100.0, 110.0, 1.0)  # a level the metric has been at
    m.level.spread.n = m.drift.spread.n = m.run.spread.n = 500
    det._season_switched(m, 0)  # no weekly switch-on: kept
    assert m.levels.centre
    det._season_switched(m, WEEKLY_ON)
    assert m.levels.centre == [] and m.levels.current == -1  # measured in a space that has changed
    assert m.level.spread.n == det.config.relearn_updates  # and the spreads relearn, as before


def test_the_written_out_spread_learning_of_the_level_statistics_matches_running_spread():
    rng = np.random.default_rng(2)
    lc = LevelChange(0.1, 0.01, 0.002, 30)
    ref = RunningSpread(lc.spread.alpha, lc.spread.clip)
    for i, v in enumerate(rng.standard_normal(3000).tolist()):
        diff, floor = lc.diff, lc.floor  # what the step learns from: the previous sample's
        odd = i & 1
        learns = odd and lc.n * lc.a_fast >= 1.0 and lc.last == lc.last  # the step's own condition
        lc.step(v, True, odd, 1.0)
        if learns:
            ref.learn(diff, floor)
    assert ref.n > 1000
    assert lc.spread.n == ref.n and abs(lc.spread.sd - ref.sd) < 1e-12


def test_the_drift_statistic_on_pairs_of_samples_keeps_its_white_noise_floor():
    """Stepped on the mean of each pair of samples at twice the smoothing constant: the same
    memory in samples, and its z on white noise still has about unit spread."""
    single = LevelChange(0.02, 0.002, 0.002)
    paired = LevelChange(0.02, 0.002, 0.002, every=2)
    assert paired.a_fast == 0.04 and paired.a_ref == 0.004
    assert abs(paired.k_white - single.k_white) < 0.05 * single.k_white
    rng = np.random.default_rng(4)
    x = rng.standard_normal(40_000)
    paired.start(0.0)
    z = [paired.step(0.5 * (a + b), True, 1, 1.0) for a, b in zip(x[0::2].tolist(), x[1::2].tolist())]
    sd = float(np.std(z[2000:]))
    assert 0.8 < sd < 1.25, sd


def test_the_next_bin_fast_path_puts_each_sample_where_rebin_would():
    p = SeasonalProfile(DAY, 48, 0.25, 2)
    q = SeasonalProfile(DAY, 48, 0.25, 2)
    rng = np.random.default_rng(5)
    t = T0 + 17.0
    for _ in range(3000):
        t += float(rng.uniform(100.0, 700.0))
        dev = float(rng.standard_normal())
        p.learn(t, dev)  # the fast path where it applies
        b = q.rebin(t)  # always the full computation
        if b >= 0:
            q.acc[b] += dev
            q.cnt[b] += 1
        assert p.bin == q.bin and p.blo == q.blo and p.bhi == q.bhi
    assert p.value == q.value and p.acc == q.acc


def test_a_missing_pattern_alarms_at_its_onset_and_then_becomes_normal():
    """An onset signal: across the flat day the score is at the alert level for a sixth of its 288
    samples at most (the whole day alarmed before the fit accepted; the fit and the level statistic accept the missing pattern), and the
    explanation's season_fit_z points the way the value moved (against the offset)."""
    signs = 0
    for seed in range(4):
        ts, x, onset = seasonal_metric(seed)
        det = AnomalyDetector()
        alarming = 0
        for i, (v, t) in enumerate(zip(x.tolist(), ts.tolist())):
            score = det.update(v, t)
            if onset <= i < onset + 288 and score >= 0.5:
                alarming += 1
                e = det.last_explanation
                if e.kind == "seasonal" and abs(e.season_fit_z) >= det.config.season_fit_z:
                    assert e.season_fit_z * e.seasonal_offset < 0.0
                    signs += 1
        assert alarming <= 48, (seed, alarming)
    assert signs >= 4

