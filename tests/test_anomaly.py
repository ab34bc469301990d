"""Tests of the streaming anomaly detector: what must page (each kind of anomaly, at its onset),
what must not (healthy noise of many kinds, changes below a metric's resolution), the shape of the
score (an onset signal that decays once the new regime persists), robustness to bad input, and
its invariants (score range, determinism, bounded state). Speed is measured by
``benchmarks/bench_anomaly.py``, not here."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anomaly_series as S

from aphrodite_sla.sla.anomaly import (
    AnomalyDetector,
    AnomalyDetectorConfig,
    AnomalyExplanation,
    WindowedGaussianDetector,
    WindowedZScoreDetector,
    z_to_score,
    zscore,
)

ALERT = 0.5
REARM = 0.25
STEP = 5.0  # the SLA manager evaluates every few seconds


def feed(det: AnomalyDetector | WindowedZScoreDetector | WindowedGaussianDetector, values: Any,
         t0: float = S.T0, step: float = STEP) -> np.ndarray:
    return np.array([det.update(float(v), t0 + step * i) for i, v in enumerate(values)])


def constant_then(value: float, n: int = 120) -> AnomalyDetector:
    det = AnomalyDetector()
    feed(det, np.full(n, value))
    return det


# ----------------------------------------------------------------------------- resolution floor


def test_change_below_resolution_of_a_constant_series_is_not_an_anomaly():
    det = constant_then(3072.0)
    score = det.update(3072.0 + 1e-6, S.T0 + STEP * 120)  # 6 KB on 3 GB
    assert score < 0.01
    assert det.last_explanation.kind == "none"


@pytest.mark.parametrize("factor", [1.2, 0.8])
def test_large_change_of_a_constant_series_is_an_anomaly(factor):
    det = constant_then(3072.0)
    assert det.update(3072.0 * factor, S.T0 + STEP * 120) >= ALERT


def test_constant_series_scores_zero_and_stays_finite():
    det = AnomalyDetector(season_seconds=None)
    out = feed(det, np.full(500, 7.0))
    assert np.all(np.isfinite(out)) and out.max() < 0.01
    assert det.update(9.0, S.T0 + STEP * 500) >= ALERT


def test_small_steps_of_a_quantised_gauge_are_normal():
    ex = S.healthy("near_constant", seed=3)  # 3072 with rare +-1 steps
    scores = S.run(AnomalyDetector(), ex)
    assert len(S.alert_stream(scores[400:])) == 0


def _gauge_with_steps(value: float, quantum: float, steps: dict[int, float], n: int = 1500) -> np.ndarray:
    """An exact value that moves by ``steps[i]`` quanta at sample ``i``."""
    x = np.full(n, value)
    for i, k in steps.items():
        x[i:] += k * quantum
    return x


@pytest.mark.parametrize(("value", "quantum"), [(8192.0, 10.0), (256.0, 1.0), (40.0, 0.1)])
def test_one_step_of_a_gauge_that_stands_still_is_its_ordinary_change(value, quantum):
    x = _gauge_with_steps(value, quantum, {400: 1.0, 800: -1.0, 1200: 1.0})
    scores = feed(AnomalyDetector(season_seconds=None), x)
    assert scores[300:].max() < ALERT


def test_without_the_step_floor_one_step_of_a_still_gauge_pages():
    """The level statistics' step floor is what keeps the step above quiet (this test fails if the
    floor stops working, not only if the gauge happens to be quiet)."""
    x = _gauge_with_steps(8192.0, 10.0, {400: 1.0, 800: -1.0, 1200: 1.0})
    scores = feed(AnomalyDetector(season_seconds=None, step_floor=0.0), x)
    assert len(S.alert_stream(scores[300:])) >= 1


def _sparse_count_rising(seed: int) -> np.ndarray:
    """Errors a minute: Poisson at 0.03 (mostly 0, blips of 1), then at 1 from sample 2000."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.poisson(0.03, 2000), rng.poisson(1.0, 300)]).astype(float)


