"""Threshold validation, bounds, directions and severities."""
import pytest

from aphrodite_sla import Direction, SLAThreshold, Statistic, ViolationSeverity, default_thresholds


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(metric_name=""), "metric_name"),
        (dict(measurement_window_minutes=-5), "measurement_window_minutes"),
        (dict(measurement_window_minutes=0), "measurement_window_minutes"),
        (dict(tolerance_percent=-1), "tolerance_percent"),
        (dict(tolerance_percent=float("nan")), "tolerance_percent"),
        (dict(statistic="p97"), "statistic"),
        (dict(direction="sideways"), "direction"),
        (dict(violation_threshold_percent=120), "violation_threshold_percent"),
        (dict(target_value="fast"), "target_value"),
        (dict(severity_ratios=(2.0, 1.5)), "severity_ratios"),
        (dict(min_samples=0), "min_samples"),
        (dict(direction="lower", tolerance_percent=100), "tolerance_percent"),
        (dict(sample_rate_hz=0), "sample_rate_hz"),
    ],
)
def test_invalid_threshold_raises_naming_the_field(kwargs, field):
    base = dict(metric_name="m", target_value=100.0, tolerance_percent=10.0, measurement_window_minutes=5)
    base.update(kwargs)
    with pytest.raises(ValueError, match=field):
        SLAThreshold(**base)


def test_strings_are_accepted_for_enums():
    t = SLAThreshold("m", 100, 10, 5, statistic="P99", direction="lower")
    assert t.statistic is Statistic.P99 and t.direction is Direction.LOWER


def test_bounds_and_directions():
    up = SLAThreshold("lat", 200, 25, 5)
    assert up.bound == 250
    assert up.is_beyond(251) and not up.is_beyond(250)
    low = SLAThreshold("tps", 100, 20, 3, direction=Direction.LOWER)
    assert low.bound == 80
    assert low.is_beyond(79.9) and not low.is_beyond(80)


def test_severity_from_ratio_to_bound():
    up = SLAThreshold("lat", 200, 25, 5)  # bound 250; MAJOR from 300, CRITICAL from 375
    assert up.severity(260) is ViolationSeverity.MINOR
    assert up.severity(300) is ViolationSeverity.MAJOR
    assert up.severity(375) is ViolationSeverity.CRITICAL
    low = SLAThreshold("tps", 100, 20, 3, direction=Direction.LOWER)  # bound 80
    assert low.severity(75) is ViolationSeverity.MINOR
    assert low.severity(80 / 1.2) is ViolationSeverity.MAJOR
    assert low.severity(0) is ViolationSeverity.CRITICAL


def test_defaults_match_the_seed_table():
    by_name = {t.metric_name: t for t in default_thresholds()}
    expected = {
        "request_latency_p95": (200, 25, 5, Direction.UPPER, Statistic.P95),
        "request_latency_p99": (500, 50, 5, Direction.UPPER, Statistic.P99),
        "tokens_per_second": (100, 20, 3, Direction.LOWER, Statistic.MEAN),
        "error_rate_percent": (0.1, 400, 5, Direction.UPPER, Statistic.MEAN),
        "gpu_utilization_percent": (85, 10, 10, Direction.UPPER, Statistic.MEAN),
        "kv_cache_usage_percent": (80, 20, 5, Direction.UPPER, Statistic.MEAN),
        "echo_evolution_convergence": (85, 15, 15, Direction.LOWER, Statistic.MEAN),
    }
    assert set(by_name) == set(expected)
    for name, (target, tol, window, direction, stat) in expected.items():
        t = by_name[name]
        assert (t.target_value, t.tolerance_percent, t.measurement_window_minutes) == (target, tol, window)
        assert (t.direction, t.statistic, t.violation_threshold_percent) == (direction, stat, 80.0)
