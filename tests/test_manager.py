"""SLA manager: windowed statistics, sustained-violation logic, severities, callbacks, clock
injection, regression and the background evaluator."""
import math
import threading
import time

import numpy as np
import pytest

from aphrodite_sla import (
    Direction,
    ManualClock,
    SLAManager,
    SLAThreshold,
    Statistic,
    ViolationSeverity,
    create_production_sla_manager,
)
from aphrodite_sla.events import SnapshotPublished
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.warning_rules import WarningRulesConfig

T0 = 1_700_000_000.0


def latency_sla(**kw):
    base = dict(
        metric_name="lat_p95", target_value=100.0, tolerance_percent=20.0, measurement_window_minutes=1,
        statistic=Statistic.P95, source_metric="lat", sample_rate_hz=100.0, min_samples=5,
    )
    base.update(kw)
    return SLAThreshold(**base)


def run(mgr, clock, seconds, value_at, rate_hz=10, eval_every=5.0):
    """Feed ``value_at(t)`` at ``rate_hz`` and evaluate every ``eval_every`` s; returns (t, violations)."""
    out = []
    steps = int(seconds * rate_hz)
    next_eval = clock() + eval_every
    for _ in range(steps):
        t = clock.advance(1.0 / rate_hz)
        mgr.record_measurement("lat", value_at(t))
        if t >= next_eval - 1e-9:
            out.append((t, mgr.evaluate()))
            next_eval += eval_every
    return out


def test_window_statistics_are_exact():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False)
    rng = np.random.default_rng(0)
    values = rng.lognormal(4, 0.7, 3000)
    times = T0 + np.arange(3000) * 0.05  # 150 s of samples
    clock.set(times[-1])
    assert mgr.record_batch("lat", values, times) == 3000
    in_window = values[times > times[-1] - 60]
    for stat, ref in [("p50", 50), ("p95", 95), ("p99", 99), ("max", 100), ("min", 0)]:
        value, n = mgr.window_statistic("lat", stat, 60)
        assert n == in_window.size
        assert value == np.percentile(in_window, ref)
    mean, _ = mgr.window_statistic("lat", "mean", 60)
    assert mean == pytest.approx(in_window.mean(), rel=1e-12)
    rate, _ = mgr.window_statistic("lat", "rate", 60)
    assert rate == pytest.approx(in_window.sum() / 60, rel=1e-12)


def test_no_violation_within_bounds():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False)
    results = run(mgr, clock, 180, lambda t: 90.0)
    assert all(v == [] for _, v in results)
    assert mgr.compliance_rate("lat_p95") == 100.0


def test_sustained_violation_needs_the_ratio_of_points():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla(violation_threshold_percent=80)], clock=clock, anomaly_detection=False)
    run(mgr, clock, 120, lambda t: 90.0)
    start = clock()
    results = run(mgr, clock, 120, lambda t: 200.0)
    first = next(t for t, v in results if v)
    # 12 points per 60 s window; the breach shows at the first point, and 80% of 12 points needs
    # ~10 breached points: detection between 40 s and 60 s after the start.
    assert 40 <= first - start <= 60
    v = next(v for _, v in results if v)[0]
    assert v.metric_name == "lat_p95" and v.statistic is Statistic.P95
    assert v.observed_value == 200.0 and v.bound == 120.0
    assert v.sustained_ratio >= 0.8 and v.evaluation_points >= 3
    assert v.severity is ViolationSeverity.CRITICAL  # 200/120 >= 1.5
    assert start < v.first_breach_time <= start + 6


def test_short_blip_is_not_a_violation():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False)
    run(mgr, clock, 120, lambda t: 90.0)
    start = clock()
    # 2 s of 300 ms in a 60 s window is 3% of the samples: the p95 never moves past the bound.
    results = run(mgr, clock, 120, lambda t: 300.0 if t - start <= 2 else 90.0)
    assert all(v == [] for _, v in results)
    assert mgr.compliance_rate("lat_p95") == 100.0


def test_lower_threshold_of_violation_ratio_detects_sooner():
    clock = ManualClock(T0)
    mgr = SLAManager(
        [latency_sla(metric_name="fast", violation_threshold_percent=25), latency_sla(metric_name="slow")],
        clock=clock, anomaly_detection=False,
    )
    run(mgr, clock, 60, lambda t: 90.0)
    seen = {}
    mgr.register_violation_callback(lambda v: seen.setdefault(v.metric_name, clock()))
    run(mgr, clock, 90, lambda t: 200.0)
    assert seen["fast"] < seen["slow"]