def _pages_on_the_rise(seeds: range) -> int:
    found = 0
    for seed in seeds:
        scores = feed(AnomalyDetector(season_seconds=None), _sparse_count_rising(seed), step=60.0)
        found += int(scores[2000:2060].max() >= ALERT)
    return found


def test_a_sparse_count_is_no_still_gauge_a_rate_rise_of_one_step_pages():
    assert _pages_on_the_rise(range(6)) >= 5


def test_a_still_metric_learns_whether_its_steps_are_moves_or_blips():
    """A gauge's steps persist (it gets the step floor); a sparse count's blips undo themselves at
    the next sample (it does not: its level is the rate of blips)."""
    from aphrodite_sla.sla.anomaly.baseline import UNDONE
    gauge = AnomalyDetector(season_seconds=None)
    feed(gauge, _gauge_with_steps(256.0, 1.0, {i: (-1.0) ** i for i in range(100, 1500, 60)}))
    count = AnomalyDetector(season_seconds=None)
    feed(count, np.random.default_rng(3).poisson(0.03, 2000).astype(float), step=60.0)
    assert gauge._m is not None and count._m is not None
    assert gauge._m.base.undo < UNDONE < count._m.base.undo


@pytest.mark.parametrize("steps", [3.0, -3.0])
def test_a_shift_of_several_steps_of_a_still_gauge_pages(steps):
    x = _gauge_with_steps(256.0, 1.0, {400: 1.0, 800: steps})
    scores = feed(AnomalyDetector(season_seconds=None), x)
    assert scores[800:840].max() >= ALERT


# ----------------------------------------------------------------------------- onset signal


def test_level_shift_alarms_at_onset_then_decays_and_the_recovery_is_quiet():
    rng = np.random.default_rng(3)
    x = 50.0 + rng.normal(0.0, 1.0, 3000)
    x[1500:2500] += 8.0  # a persistent step of 8 sd, later undone
    det = AnomalyDetector(season_seconds=None)
    out = feed(det, x)
    assert out[1500:1502].max() >= ALERT, "no alarm at the onset"
    below = np.flatnonzero(out[1500:] < REARM)
    assert below.size and below[0] <= 30, "the score did not decay once the new level persisted"
    assert not np.any(out[1530:2500] >= ALERT), "still alarming long after the new level persisted"
    assert len(S.alert_stream(out[2490:2600])) <= 1, "the return to the old level alarmed more than once"
    assert not np.any(out[2600:] >= ALERT)


def test_a_spike_alarms_for_one_sample_only():
    ex = S.anomalous("spike")
    out = S.run(AnomalyDetector(), ex)
    assert out[ex.onset] >= ALERT
    assert out[ex.onset + 1:ex.onset + 100].max() < ALERT


def test_a_storm_of_moderate_outliers_pages_as_spike_density_then_becomes_normal():
    rng = np.random.default_rng(11)
    n0, n1 = 2000, 600
    values = 100.0 + rng.normal(0.0, 1.0, n0 + n1)
    # isolated outliers of 3.5-4.5 sd (below the spike threshold) at one sample in eight
    hits = n0 + np.flatnonzero(rng.random(n1) < 0.125)
    values[hits] += rng.uniform(3.5, 4.5, hits.size)
    det = AnomalyDetector(season_seconds=None)
    kinds = []
    out = []
    for i, v in enumerate(values):
        out.append(det.update(float(v), S.T0 + STEP * i))
        kinds.append(det.last_explanation.kind)
    out_a = np.array(out)
    first = [i for i in S.alert_stream(out_a) if i >= n0]
    assert first and first[0] < n0 + 150 and kinds[first[0]] == "spike_density"
    assert det.last_explanation.density_llr >= 0.0
    # the storm goes on: after it is accepted the rate is the metric's own, not a page a minute
    assert len([i for i in S.alert_stream(out_a) if i >= n0 + 300]) <= 1


