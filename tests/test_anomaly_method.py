"""Tests of the parts of the anomaly detector's method that the behavioural tests in
``test_anomaly.py`` do not pin down one by one: the transform re-check, the robust spreads, the
delayed level reference, and the written-out seasonal path against its reference implementation."""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anomaly_series as S

from aphrodite_sla.sla.anomaly import AnomalyDetector
from aphrodite_sla.sla.anomaly.memory import BurstEvidence, LevelMemory
from aphrodite_sla.sla.anomaly.scoring import MAD_TO_SD, RunningSpread, log_two_sided_tail
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


# ----------------------------------------------------------------------------- persistent evidence


def test_persistent_evidence_adds_up_held_ratios_once_per_episode():
    from aphrodite_sla.sla.anomaly.statistics import PersistentEvidence

    ev = PersistentEvidence(floor=0.4, decay=0.97, h=8.0)
    held = [ev.step(0.8) for _ in range(40)]
    first = next(i for i, r in enumerate(held) if r >= 1.0)
    assert 20 <= first <= 35  # ~30 samples at 0.8 of a threshold
    ev.alarmed()
    assert ev.step(0.9) == 0.0  # the episode has been reported: blocked while it lasts ...
    assert ev.step(0.3) == 0.0  # ... until the ratio falls below the floor
    assert ev.step(0.8) > 0.0
    quiet = PersistentEvidence(floor=0.4, decay=0.97, h=8.0)
    assert max(quiet.step(0.6) for _ in range(5000)) < 1.0  # hovering below 0.64 never adds up
    brief = PersistentEvidence(floor=0.4, decay=0.97, h=8.0)
    burst = [brief.step(0.95) for _ in range(8)] + [brief.step(0.3) for _ in range(100)]
    assert max(burst) < 1.0 and burst[-1] < 0.05  # a brief excursion is forgotten


def test_a_shift_below_every_threshold_alarms_by_persistent_evidence():
    """A 0.8 sd step on Gaussian noise holds the level statistic below its threshold; held for
    dozens of samples it alarms, and the stretch before it stays quiet."""
    found = {True: 0, False: 0}
    by_evidence = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = 50.0 + rng.standard_normal(1500)
        x[1000:] += 0.8
        for with_evidence in (True, False):
            det = AnomalyDetector(season_seconds=None, **({} if with_evidence else {"evidence_h": 1e9}))
            out = np.zeros(x.size)
            first = None
            for i, v in enumerate(x.tolist()):
                out[i] = det.update(v, S.T0 + 60.0 * i)
                if first is None and i >= 1000 and out[i] >= 0.5:
                    first = det.last_explanation  # what set the first alarm, and of which kind
            assert out[400:1000].max() < 0.5
            hit = bool(out[1000:1080].max() >= 0.5)
            found[with_evidence] += hit
            if with_evidence and hit and first is not None:
                by_evidence += first.evidence >= 1.0 and first.ratio == first.evidence and \
                    first.kind in ("level_shift", "drift")
    assert found[True] == 6
    assert by_evidence >= 3  # most by the evidence that added up, named by the statistic that held
    assert found[False] < found[True]  # without it, some go unseen within 80 samples (1-2 of the 6)


# ----------------------------------------------------------------------------- outlier density


def test_an_accepted_denser_regime_fades_back_to_the_long_run_rate():
    """A density alarm accepted during a passing episode (the outliers of a widened noise) must
    not hold the base rate up for the thousands of samples its ~1,000-sample mean would take:
    the accepted excess fades, and a later rise in density is judged against the usual rate."""
    from aphrodite_sla.sla.anomaly.statistics import ExceedanceRate

    def base_after(excess_memory: float) -> tuple[float, float]:
        rate = ExceedanceRate(0.001, 0.02, 10.0, 0.08, 0.0027, excess_memory=excess_memory)
        n = 0
        for _ in range(300):  # a quiet stretch: a few outliers in a thousand
            n += 1
            if n % 250 == 0:
                rate.hit(n)
                rate.block_hits += 1
            if not n & 15:
                rate.learn_block()
        before = rate.step_hit
        for _ in range(100):  # an episode with an outlier in every fourth sample, accepted at its end
            n += 1
            if n % 4 == 0:
                rate.hit(n)
        rate.accept(n)
        assert rate.recent(n) > 0.1 and rate.step_hit < 0.5 * before  # the dense regime is the normal one, for now
        for _ in range(2000):  # quiet again (ordinary samples, no outliers)
            n += 1
            if not n & 15:
                rate.learn_block()
        return rate.p0 + rate.excess, rate.step_hit / before

    faded, hit_step = base_after(500.0)
    assert faded < 0.01 and hit_step > 0.8  # back near the quiet base rate: outliers weigh about as before
    kept, _ = base_after(1e12)
    assert kept > 0.1  # without the fade, the episode's rate would still be the norm


