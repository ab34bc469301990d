"""Window coverage and thinning (issue 8, #13): a window must mean its length. A distribution series
arriving faster than its ring holds keeps a uniform share, its quantiles within the stated DKW rank
bound; every other series reports the share of its window it still covers."""
import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aphrodite_sla import ManualClock, SLAManager, SLAThreshold, Statistic
from aphrodite_sla.export.collector import SLACollector
from aphrodite_sla.store.metric_store import MetricStore
from aphrodite_sla.store.spec import MetricSpec
from aphrodite_sla.store.thinning import Thinning, rank_error_bound

T0 = 1_700_000_000.0


def _feed(mgr: SLAManager, clock: ManualClock, series: str, seconds: float, per_step: int, steps_per_s: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Engine-like traffic: ``per_step`` values at each step, evaluated once a second. Returns every
    value with its time (the ground truth)."""
    all_t, all_v = [], []
    dt = 1.0 / steps_per_s
    for _ in range(int(seconds)):
        for _ in range(steps_per_s):
            clock.advance(dt)
            v = rng.lognormal(3.4, 0.35, per_step)
            mgr.record_batch(series, v, clock())
            all_t.append(np.full(per_step, clock()))
            all_v.append(v)
        mgr.evaluate()
    return np.concatenate(all_t), np.concatenate(all_v)


def _manager(thin: bool, clock: ManualClock) -> SLAManager:
    mgr = SLAManager([], clock=clock, anomaly_detection=False)
    mgr.register_metric("itl_ms", 300.0, 1000.0, unit="ms", thin=thin)
    mgr.watch_window("itl_ms", 300.0, quantiles=(0.5, 0.95, 0.99))
    return mgr


def test_fast_thin_series_covers_its_window_with_quantiles_within_the_stated_bound():
    # 256 running requests x 25 steps/s = 6,400 inter-token latencies a second into a ring sized
    # for 1,000 a second over 300 s
    clock = ManualClock(T0)
    mgr = _manager(True, clock)
    t, v = _feed(mgr, clock, "itl_ms", 330, 256, 25, np.random.default_rng(1))
    snap = mgr.snapshot()
    assert snap.coverage[("itl_ms", 300.0)] == 1.0
    keep = mgr.store.keep_probability("itl_ms")
    assert keep == 2.0**-3  # 6400 / 2**3 = 800 a second, within the ring's 1000
    w = snap.window("itl_ms", 300.0)
    truth = np.sort(v[t > clock() - 300.0])
    assert w.samples == pytest.approx(truth.size * keep, rel=0.02)
    bound = rank_error_bound(w.samples, 0.999)
    for q, value in w.quantiles.items():
        rank = np.searchsorted(truth, value, side="right") / truth.size  # where our estimate sits
        assert abs(rank - q) <= bound, (q, rank, bound)
    thinned = snap.health.thinned_samples["itl_ms"]
    assert thinned == pytest.approx(v.size * (1 - keep), rel=0.05)  # most of the time at 1/8
    assert mgr.store.buffer("itl_ms").evicted_in_window == 0


def test_a_series_that_may_not_be_thinned_reports_how_little_of_its_window_it_covers():
    clock = ManualClock(T0)
    mgr = _manager(False, clock)
    _feed(mgr, clock, "itl_ms", 120, 256, 25, np.random.default_rng(2))
    coverage = mgr.snapshot().coverage[("itl_ms", 300.0)]
    # 300,000 slots at 6,400 a second hold the newest ~47 s of the 300 s window
    assert coverage == pytest.approx(300_000 / 6_400 / 300.0, abs=0.01)
    registry = CollectorRegistry()
    registry.register(SLACollector(mgr.snapshot, model_name="m"))
    text = generate_latest(registry).decode()
    assert f'sla_window_coverage_ratio{{model_name="m",series="itl_ms",window="300s"}} {coverage!r}' in text


def test_a_ring_that_holds_the_window_reports_full_coverage_and_exact_quantiles():
    clock = ManualClock(T0)
    mgr = _manager(True, clock)
    t, v = _feed(mgr, clock, "itl_ms", 320, 20, 25, np.random.default_rng(3))  # 500 a second: kept whole
    snap = mgr.snapshot()
    assert snap.coverage[("itl_ms", 300.0)] == 1.0
    assert "itl_ms" not in snap.health.thinned_samples
    truth = v[t > clock() - 300.0]
    w = snap.window("itl_ms", 300.0)
    assert w.samples == truth.size
    assert w.quantiles[0.99] == np.percentile(truth, 99)


def test_a_series_read_as_a_rate_is_never_thinned():
    store = MetricStore(ManualClock(T0))
    store.register(MetricSpec("tokens", 60.0, 10.0, thin=True))
    store.register(MetricSpec("tokens", 60.0, 10.0, thin=False))  # a rate reader joins
    assert store.spec("tokens").thin is False
    assert store.record_batch("tokens", np.ones(10_000)) == 10_000
    assert store.keep_probability("tokens") == 1.0
    sla = SLAThreshold("tps", 100.0, 10.0, 1, statistic=Statistic.RATE, source_metric="gen_tokens", sample_rate_hz=5.0)
    mgr = SLAManager([sla], clock=ManualClock(T0), anomaly_detection=False)
    assert mgr.store.spec("gen_tokens").thin is False
    quantile_sla = SLAThreshold("lat_p99", 100.0, 10.0, 1, statistic=Statistic.P99, source_metric="lat", sample_rate_hz=5.0)
    mgr.add_threshold(quantile_sla)
    assert mgr.store.spec("lat").thin is True


def test_the_keep_share_falls_at_once_in_a_surge_and_recovers_after_the_window():
    th = Thinning(1000.0, tau_s=60.0, seed=0)
    for s in range(5):
        assert th.observe(T0 + s, 500) == 1.0
    # a surge to 8,000 a second: thinned within its first second
    assert th.observe(T0 + 5.0, 8000) <= 0.25
    for s in range(6, 30):
        th.observe(T0 + s, 8000)
    assert th.keep == 2.0**-3  # 8000 / 8 = the ring's 1000 a second
    # back to 500 a second: the share comes back only as the peak decays (time constant 60 s)
    for s in range(30, 60):
        th.observe(T0 + s, 500)
    assert th.keep < 1.0
    for s in range(60, 400):
        th.observe(T0 + s, 500)
    assert th.keep == 1.0


def test_a_backfilled_batch_counts_at_its_own_density():
    store = MetricStore(ManualClock(T0 + 150), thinning_seed=0)
    store.register(MetricSpec("lat", 300.0, 100.0, thin=True))
    times = T0 + np.arange(3000) * 0.05  # 150 s of samples at 20 a second
    assert store.record_batch("lat", np.ones(3000), times) == 3000
    assert store.keep_probability("lat") == 1.0
    assert len(store.buffer("lat")) == 3000


def test_record_one_at_a_time_is_thinned_too():
    clock = ManualClock(T0)
    store = MetricStore(clock, thinning_seed=4)
    store.register(MetricSpec("lat", 60.0, 10.0, thin=True))
    for i in range(4000):
        clock.set(T0 + i / 400.0)  # 400 a second into a budget of 9
        assert store.record("lat", 1.0) is True  # accepted: represented by the kept share
    assert store.keep_probability("lat") == 2.0**-6
    kept = len(store.buffer("lat"))
    assert kept + store.thinned()["lat"] == 4000
    assert kept < 4000 * 0.1


@pytest.mark.parametrize(("n", "expected"), [(300_000, 0.00297), (15_000, 0.01329), (0, 1.0)])
def test_rank_error_bound_is_the_dkw_epsilon(n, expected):
    assert rank_error_bound(n, 0.99) == pytest.approx(expected, abs=5e-5)
    if n:
        assert rank_error_bound(n, 0.99) == pytest.approx(math.sqrt(math.log(200.0) / (2 * n)), rel=1e-12)