def test_persistent_new_variance_is_accepted():
    ex = S.anomalous("variance_change")
    out = S.run(AnomalyDetector(), ex)
    assert out[ex.onset:ex.onset + 20].max() >= ALERT
    # the wider noise lasts 300 samples: after a while it is the new normal, not a page a minute
    assert len(S.alert_stream(out[ex.onset + 50:ex.end])) <= 2


# ----------------------------------------------------------------------------- detection


# (kind, samples from the onset within which the first alert must come, kinds it may be explained as)
DETECTION = [
    ("spike", 0, {"spike"}),
    ("dip", 0, {"spike"}),
    ("level_shift_up", 1, {"spike", "level_shift"}),
    ("level_shift_down", 1, {"spike", "level_shift"}),
    ("variance_change", 15, {"spike", "level_shift", "variance_change"}),
    ("ramp", 80, {"drift", "level_shift"}),
    ("spike_density", 40, {"variance_change", "level_shift", "spike", "drift", "spike_density"}),
    ("flatline", 10, {"flatline"}),
    ("outage", 0, {"spike"}),
    ("error_burst", 1, {"spike", "level_shift"}),
    ("seasonal_jump", 5, {"spike", "level_shift", "seasonal"}),
    ("season_flat", 10, {"spike", "level_shift", "seasonal", "drift"}),
]


@pytest.mark.parametrize("kind,max_delay,explained", DETECTION, ids=[d[0] for d in DETECTION])
@pytest.mark.parametrize("seed", [0, 2])
def test_each_kind_of_anomaly_is_detected_early(kind, max_delay, explained, seed):
    ex = S.anomalous(kind, seed)
    det = AnomalyDetector()
    scores, kinds = [], []
    for t, v in zip(ex.timestamps.tolist(), ex.values.tolist()):
        scores.append(det.update(v, t))
        kinds.append(det.last_explanation.kind)
    out = np.asarray(scores)
    hits = np.flatnonzero(out[ex.onset:] >= ALERT)
    assert hits.size, f"{kind}: never alarmed"
    assert hits[0] <= max_delay, f"{kind}: first alarm {hits[0]} samples after the onset"
    assert kinds[ex.onset + int(hits[0])] in explained
    # and it was quiet in the day before (the learning period aside)
    day = int(round(86_400.0 / (ex.timestamps[1] - ex.timestamps[0])))
    assert len(S.alert_stream(out[max(400, ex.onset - day):ex.onset - 5])) <= 1


# ----------------------------------------------------------------------------- false alarms


@pytest.mark.parametrize("family", S.HEALTHY)
def test_healthy_series_do_not_page(family):
    """At most one alert in 2 x 3,600 samples after learning (< 0.3 per 1,000), typically none."""
    n_alerts = 0
    for seed in (0, 1):
        ex = S.healthy(family, seed=seed)
        out = S.run(AnomalyDetector(), ex)
        learned = 1500 if family == "regimes" else 400  # a new operating level is news the first times
        n_alerts += int(np.count_nonzero(S.alert_stream(out) >= learned))
        assert float(np.median(out[400:])) < 0.1  # near 0 on normal data, not just under 0.5
    assert n_alerts <= 1, f"{family}: {n_alerts} alerts"


def test_long_healthy_series_at_five_seconds_page_rarely():
    """A day of 5-second samples of noisy, autocorrelated, heavy-tailed latency: at most one alert
    (the target is well under one per 8 hours)."""
    rng = np.random.default_rng(12)
    n = 17_280
    ts = S.T0 + STEP * np.arange(n)
    load = 0.2 * np.sin(2.0 * np.pi * ts / 86_400.0)
    noise = S.ar1(rng, n, 0.7, 0.12) + 0.05 * rng.standard_t(5, n)
    values = np.exp(np.log(800.0) + load + noise)
    det = AnomalyDetector()
    out = np.array([det.update(v, t) for t, v in zip(ts.tolist(), values.tolist())])
    assert len(S.alert_stream(out[720:])) <= 1