def test_the_lazily_decayed_recent_rate_is_the_per_sample_mean():
    from aphrodite_sla.sla.anomaly.statistics import ExceedanceRate

    rate = ExceedanceRate(0.001, 0.02, 10.0, 0.08, 0.0027)
    rng = np.random.default_rng(3)
    ew = 0.0027
    for n in range(1, 3000):
        h = bool(rng.random() < 0.05)
        ew += 0.02 * ((1.0 if h else 0.0) - ew)
        if h:
            rate.hit(n)
        assert abs(rate.recent(n) - ew) < 1e-9


# ----------------------------------------------------------------------------- familiar levels


def test_a_brief_visit_to_a_familiar_level_is_a_spike_a_lasting_one_a_regime_switch():
    """A metric that switches between two operating levels: a switch to the other level that lasts
    is old news, but three samples there and straight back is a spike (it alarms by the time the
    metric is back), not a regime switch."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = 3000
        values = np.where((np.arange(n) // 250) % 2 == 0, 60.0, 20.0) + rng.normal(0.0, 2.0, n)
        onset = 2625
        values[onset:onset + 3] = 20.0 + rng.normal(0.0, 2.0, 3)
        det = AnomalyDetector(season_seconds=None)
        out = np.zeros(n)
        kinds = []
        for i, v in enumerate(values.tolist()):
            out[i] = det.update(v, S.T0 + 60.0 * i)
            kinds.append(det.last_explanation.kind)
        first = next(i for i in range(onset, n) if out[i] >= 0.5)
        assert first <= onset + 3 and kinds[first] == "spike"
        switches = [i for i in S.alert_stream(out) if i >= 1500 and not onset <= i <= onset + 3]
        assert not switches  # the switches every 250 samples between the two familiar levels


def _level_fault(seed: int, held: int, **config: float) -> tuple[np.ndarray, int, int]:
    """Scores of a metric that ramps up to 50 and holds it for ``held`` samples, drops to 20 for 400
    samples (a fault) and comes back to 50; with the onset and the return."""
    rng = np.random.default_rng(seed)
    lead = 600
    onset = lead + held
    back = onset + 400
    n = back + 300
    values = 50.0 + rng.normal(0.0, 1.0, n)
    values[:lead - 100] -= 30.0  # a ramp up to the held level: no remembered level before it
    values[lead - 100:lead] += np.linspace(-30.0, 0.0, 100)
    values[onset:back] -= 30.0
    det = AnomalyDetector(season_seconds=None, **config)
    return np.asarray([det.update(v, S.T0 + 60.0 * i) for i, v in enumerate(values.tolist())]), onset, back


def test_the_jump_back_to_a_level_held_for_long_is_the_recovery_not_a_new_problem():
    """The level a metric held for ``familiar_held`` samples before it jumped away is familiar: the
    fault's onset alarms, the return to that level does not (it alarms when nothing is credited);
    a level held only briefly before the jump is not credited, and its return alarms."""
    for seed in range(3):
        out, onset, back = _level_fault(seed, 500)
        assert out[onset:onset + 5].max() >= 0.5
        assert out[back:back + 10].max() < 0.5
        off, _, _ = _level_fault(seed, 500, familiar_held=1e9)
        assert off[back:back + 10].max() >= 0.5
        brief, onset, back = _level_fault(seed, 60)
        assert brief[onset:onset + 5].max() >= 0.5 and brief[back:back + 10].max() >= 0.5


def test_level_memory_credits_a_held_level_and_nothing_without_a_stay():
    """``LevelMemory.jumped`` credits the stay's mean level with its samples; with no stay (even
    at ``min_held`` 0) it remembers no level that was never measured."""
    lm = LevelMemory(8, 5000, 30.0, 3, 0.0)
    lm.jumped(1.0, 5.0, 0.5)
    assert lm.centre == [1.0, 5.0] and lm.weight == [0.0, 0.0]
    lm = LevelMemory(8, 5000, 30.0, 3, 100.0)
    lm.here, lm.stay = 1.2, 120.0
    lm.jumped(0.4, 5.0, 0.5)  # the onset's samples had already moved the level to 0.4
    assert lm.familiar(1.1, 0.5) == pytest.approx(0.1) and lm.familiar(0.4, 0.5) == math.inf
    assert lm.stay == 0.0 and math.isnan(lm.here)


def test_a_stuck_value_teaches_nothing_and_the_noise_coming_back_is_no_alarm():
    """A frozen exporter repeats one value for 300 samples: the flatline alarms, and from then on
    the repeats are not learned as the metric's noise (the residual scale keeps its size), so
    the noise resuming is not a spike or a variance change."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n, freeze, back = 1500, 900, 1200
        values = np.round(100.0 + rng.normal(0.0, 2.0, n), 1)
        values[freeze:back] = values[freeze - 1]
        det = AnomalyDetector(season_seconds=None)
        out = np.zeros(n)
        scales = {}
        for i, v in enumerate(values.tolist()):
            out[i] = det.update(v, S.T0 + 60.0 * i)
            if i in (freeze - 1, back - 1):
                scales[i] = det.last_explanation.scale
        assert out[freeze:freeze + 15].max() >= 0.5  # the freeze is news
        assert scales[back - 1] == pytest.approx(scales[freeze - 1], rel=0.1)  # (the repeats before the alarm count)
        assert out[back:back + 30].max() < 0.5  # the noise coming back is not


