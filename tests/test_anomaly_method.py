"""Tests of the parts of the anomaly detector's method that the behavioural tests in
``test_anomaly.py`` do not pin down one by one: the transform re-check, the robust spreads, the
delayed level reference, and the written-out seasonal path against its reference implementation."""
from __future__ import annotations

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anomaly_series as S

from aphrodite_sla.sla.anomaly import AnomalyDetector
from aphrodite_sla.sla.anomaly.scoring import MAD_TO_SD, RunningSpread
from aphrodite_sla.sla.anomaly.transform import noise_elasticity, recheck_transform

DAY = 86_400.0


def daily_series(n: int, step: float, multiplicative: bool, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A daily curve (x3 peak to trough) starting at its quiet trough, with noise that scales with
    the level (``multiplicative``) or does not."""
    rng = np.random.default_rng(seed)
    t = S.T0 + step * np.arange(n, dtype=np.float64)
    curve = -np.cos(2.0 * np.pi * (t - t[0]) / DAY)  # starts at its minimum
    if multiplicative:
        x = np.exp(np.log(1000.0) + 0.55 * curve + rng.normal(0.0, 0.08, n))
    else:
        x = 1000.0 + 500.0 * curve + rng.normal(0.0, 40.0, n)
    return t, x


# ----------------------------------------------------------------------------- transform re-check


def test_noise_elasticity_tells_multiplicative_from_additive_noise():
    _, mult = daily_series(600, 300.0, True)
    _, add = daily_series(600, 300.0, False)
    e_mult = noise_elasticity(mult)
    e_add = noise_elasticity(add)
    assert e_mult is not None and e_add is not None
    assert e_mult > 0.7 and e_add < 0.3
    assert noise_elasticity(np.full(300, 5.0)) is None  # no level change: cannot tell
    assert noise_elasticity(np.arange(20.0)) is None  # too short


def test_recheck_keeps_negative_values_and_small_counts_as_they_are():
    rng = np.random.default_rng(2)
    counts = rng.poisson(np.linspace(1.0, 6.0, 300)).astype(float)
    assert recheck_transform(counts, False) is False
    assert recheck_transform(counts - 10.0, False) is False
    assert recheck_transform(np.full(300, 7.0), True) is True  # nothing to tell: as before


def test_transform_is_rechecked_after_a_quiet_warmup():
    """A warm-up at the night's trough looks narrow (linear); a few hundred samples later the
    noise is seen to grow with the level, and the model is rebuilt in log space."""
    t, x = daily_series(700, 300.0, True)
    det = AnomalyDetector()
    scores = [det.update(v, ts) for v, ts in zip(x[:299].tolist(), t[:299].tolist())]
    assert det._m is not None and not det._m.transform.log_space
    for v, ts in zip(x[299:].tolist(), t[299:].tolist()):
        scores.append(det.update(v, ts))
    assert det.last_explanation.log_space
    assert det._early is None  # the kept samples are released
    assert all(0.0 <= s <= 1.0 for s in scores)
    again = AnomalyDetector()
    assert [again.update(v, ts) for v, ts in zip(x.tolist(), t.tolist())] == scores  # deterministic


def test_additive_noise_goes_back_to_linear_and_a_forced_transform_is_kept():
    t, x = daily_series(700, 300.0, False)
    det = AnomalyDetector()
    for v, ts in zip(x[:60].tolist(), t[:60].tolist()):
        det.update(v, ts)
    first = det.last_explanation.log_space
    for v, ts in zip(x[60:].tolist(), t[60:].tolist()):
        det.update(v, ts)
    assert not det.last_explanation.log_space
    forced = AnomalyDetector(log_transform=True)
    for v, ts in zip(x.tolist(), t.tolist()):
        forced.update(v, ts)
    assert forced.last_explanation.log_space and forced._early is None
    assert isinstance(first, bool)


# ----------------------------------------------------------------------------- robust spreads


def test_running_spread_is_robust_to_a_burst_of_large_values():
    rng = np.random.default_rng(3)
    sp = RunningSpread(0.002, 2.0)
    for v in rng.normal(0.0, 1.0, 3000).tolist():
        sp.learn(v, 0.1)
    before = sp.sd
    assert 0.9 < before < 1.1  # a Gaussian sd from the mean absolute value
    for _ in range(30):
        sp.learn(10.0, 0.1)  # a sub-threshold anomaly that lasts a while
    assert sp.sd < 1.1 * before  # clipped at two spreads: it moves the spread by a few per cent
    assert math.isclose(MAD_TO_SD, math.sqrt(math.pi / 2.0))


def test_level_reference_judges_a_shift_against_the_level_before_it():
    """For ``level_delay`` samples after a change the level statistic's reference has learned
    nothing of it; without the delay it starts following at once. (Alert levels out of reach:
    an alarm would restart the statistic on the new level, which is another matter.)"""
    rng = np.random.default_rng(4)
    x = np.concatenate([100.0 + rng.normal(0.0, 1.0, 600), 101.5 + rng.normal(0.0, 1.0, 40)])
    refs = {}
    for delay in (0, 60):
        det = AnomalyDetector(season_seconds=None, level_delay=delay, spike_z=1e9, level_z=1e9, run_z=1e9,
                              drift_z=1e9, spread_z=1e9, combined_ratio=1e9)
        for i, v in enumerate(x[:600].tolist()):
            det.update(v, S.T0 + 60.0 * i)
        assert det._m is not None
        start = det._m.level.ref
        for i, v in enumerate(x[600:].tolist()):
            det.update(v, S.T0 + 60.0 * (600 + i))
        refs[delay] = det._m.level.ref - start
    assert abs(refs[60]) < 0.2 and refs[0] > 0.35  # 1.5 * (1 - 0.99 ** 40) = 0.5 without the delay