def test_lower_bound_sla_and_severity_escalation_callbacks():
    clock = ManualClock(T0)
    th = SLAThreshold(
        "tps", 100.0, 20.0, 1, direction=Direction.LOWER, statistic=Statistic.MEAN, min_samples=1,
        violation_threshold_percent=50,
    )
    # the sustained rule's escalation alone (a fast page would call the callback too: test_fast_pages)
    mgr = SLAManager([th], clock=clock, anomaly_detection=False, page_rules=PageRulesConfig(enabled=False))
    events = []
    mgr.register_violation_callback(lambda v: events.append(("v", v.severity)))
    mgr.register_resolution_callback(lambda name, t: events.append(("r", name)))
    level = {"v": 150.0}

    def feed(seconds):
        for _ in range(int(seconds)):
            clock.advance(1.0)
            mgr.record_measurement("tps", level["v"])
            if int(clock() - T0) % 5 == 0:
                mgr.evaluate()

    feed(120)
    level["v"] = 75.0  # MINOR (80/75 = 1.07)
    feed(90)
    level["v"] = 30.0  # CRITICAL
    feed(90)
    level["v"] = 150.0
    feed(120)
    kinds = [e[0] for e in events]
    assert ("v", ViolationSeverity.MINOR) in events
    assert ("v", ViolationSeverity.CRITICAL) in events
    assert events.index(("v", ViolationSeverity.MINOR)) < events.index(("v", ViolationSeverity.CRITICAL))
    assert kinds.count("v") == 2 or kinds.count("v") == 3  # MINOR, maybe MAJOR while the mean falls, CRITICAL
    assert events[-1] == ("r", "tps")
    assert mgr.active_violations() == []


def test_callbacks_are_not_repeated_while_violation_persists():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False, page_rules=PageRulesConfig(enabled=False))
    calls = []
    mgr.register_violation_callback(calls.append)
    run(mgr, clock, 300, lambda t: 500.0)
    assert len(calls) == 1
    assert len(mgr.active_violations()) == 1


def test_failing_callback_does_not_stop_evaluation():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False, page_rules=PageRulesConfig(enabled=False))
    good = []

    def bad(v):
        raise RuntimeError("receiver down")

    mgr.register_violation_callback(bad)
    mgr.register_violation_callback(good.append)
    run(mgr, clock, 120, lambda t: 500.0)
    assert len(good) == 1
    assert mgr.evaluator_stats.callback_errors == 1


def test_min_samples_guards_against_sparse_windows():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla(min_samples=50)], clock=clock, anomaly_detection=False)
    results = run(mgr, clock, 300, lambda t: 500.0, rate_hz=0.5)  # 30 samples per window
    assert all(v == [] for _, v in results)
    assert mgr.get_status()["lat_p95"].evaluation_points == 0


def test_seed_alias_records_into_the_source_series():
    clock = ManualClock(T0)
    mgr = create_production_sla_manager(clock=clock)
    assert mgr.record_measurement("request_latency_p95", 180.0)
    assert mgr.store.buffer("request_latency_ms").count == 1
    assert not mgr.record_measurement("no_such_metric", 1.0)
    assert mgr.store.dropped_total("no_such_metric") == 1


def test_production_manager_detects_latency_and_throughput_faults():
    clock = ManualClock(T0)
    mgr = create_production_sla_manager(clock=clock, regression_interval_s=math.inf)
    rng = np.random.default_rng(1)
    found = {}
    mgr.register_violation_callback(lambda v: found.setdefault(v.metric_name, clock()))
    for step in range(int(1500 / 0.5)):
        t = clock.advance(0.5) - T0
        spike = 300 <= t < 900
        mgr.record_batch("request_latency_ms", rng.lognormal(math.log(400 if spike else 120), 0.3, 20))
        mgr.record_batch("request_error_percent", np.zeros(20))
        mgr.record_measurement("tokens_per_second", 40.0 if t >= 1000 else 150.0)
        if step % 10 == 0:
            mgr.evaluate()
    # Detection lag = the statistic's own lag in its window + 80% of the window for "sustained".
    assert 300 < found["request_latency_p95"] - T0 < 300 + 300
    assert 1000 < found["tokens_per_second"] - T0 < 1000 + 2 * 180
    assert "error_rate_percent" not in found