def test_mostly_zero_series_blips_are_not_alarms_but_a_burst_is():
    ex = S.anomalous("error_burst", seed=5)
    out = S.run(AnomalyDetector(season_seconds=None), ex)
    assert len(S.alert_stream(out[400:ex.onset])) == 0
    assert out[ex.onset:ex.onset + 3].max() >= ALERT


def test_regime_switches_become_familiar():
    ex = S.healthy("regimes", n=6000)
    det = AnomalyDetector()
    out = S.run(det, ex)
    assert len(S.alert_stream(out[1500:])) == 0  # switching between two known levels is normal ...
    x = ex.values[-1] + 40.0  # ... a third, never-seen level is not
    t = ex.timestamps[-1]
    assert max(det.update(x + k * 0.01, t + 60.0 * (k + 1)) for k in range(5)) >= ALERT


def test_recurring_spikes_stop_paging():
    rng = np.random.default_rng(8)
    x = 100.0 + rng.normal(0.0, 1.0, 4000)
    x[200::150] += 12.0  # a batch job every 150 samples
    out = feed(AnomalyDetector(season_seconds=None), x)
    assert len(S.alert_stream(out[1500:])) == 0
    x2 = x.copy()
    x2[3500] += 40.0  # much larger than the recurring kind: news
    assert feed(AnomalyDetector(season_seconds=None), x2)[3500] >= ALERT


@pytest.mark.parametrize("event_memory", [None, 2000])
def test_spikes_recurring_every_80_minutes_at_5_s_sampling_stop_paging(event_memory):
    """A benign dip every ~80 minutes at 5 s sampling (1,000 samples apart): the spike memory must
    span several of them, or every one pages (it did with a 2,000-sample memory)."""
    rng = np.random.default_rng(12)
    x = 100.0 + rng.normal(0.0, 1.0, 12_000)
    x[600::1000] -= 15.0
    kw = {} if event_memory is None else {"event_memory": event_memory}
    alerts = len(S.alert_stream(feed(AnomalyDetector(season_seconds=None, **kw), x)[6000:]))
    if event_memory is None:
        assert alerts == 0
    else:  # the shorter memory is the failure this test guards against
        assert alerts >= 2


# ----------------------------------------------------------------------------- seasonality


def test_daily_cycle_is_learned_and_not_flagged():
    rng = np.random.default_rng(21)
    ts = S.times(5 * 1440)
    truth = 0.4 * S.diurnal(ts, 0.3)
    values = np.exp(np.log(80.0) + truth + S.ar1(rng, len(ts), 0.6, 0.05))
    det = AnomalyDetector(log_transform=True)
    offsets, scores = [], []
    for t, v in zip(ts.tolist(), values.tolist()):
        scores.append(det.update(v, t))
        offsets.append(det.last_explanation.seasonal_offset)
    assert len(S.alert_stream(np.asarray(scores)[3 * 1440:])) == 0
    tail = slice(3 * 1440, None)
    corr = np.corrcoef(np.asarray(offsets)[tail], truth[tail])[0, 1]
    assert corr > 0.95, corr
    amp = np.std(np.asarray(offsets)[tail]) / np.std(truth[tail])
    assert 0.7 < amp < 1.2, amp


def test_seasonality_disabled_without_season():
    det = AnomalyDetector(season_seconds=None)
    feed(det, 100.0 + 10.0 * np.sin(np.arange(5000) / 50.0), step=60.0)
    assert det.last_explanation.seasonal_offset == 0.0


# ----------------------------------------------------------------------------- explanation