def test_the_sample_count_and_the_explained_sample_survive_warm_up_and_the_transform_rebuild():
    """``n_samples`` and the explanation's value and timestamp are those of the valid samples,
    through the warm-up, the rebuild of the model when the re-check changes the transform, and
    invalid input in between."""
    t, x = daily_series(700, 300.0, False)
    det = AnomalyDetector()
    assert det.n_samples == 0 and math.isnan(det.last_explanation.value)
    rebuilt = False
    for i, (v, ts) in enumerate(zip(x.tolist(), t.tolist())):
        model = det._m
        det.update(v, ts)
        det.update(math.nan, ts + 1.0)  # ignored: the explanation stays that of ``v``
        rebuilt |= model is not None and det._m is not model
        assert det.n_samples == i + 1
        ex = det.last_explanation
        assert ex.value == v and ex.timestamp == ts
        if i < det.config.warmup:
            assert ex.kind == "warmup"
    assert rebuilt  # the re-check chose linear for this additive noise and rebuilt the model


def test_the_base_rate_learned_in_blocks_follows_the_per_sample_mean():
    """``p0`` learns 16 samples at a time (an ordinary sample costs nothing unless it is an
    outlier): over rates from rare to a storm it stays within 2 % of the per-sample EW mean."""
    from aphrodite_sla.sla.anomaly.statistics import ExceedanceRate

    rate = ExceedanceRate(0.001, 0.02, 10.0, 0.08, 0.0027)
    rng = np.random.default_rng(5)
    ew = 0.0027
    for n, p in enumerate(np.repeat([0.003, 0.05, 0.2, 0.01], 4000).tolist(), start=1):
        h = bool(rng.random() < p)
        ew = max(ew + 0.001 * ((1.0 if h else 0.0) - ew), rate.p_floor)
        rate.block_hits += h
        if not n & 15:
            rate.learn_block()
            assert abs(rate.p0 - ew) <= 0.02 * ew


def test_each_sign_of_outlier_has_its_own_learned_base_rate():
    """The outlier-rate CUSUM is one-sided: a metric whose ordinary outliers are mostly upward
    (a latency) learns that share, so an upward outlier weighs less than a downward one, and an
    episode adds up the steps of the sign that started it."""
    from aphrodite_sla.sla.anomaly.statistics import SHARE_MIN, ExceedanceRate

    rate = ExceedanceRate(0.001, 0.02, 10.0, 0.08, 0.0027)
    even = rate.steps_up
    assert rate.up_share == 0.5 and rate.steps_down == even  # no outliers yet: both signs alike
    assert even[0] > math.log(0.08 / 0.0027)  # each sign against half the two-sided rate: a hit weighs more
    rng = np.random.default_rng(2)
    for n in range(1, 40_000):
        if rng.random() < 0.01:  # ordinary outliers, 80 % of them upward
            rate.block_hits += 1
            rate.block_up += bool(rng.random() < 0.8)
        if not n & 15:
            rate.learn_block()
    assert 0.65 < rate.up_share < 0.9
    assert rate.steps_up[0] < rate.steps_down[0]  # the usual sign is less news
    rate.start(False)
    assert (rate.step_hit, rate.step_miss) == rate.steps_down
    rate.start(True)
    assert (rate.step_hit, rate.step_miss) == rate.steps_up
    for n in range(1, 40_000):  # only upward ones: the downward share keeps its floor
        if n % 50 == 0:
            rate.block_hits += 1
            rate.block_up += 1
        if not n & 15:
            rate.learn_block()
    assert rate.up_share == 1.0 - SHARE_MIN