def test_remove_and_disable_thresholds():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla(), latency_sla(metric_name="off", enabled=False)], clock=clock, anomaly_detection=False)
    run(mgr, clock, 120, lambda t: 500.0)
    assert set(mgr.get_status()) == {"lat_p95"}
    assert mgr.remove_threshold("lat_p95")
    assert not mgr.remove_threshold("lat_p95")
    assert mgr.evaluate() == []


def test_regression_against_previous_window_and_named_baseline():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False, regression_interval_s=math.inf)
    rng = np.random.default_rng(2)
    for _ in range(600):
        clock.advance(0.1)
        mgr.record_measurement("lat", rng.lognormal(math.log(80), 0.2))
    assert mgr.capture_baseline("v1", "lat_p95") > 100
    for _ in range(600):
        clock.advance(0.1)
        mgr.record_measurement("lat", rng.lognormal(math.log(110), 0.2))
    prev = mgr.detect_regression("lat_p95")
    named = mgr.detect_regression("lat_p95", baseline_name="v1")
    assert prev.regressed and named.regressed and named.baseline_name == "v1"
    assert 25 < named.percent_change < 50
    with pytest.raises(KeyError):
        mgr.detect_regression("lat_p95", baseline_name="nope")


def test_periodic_regression_check_shows_in_status():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False, regression_interval_s=30)
    run(mgr, clock, 60, lambda t: 80.0 + (t % 7))
    run(mgr, clock, 60, lambda t: 110.0 + (t % 7))  # median +30%: past the 20% minimum effect
    reg = mgr.get_status()["lat_p95"].regression
    assert reg is not None and reg.regressed


def test_anomaly_score_is_reported_and_callback_fires_on_rising_edge():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, regression_interval_s=math.inf)
    rng = np.random.default_rng(5)
    warnings = []
    mgr.register_anomaly_callback(warnings.append)
    run(mgr, clock, 1200, lambda t: 80.0 + rng.normal(0, 1.0))
    assert warnings == []
    run(mgr, clock, 120, lambda t: 115.0 + rng.normal(0, 1.0))  # a level shift still within the bound
    status = mgr.get_status()["lat_p95"]
    assert not status.violated
    assert len(warnings) >= 1
    assert status.anomaly_score is not None and 0.0 <= status.anomaly_score <= 1.0


def test_zscore_reported_against_history():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False)
    rng = np.random.default_rng(5)
    run(mgr, clock, 600, lambda t: 80.0 + rng.normal(0, 2.0))
    run(mgr, clock, 30, lambda t: 300.0)
    assert mgr.get_status()["lat_p95"].zscore > 2.5


def test_background_evaluator_starts_and_stops_cleanly():
    mgr = SLAManager([latency_sla()], evaluation_interval_s=0.02, anomaly_detection=False)
    mgr.start_monitoring()
    mgr.start_monitoring()  # idempotent
    assert mgr.is_monitoring
    names = [t.name for t in threading.enumerate()]
    assert names.count("aphrodite-sla-evaluator") == 1
    for _ in range(200):
        mgr.record_measurement("lat", 50.0)
        time.sleep(0.002)
    deadline = time.time() + 60
    while mgr.evaluator_stats.evaluations < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert mgr.evaluator_stats.evaluations >= 3
    assert mgr.stop_monitoring(timeout=10)
    assert not mgr.is_monitoring
    assert "aphrodite-sla-evaluator" not in [t.name for t in threading.enumerate()]
    n = mgr.evaluator_stats.evaluations
    time.sleep(0.1)
    assert mgr.evaluator_stats.evaluations == n
    assert mgr.stop_monitoring()  # stopping twice is fine


def test_invalid_manager_arguments():
    with pytest.raises(ValueError, match="evaluation_interval_s"):
        SLAManager(evaluation_interval_s=0)
    with pytest.raises(TypeError):
        SLAManager().add_threshold({"metric_name": "x"})