def test_spike_explanation():
    rng = np.random.default_rng(4)
    det = AnomalyDetector(season_seconds=None)
    feed(det, np.exp(np.log(120.0) + rng.normal(0.0, 0.1, 600)))
    score = det.update(600.0, S.T0 + STEP * 600)
    ex = det.last_explanation
    assert isinstance(ex, AnomalyExplanation)
    assert score >= 0.9 and ex.score == score
    assert ex.kind == "spike" and ex.component == "spike" and ex.z > 0 and ex.spike_z > 5
    assert ex.ratio >= 1.0
    assert 100.0 < ex.expected < 145.0  # the one-step expectation, in the metric's units
    assert ex.value == 600.0 and ex.timestamp == S.T0 + STEP * 600


def test_warmup_and_quiet_explanations():
    det = AnomalyDetector(warmup=30)
    assert det.last_explanation.kind == "none"
    rng = np.random.default_rng(0)
    out = feed(det, 100.0 + rng.normal(0.0, 1.0, 30))
    assert np.all(out == 0.0)
    assert det.last_explanation.kind == "warmup"
    feed(det, 100.0 + rng.normal(0.0, 0.01, 200), t0=S.T0 + STEP * 30)
    assert det.last_explanation.kind in {"none", "spike", "level_shift", "drift", "variance_change"}
    assert det.last_explanation.score < ALERT


# ----------------------------------------------------------------------------- bad input


BAD_VALUES: list[Any] = [math.nan, math.inf, -math.inf, None, "abc", object(), [1.0], float("nan")]


def test_non_finite_input_is_no_evidence_and_does_not_poison_state():
    rng = np.random.default_rng(7)
    x = 100.0 + rng.normal(0.0, 2.0, 800)
    x[500] = 160.0
    clean, dirty = AnomalyDetector(), AnomalyDetector()
    ref = feed(clean, x)
    got: list[float] = []
    for i, v in enumerate(x):
        t = S.T0 + STEP * i
        if i % 37 == 5 or i == 500:
            before = got[-1] if got else 0.0
            for bad in BAD_VALUES:
                assert dirty.update(bad, t) == before  # bad value: the previous score, state untouched
                assert dirty.update(v, bad) == before  # bad timestamp likewise
        got.append(dirty.update(v, t))
    np.testing.assert_array_equal(np.asarray(got), ref)
    assert dirty.n_samples == clean.n_samples == len(x)
    assert ref[500] >= ALERT  # the spike after the bad inputs is still seen


def test_extreme_magnitudes_stay_in_range_and_recover():
    det = AnomalyDetector(season_seconds=None, warmup=5)
    rng = np.random.default_rng(9)
    feed(det, 10.0 + rng.normal(0.0, 1.0, 200))
    for i, v in enumerate([1e300, -1e300, 1e-300, 0.0, 5e-324, 1.7e308, -1.7e308]):
        sc = det.update(v, S.T0 + STEP * (200 + i))
        assert 0.0 <= sc <= 1.0
    out = feed(det, 10.0 + rng.normal(0.0, 1.0, 600), t0=S.T0 + STEP * 300)
    assert np.all(np.isfinite(out)) and np.all((out >= 0.0) & (out <= 1.0))
    assert len(S.alert_stream(out[200:])) <= 1  # the model settles back on the normal data


def test_out_of_order_and_irregular_timestamps_are_tolerated():
    rng = np.random.default_rng(8)
    n = 4 * 1440
    ts = S.times(n) + rng.uniform(-20.0, 20.0, n)
    swap = rng.choice(n - 1, 200, replace=False)
    ts[swap], ts[swap + 1] = ts[swap + 1].copy(), ts[swap].copy()
    ts[1000] -= 5 * 86_400.0  # one sample from days ago
    values = np.exp(np.log(80.0) + 0.3 * S.diurnal(ts) + S.ar1(rng, n, 0.6, 0.1))
    det = AnomalyDetector()
    out = np.array([det.update(v, t) for t, v in zip(ts.tolist(), values.tolist())])
    assert np.all((out >= 0.0) & (out <= 1.0))
    assert len(S.alert_stream(out[1100:])) <= 2