def test_a_one_signed_storm_adds_up_faster_than_one_of_mixed_signs():
    """Outliers that all push one way (retries piling up) are one-sided news: the same storm with
    signs mixed at random adds up only the episode's sign, and less (same outlier times)."""
    rng = np.random.default_rng(4)
    n0, n1 = 2000, 200
    base = 100.0 + rng.normal(0.0, 1.0, n0 + n1)
    hits = n0 + np.flatnonzero(rng.random(n1) < 0.06)
    size = rng.uniform(3.5, 4.5, hits.size)
    peak = {}
    for mixed in (False, True):
        values = base.copy()
        values[hits] += size * (np.where(rng.random(hits.size) < 0.5, -1.0, 1.0) if mixed else 1.0)
        det = AnomalyDetector(season_seconds=None, density_h=1e9)  # never alarms: the CUSUM runs free
        llr = []
        for i, v in enumerate(values.tolist()):
            det.update(v, S.T0 + 60.0 * i)
            llr.append(det.last_explanation.density_llr)
        assert max(llr[400:n0]) < 8.5  # the healthy stretch stays below the alarm level
        peak[mixed] = max(llr[n0:])
    assert peak[False] > 8.5 and peak[False] > 1.5 * peak[True]


# ----------------------------------------------------------------------------- bursts of spikes


def test_burst_evidence_scores_a_run_by_the_metrics_own_rate_of_runs():
    """Two spikes in a row are far stronger evidence than either where outliers come singly, and
    less so where they come in runs; a run with an outlier short of a spike is no burst."""
    isolated = BurstEvidence(prior=0.1, prior_weight=20.0, alpha=0.02, c=3.0, min_z=4.0)
    clustered = BurstEvidence(prior=0.1, prior_weight=20.0, alpha=0.02, c=3.0, min_z=4.0)
    for _ in range(200):
        isolated.learn(False)
        clustered.learn(True)
    assert isolated.cont < 0.02 and clustered.cont > 0.9
    isolated.start(4.5)
    clustered.start(4.5)
    z_isolated = isolated.extend(4.5)
    z_clustered = clustered.extend(4.5)
    # white-noise arithmetic: T(4.5) * cont * T(4.5) / T(3), T the two-sided Gaussian tail
    tail = lambda z: math.erfc(z / math.sqrt(2.0))
    p = tail(4.5) * isolated.cont * tail(4.5) / tail(3.0)
    assert abs(tail(z_isolated) - p) / p < 0.05
    assert z_isolated > 6.5 > 5.7 > z_clustered > 5.5 > 4.5
    # the log tail where erfc underflows: continuous with the exact one at its switch (30 sd)
    assert abs(log_two_sided_tail(29.999) - math.log(tail(29.999))) < 1e-9
    assert abs(log_two_sided_tail(30.0) - log_two_sided_tail(29.999)) < 0.05
    isolated.start(4.5)
    assert isolated.extend(3.5) == 0.0  # not a spike: the burst ends
    assert isolated.extend(6.0) == 0.0  # and a later spike of the run does not revive it
    isolated.start(3.9)
    assert isolated.extend(6.0) == 0.0  # a run that started short of a spike is no burst


def test_the_second_spike_of_a_pair_scores_as_part_of_the_run(monkeypatch):
    """White noise with a pair of spikes (the second raised by the step the one-step baseline takes
    towards the first, so that both residuals are alike): scored as a run, the second spike scores
    at least what it scores alone on every seed, clearly more where both are spikes, and crosses
    the alert level where alone it would not. "Alone" is the same detector with the run's score
    switched off."""
    def second_scores() -> list[float]:
        out = []
        for seed in range(10):
            rng = np.random.default_rng(seed)
            values = 100.0 + rng.normal(0.0, 1.0, 3000)
            onset = 2500
            values[onset] += 5.0
            values[onset + 1] += 5.0 + 0.75
            det = AnomalyDetector(season_seconds=None, log_transform=False)
            scores = [det.update(v, S.T0 + 60.0 * i) for i, v in enumerate(values.tolist())]
            out.append(scores[onset + 1])
        return out

    as_run = second_scores()
    monkeypatch.setattr(BurstEvidence, "extend", lambda self, z: 0.0)
    alone = second_scores()
    assert all(r >= a - 1e-9 for r, a in zip(as_run, alone))
    assert sum(r - a >= 0.1 for r, a in zip(as_run, alone)) >= 3
    assert any(r >= 0.5 > a for r, a in zip(as_run, alone)), (as_run, alone)