def test_events_and_burn_rates_for_slas_with_an_objective():
    clock = ManualClock(T0)
    th = latency_sla()  # p95 -> objective 0.95, bound 120
    mgr = SLAManager([th, SLAThreshold("gauge", 50, 10, 1, source_metric="lat")], clock=clock, anomaly_detection=False)
    # 10% of samples beyond the bound -> bad fraction 0.1 -> burn rate 0.1 / 0.05 = 2
    run(mgr, clock, 400, lambda t: 200.0 if int(round(t * 10)) % 10 == 0 else 90.0)
    good, bad = mgr.event_counts()["lat_p95"]
    assert "gauge" not in mgr.event_counts()
    assert bad / (good + bad) == pytest.approx(0.1, abs=0.01)
    assert mgr.burn_rate("lat_p95", 300) == pytest.approx(2.0, rel=0.1)
    assert mgr.burn_rate("gauge", 300) is None
    run(mgr, clock, 300, lambda t: 90.0)
    assert mgr.burn_rate("lat_p95", 120) == 0.0
    assert 0.0 < mgr.burn_rate("lat_p95", 600) < 2.0


def test_every_sample_is_classified_once():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False)
    run(mgr, clock, 200, lambda t: 100.0, rate_hz=10, eval_every=3.0)
    mgr.evaluate()
    good, bad = mgr.event_counts()["lat_p95"]
    assert bad == 0
    assert good == mgr.store.buffer("lat").count == 2000  # every sample, none twice


def test_anomaly_warning_fires_once_per_episode():
    # the episode's hysteresis alone: no confirmation period, no rate limit (tests/test_warning_policy.py has those)
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False, regression_interval_s=math.inf,
                     warning_rules=WarningRulesConfig(confirm_s=0.0, min_interval_s=0.0))
    scores = iter([0.1, 0.6, 0.45, 0.55, 0.6, 0.2, 0.7, 0.1])  # two episodes: 0.6..0.6 and 0.7

    class Scripted:
        def update(self, value, timestamp):
            return next(scores)

    mgr._evaluator.states["lat_p95"].detector = Scripted()
    warnings = []
    mgr.register_anomaly_callback(lambda s: warnings.append(s.anomaly_score))
    for _ in range(8):
        for _ in range(50):
            clock.advance(0.1)
            mgr.record_measurement("lat", 80.0)
        mgr.evaluate()
    assert warnings == [0.6, 0.7]  # 0.45 and 0.55 stay in the first episode; 0.2 ends it


def test_watched_quantiles_are_exact_and_share_the_slas_selection_pass():
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, anomaly_detection=False, regression_interval_s=math.inf)
    mgr.watch_quantiles("lat", (0.5, 0.99), 60)
    mgr.watch_quantiles("other", (0.5,), 60)  # not recorded: reported with no samples
    rng = np.random.default_rng(9)
    values = rng.lognormal(4, 0.5, 1200)
    clock.set(T0 + 120)
    mgr.record_batch("lat", values, T0 + np.arange(1200) * 0.1)
    mgr.evaluate()
    assert mgr._evaluator.plan().windows == 2  # "lat" over 60 s once (SLA + watched), "other"
    _, n, got = mgr.watched_quantiles()["lat"]
    in_window = values[T0 + np.arange(1200) * 0.1 > T0 + 60]
    assert n == in_window.size
    # the SLA's own p95 rides along from the shared selection pass
    assert got == {q: np.quantile(in_window, q) for q in (0.5, 0.95, 0.99)}
    assert mgr.watched_quantiles()["other"][1] == 0
    with pytest.raises(ValueError, match="unsupported"):
        mgr.watch_quantiles("lat", (0.42,), 60)


def test_anomaly_warning_only_when_the_change_points_toward_the_bound():
    warnings: dict[str, list] = {}
    # (SLA, direction, healthy level, a level further from the bound): a maximum of 120, a minimum of 80
    for name, direction, healthy, away in (("max", Direction.UPPER, 80.0, 40.0), ("min", Direction.LOWER, 120.0, 180.0)):
        clock = ManualClock(T0)
        mgr = SLAManager([latency_sla(metric_name=name, direction=direction)], clock=clock, regression_interval_s=math.inf)
        rng = np.random.default_rng(5)
        got = warnings.setdefault(name, [])
        mgr.register_anomaly_callback(got.append)
        run(mgr, clock, 1200, lambda t, level=healthy: level + rng.normal(0, 1.0))
        scores: list[float] = []
        mgr.subscribe(lambda e, sla=name: scores.append(e.snapshot.statuses[sla].anomaly_score or 0.0), SnapshotPublished)
        run(mgr, clock, 60, lambda t, level=away: level + rng.normal(0, 1.0))  # away from the bound
        mgr.events.drain()
        assert max(scores) >= 0.5  # the change is scored all the same ...
    assert warnings == {"max": [], "min": []}  # ... but warns nobody