def _finite_state(obj: object, seen: set[int] | None = None) -> list[str]:
    """Names of non-finite float attributes anywhere in the detector's model (nan placeholders
    for "no previous sample yet" aside)."""
    seen = set() if seen is None else seen
    bad = []
    for name in getattr(type(obj), "__slots__", ()):
        if not hasattr(obj, name) or id(obj) in seen:
            continue
        val = getattr(obj, name)
        if isinstance(val, float) and math.isinf(val) and name not in ("ms_delta",):
            bad.append(name)
        elif hasattr(type(val), "__slots__") and not isinstance(val, type):
            bad += _finite_state(val, seen | {id(obj)})
    return bad


values_strategy = st.lists(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e-300, 5e-324, 1.0, 1.0 + 1e-12]),
        st.floats(min_value=-1e6, max_value=1e6),
    ),
    min_size=1,
    max_size=150,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=values_strategy, step=st.sampled_from([1.0, 5.0, 3600.0, -60.0, 0.0]),
       warmup=st.integers(min_value=3, max_value=12))
def test_scores_always_in_unit_interval(values, step, warmup):
    det = AnomalyDetector(warmup=warmup)
    for i, v in enumerate(values):
        sc = det.update(v, S.T0 + step * i)
        assert isinstance(sc, float) and 0.0 <= sc <= 1.0
        assert 0.0 <= det.last_explanation.score <= 1.0
    assert _finite_state(det._m) == []  # extremes must not leave the model state infinite


# ----------------------------------------------------------------------------- invariants


def test_deterministic_and_reset():
    ex = S.anomalous("seasonal_jump")
    det = AnomalyDetector()
    a = S.run(det, ex)
    np.testing.assert_array_equal(S.run(AnomalyDetector(), ex), a)
    det.reset()
    assert det.n_samples == 0 and det.last_explanation.kind == "none"
    np.testing.assert_array_equal(S.run(det, ex), a)


def test_state_is_bounded():
    """O(1) memory: no container in the state grows with the number of samples."""
    det = AnomalyDetector()
    rng = np.random.default_rng(10)
    n = 40_000
    x = np.exp(3.0 + rng.normal(0.0, 0.3, n))
    x[::97] *= 3.0  # outliers and jumps exercise the memories
    x[20_000:] *= 2.0
    feed(det, x, step=30.0)

    def sizes(obj: object, depth: int = 0) -> list[int]:
        out = []
        for name in getattr(type(obj), "__slots__", ()):
            val = getattr(obj, name, None)
            if isinstance(val, (list, tuple, dict, deque)):
                out.append(len(val))
            elif hasattr(type(val), "__slots__") and depth < 4:
                out.extend(sizes(val, depth + 1))
        return out

    assert max(sizes(det._m)) <= 7 * 24  # the weekly profile's bins are the largest container


def test_config_validation_and_construction():
    with pytest.raises(ValueError):
        AnomalyDetector(warmup=1)
    with pytest.raises(ValueError):
        AnomalyDetector(season_seconds=0.0)
    with pytest.raises(ValueError):
        AnomalyDetectorConfig(fast_alpha=0.0)
    with pytest.raises(ValueError):
        AnomalyDetector(spike_z=-1.0)
    with pytest.raises(ValueError):
        AnomalyDetectorConfig(relative_floor=1.5)
    with pytest.raises(TypeError):
        AnomalyDetector(AnomalyDetectorConfig(), warmup=10)
    det = AnomalyDetector(config=AnomalyDetectorConfig(spike_z=4.0, season_seconds=None))
    assert det.config.spike_z == det.config.threshold_z == 4.0
    assert AnomalyDetector().config == AnomalyDetectorConfig()


def test_import_does_not_load_numba_or_scipy():
    code = ("import sys; import aphrodite_sla.sla.anomaly as a; a.AnomalyDetector().update(1.0, 0.0); "
            "print('numba' in sys.modules, 'scipy' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------- baselines, helpers


def test_zscore_matches_numpy_and_handles_degenerate_baselines():
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert zscore(9.0, b) == pytest.approx((9.0 - b.mean()) / b.std(ddof=1))
    assert zscore(1.0, np.array([1.0])) == 0.0
    assert zscore(1.0, np.array([])) == 0.0
    assert zscore(5.0, np.full(10, 3.0)) == 0.0
    assert zscore(math.nan, b) == 0.0
    assert zscore(4.0, np.array([1.0, math.nan, 3.0])) == pytest.approx(2.0 / math.sqrt(2.0))  # NaN ignored
    assert math.isfinite(zscore(1.0, np.array([1e300, -1e300, 1e300])))


def test_z_to_score_curve():
    assert z_to_score(0.0, 5.0) == 0.0
    assert z_to_score(5.0, 5.0) == pytest.approx(0.5)
    assert z_to_score(-5.0, 5.0) == pytest.approx(0.5)
    assert z_to_score(10.0, 5.0) == pytest.approx(1.0 - 2.0**-4)
    assert z_to_score(math.nan, 5.0) == 0.0
    assert z_to_score(1e308, 5.0) == 1.0


def test_windowed_zscore_baseline_flags_a_spike_at_2_5_sd():
    rng = np.random.default_rng(11)
    det = WindowedZScoreDetector(window=100)
    feed(det, rng.normal(0.0, 1.0, 300))
    assert det.update(0.1, S.T0 + 1e6) < ALERT
    assert det.update(8.0, S.T0 + 1e6 + 60) >= ALERT
    assert det.update(math.nan, S.T0 + 1e6 + 120) >= ALERT  # invalid: previous score returned


def test_windowed_gaussian_baseline():
    rng = np.random.default_rng(12)
    det = WindowedGaussianDetector(window=500, alert_tail=1e-4)
    out = feed(det, 10.0 + rng.normal(0.0, 1.0, 2000))
    assert np.count_nonzero(out[100:] >= ALERT) <= 2
    assert det.update(10.0 + 3.5, S.T0) < ALERT
    assert det.update(10.0 + 4.5, S.T0) >= ALERT  # |z| 3.89 is tail 1e-4
    for bad in (math.nan, math.inf, None, "x"):
        assert det.update(bad, S.T0) >= ALERT  # type: ignore[arg-type]  # the previous score
    with pytest.raises(ValueError):
        WindowedGaussianDetector(alert_tail=0.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=values_strategy)
def test_baseline_scores_always_in_unit_interval(values):
    for det in (WindowedZScoreDetector(window=20), WindowedGaussianDetector(window=20, min_samples=3)):
        for i, v in enumerate(values):
            sc = det.update(v, S.T0 + i)
            assert 0.0 <= sc <= 1.0


def test_the_chosen_transform_maps_values_into_the_explanations_model_space():
    """``AnomalyDetector.transform`` (None during warm-up) is the space ``last_explanation``'s
    scale and expectation live in: a healthy value lies within a few scales of the expectation
    there (in value units it would be ~20 of the ~0.3 log-scale away)."""
    rng = np.random.default_rng(5)
    det = AnomalyDetector()
    assert det.transform is None
    values = np.exp(rng.normal(3.0, 0.3, 600))  # skewed, positive: a log-space metric
    for i, v in enumerate(values.tolist()):
        det.update(v, float(i))
    tr = det.transform
    assert tr is not None and tr.log_space
    v = float(values[-1])
    assert tr.forward(v) == pytest.approx(math.log(v + tr.offset))
    assert tr.inverse(tr.forward(v)) == pytest.approx(v)
    ex = det.last_explanation
    assert abs(tr.forward(v) - tr.forward(ex.expected)) < 5.0 * ex.scale
    assert abs(v - ex.expected) > 5.0 * ex.scale  # the space matters