def test_toward_bound_reads_the_signed_explanation():
    from aphrodite_sla.sla.anomaly import AnomalyExplanation
    from aphrodite_sla.sla.evaluator import toward_bound

    up, down = AnomalyExplanation(kind="level_shift", z=5.0), AnomalyExplanation(kind="level_shift", z=-5.0)
    assert toward_bound(up, upper=True) and not toward_bound(down, upper=True)
    assert toward_bound(down, upper=False) and not toward_bound(up, upper=False)
    assert toward_bound(AnomalyExplanation(kind="variance_change", z=-3.0), upper=True)  # unsigned kinds warn either way
    assert toward_bound(None, upper=True)  # a detector without an explanation warns as before
    # with the bound: only a change that closes a quarter of the headroom the expectation had warns
    small = AnomalyExplanation(kind="level_shift", z=5.0, value=42.0, expected=40.0)
    large = AnomalyExplanation(kind="level_shift", z=5.0, value=65.0, expected=40.0)
    assert not toward_bound(small, upper=True, bound=80.0) and toward_bound(large, upper=True, bound=80.0)
    drop = AnomalyExplanation(kind="level_shift", z=-5.0, value=60.0, expected=100.0)
    assert toward_bound(drop, upper=False, bound=70.0) and not toward_bound(drop, upper=False, bound=-100.0)


def test_a_rate_is_not_judged_before_the_monitor_has_watched_a_whole_window():
    """A rate is the window's total over the window's length: 25 s after a cold start, 25 s of
    tokens over 300 s read as a twelfth of the real rate and "violated" a tokens/s lower bound.
    It is judged once a window has been watched, and a real drop is still a violation then."""
    clock = ManualClock(1000.0)
    tps = SLAThreshold("tps", 100.0, 20.0, 5, statistic=Statistic.RATE, source_metric="gen_tokens",
                       direction=Direction.LOWER, sample_rate_hz=1.0, min_samples=1)  # bound 80 tokens/s
    mgr = SLAManager([tps], clock=clock, anomaly_detection=False, regression_interval_s=math.inf)
    breached_at = []
    for second in range(1, 901):
        clock.set(1000.0 + second)
        mgr.record_measurement("gen_tokens", 100.0 if second < 600 else 40.0)  # 100 tokens/s, then 40 from 600 s
        if second % 5 == 0:
            mgr.evaluate()
            if mgr.get_status()["tps"].breached:
                breached_at.append(second)
    assert breached_at, "the drop to 40 tokens/s was never judged"
    assert min(breached_at) >= 600  # nothing before the drop: not at 5 s, nor while the window filled
    assert min(breached_at) <= 800
    assert any(v.metric_name == "tps" for v in mgr.active_violations())


def test_a_violation_from_the_start_is_sustained_only_once_it_held_for_most_of_a_window():
    """At a start the window holds only the points seen so far: 20 s after an empty engine came up
    at night, four points of low throughput were 100% of the window and raised a sustained
    violation. Before a whole window has been watched the points not yet seen count as not beyond
    (``SLAThreshold.is_sustained``): a breach from the start is sustained at 80% of the window, as
    it is later; a breach after the first window is judged as before."""
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla(violation_threshold_percent=80)], clock=clock, anomaly_detection=False)
    results = run(mgr, clock, 120, lambda t: 200.0)  # beyond from the first sample; 60 s window, 12 points
    first = next(t for t, v in results if v) - T0
    assert 45 <= first <= 60, first  # 10 of 12 points: not at the 3rd point (15 s) as before
    assert mgr.get_status()["lat_p95"].breached
    th = latency_sla(violation_threshold_percent=80)
    assert not th.is_sustained(3, 3, 15.0, 5.0) and th.is_sustained(3, 3, 60.0, 5.0)
    assert th.is_sustained(10, 10, 50.0, 5.0) and not th.is_sustained(2, 2, 60.0, 5.0)  # min points
