"""Prometheus rules: the rendered YAML, the burn-rate table, and promtool (`check rules`, and the
unit tests in tests/promtool/ run against a freshly rendered rules file).

promtool is Debian's `prometheus` package (2.42, which has ``keep_firing_for``). Without it these
tests fail when ``CI`` is set and are skipped otherwise.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aphrodite_sla.export.rules import (
    BURN_RATE_ALERTS,
    RATIO_WINDOWS,
    BurnRateAlert,
    burn_rate_factor,
    render_rules,
    rules_document,
    slo_objective,
    write_rules,
)
from aphrodite_sla.sla.defaults import default_thresholds
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic
from tests.tools import require_tool

PROMTOOL_DIR = Path(__file__).parent / "promtool"
UNIT_TESTS = sorted(PROMTOOL_DIR.glob("*.test.yml"))

# The rules the promtool unit tests are written against: one SLA with a budget (p99: objective
# 0.99) and one without (a lower-bound gauge, which gets no burn-rate alerts).
TEST_THRESHOLDS = [
    SLAThreshold("latency_p99", 1000.0, 0.0, 5, statistic=Statistic.P99, source_metric="request_latency_ms", unit="ms"),
    SLAThreshold("tokens_per_second", 100.0, 20.0, 3, direction=Direction.LOWER),
]


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool")


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def _simulated_thresholds() -> list[SLAThreshold]:
    from aphrodite_sla.simulate import SIMULATED_MODEL_SLAS

    return list(SIMULATED_MODEL_SLAS)


def _burn_alerts(doc: dict) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "SLAErrorBudgetBurn"]


# ------------------------------------------------------------------------------- pure Python
def test_burn_factors_are_the_workbook_table():
    got = [(a.severity, a.long_window, a.short_window, round(burn_rate_factor(a.budget_percent, a.long_window), 9))
           for a in BURN_RATE_ALERTS]
    assert got == [("page", "1h", "5m", 14.4), ("page", "6h", "30m", 6.0), ("ticket", "1d", "2h", 3.0), ("ticket", "3d", "6h", 1.0)]
    # the factor scales with the SLO period: budget% x period_hours / 100 / long_window_hours
    assert burn_rate_factor(2.0, "1h", slo_period_days=28) == pytest.approx(13.44)
    assert burn_rate_factor(10.0, "3d", slo_period_days=90) == pytest.approx(3.0)


@pytest.mark.parametrize("thresholds", [None, "simulated", TEST_THRESHOLDS], ids=["defaults", "simulated", "test"])
def test_rendered_yaml_is_exactly_the_document(thresholds):
    if thresholds == "simulated":
        thresholds = _simulated_thresholds()
    text = render_rules(thresholds)
    assert yaml.safe_load(text) == rules_document(thresholds)
    assert text.startswith("# Prometheus rules for aphrodite-sla")


def test_awkward_names_survive_the_hand_written_yaml():
    th = [SLAThreshold('we"ird\\name: #p95', 100.0, 10.0, 5, statistic=Statistic.P95, source_metric="x")]
    text = render_rules(th, runbook_url="https://example.com/run books/#ü")
    doc = yaml.safe_load(text)
    assert doc == rules_document(th, runbook_url="https://example.com/run books/#ü")
    exprs = [r["expr"] for r in _burn_alerts(doc)]
    assert exprs and all('sla="we\\"ird\\\\name: #p95"' in e for e in exprs)


def test_burn_rate_alerts_follow_the_table_for_each_sla_with_an_objective():
    doc = rules_document(default_thresholds())
    alerts = _burn_alerts(doc)
    by_sla: dict[str, list[dict]] = {}
    for a in alerts:
        by_sla.setdefault(a["labels"]["sla"], []).append(a)
    # quantile SLAs (objective = the quantile) and the error rate (objective 99.9%); gauges none
    assert set(by_sla) == {"request_latency_p95", "request_latency_p99", "error_rate_percent"}
    objectives = {"request_latency_p95": 0.95, "request_latency_p99": 0.99, "error_rate_percent": 0.999}
    for name, rows in by_sla.items():
        assert [(r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"], r["for"]) for r in rows] == [
            ("page", "1h", "5m", "2m"), ("page", "6h", "30m", "15m"), ("ticket", "1d", "2h", "1h"), ("ticket", "3d", "6h", "3h"),
        ]
        for row, factor in zip(rows, (14.4, 6.0, 3.0, 1.0)):
            limit = f"{factor * (1 - objectives[name]):.10g}"
            lw, sw = row["labels"]["long_window"], row["labels"]["short_window"]
            expr = row["expr"]
            assert f'sla:sla_events_error_ratio:rate{lw}{{sla="{name}"}} > {limit}' in expr
            assert f'sla:sla_events_error_ratio:rate{sw}{{sla="{name}"}} > {limit}' in expr
            # the low-traffic guard on the long window
            assert f'sla:sla_events:rate{lw}{{sla="{name}"}} >= 0.01666666667' in expr
            assert set(row["annotations"]) == {"summary", "description", "runbook_url"}


def test_objective_overrides_and_impossible_rows():
    p50 = SLAThreshold("ttft_p50", 100.0, 0.0, 5, statistic=Statistic.P50, source_metric="ttft_ms")
    assert slo_objective(p50) == 0.5
    # budget 50%: 14.4x and 6x would need a bad fraction > 1, so only the tickets remain
    rows = _burn_alerts(rules_document([p50]))
    assert [r["labels"]["long_window"] for r in rows] == ["3d"]
    rows = _burn_alerts(rules_document([p50], objectives={"ttft_p50": 0.999}))
    assert len(rows) == 4 and "> 0.0144" in rows[0]["expr"]
    with pytest.raises(ValueError, match="ttft_p50"):
        rules_document([p50], objectives={"ttft_p50": 1.0})
    gauge = SLAThreshold("kv", 80.0, 20.0, 5)
    assert slo_objective(gauge) is None and _burn_alerts(rules_document([gauge])) == []


def test_a_later_threshold_of_the_same_name_wins_and_disabled_ones_get_no_alerts():
    override = SLAThreshold("request_latency_p95", 300.0, 0.0, 5, statistic=Statistic.P95,
                            source_metric="request_latency_ms", objective_percent=99.0)
    rows = [r for r in _burn_alerts(rules_document([*default_thresholds(), override])) if r["labels"]["sla"] == "request_latency_p95"]
    assert len(rows) == 4 and "> 0.144" in rows[0]["expr"]  # 14.4 x (1 - 0.99), not 14.4 x 0.05
    off = SLAThreshold("request_latency_p99", 500.0, 50.0, 5, statistic=Statistic.P99, enabled=False)
    assert "request_latency_p99" not in {r["labels"]["sla"] for r in _burn_alerts(rules_document([*default_thresholds(), off]))}


def test_ratio_records_are_safe_at_zero_traffic_and_aggregate_replicas():
    doc = rules_document(TEST_THRESHOLDS)
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    for w in RATIO_WINDOWS:
        assert records[f"sla:sla_events:rate{w}"] == f"sum without (instance, pod, outcome) (rate(sla_events_total[{w}]))"
        ratio = records[f"sla:sla_events_error_ratio:rate{w}"]
        assert f"clamp_min(sla:sla_events:rate{w}, 1e-9)" in ratio
        assert f"or\n  0 * sla:sla_events:rate{w}" in ratio  # no bad series yet counts as 0 bad
    assert len(records) == 3 * len(RATIO_WINDOWS)


def test_violation_and_stall_alerts():
    doc = rules_document(TEST_THRESHOLDS)
    rules = {(r["alert"], r["labels"]["severity"]): r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    crit = rules[("SLAViolation", "page")]
    assert 'sla_violation_active{severity="critical"} == 1' in crit["expr"] and crit["keep_firing_for"] == "10m"
    assert 'severity="major"' in rules[("SLAViolation", "ticket")]["expr"]
    stall = rules[("SLAEngineStalled", "page")]
    assert stall["expr"] == "sla_engine_stalled == 1" and stall["keep_firing_for"]
    page, ticket = rules[("SLAFastPage", "page")], rules[("SLAFastPage", "ticket")]
    assert page["expr"] == 'sla_page_active{rule=~"severe_breach|burn_rate_page"} == 1' and page["for"] == "0s"
    assert ticket["expr"] == 'sla_page_active{rule=~"burn_rate_ticket"} == 1'


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(slo_period_days=0), "slo_period_days"),
        (dict(min_events_per_second=float("nan")), "min_events_per_second"),
        (dict(violation_for="soon"), "duration"),
        (dict(burn_rate_alerts=[BurnRateAlert("page", "4h", "5m", 2.0, "2m")]), "4h"),
        (dict(aggregate_without=("sla",)), "sla"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_rules(TEST_THRESHOLDS, **kwargs)


def test_write_rules_writes_the_rendering(tmp_path):
    path = write_rules(tmp_path / "sub" / "rules.yml", TEST_THRESHOLDS, min_events_per_second=0.1)
    assert path == tmp_path / "sub" / "rules.yml"
    assert path.read_text() == render_rules(TEST_THRESHOLDS, min_events_per_second=0.1)
    assert [p.name for p in path.parent.iterdir()] == ["rules.yml"]  # no temporary left behind


# ------------------------------------------------------------------------------------ promtool
@pytest.mark.parametrize(
    "thresholds, kwargs",
    [(None, {}), ("simulated", {}), (TEST_THRESHOLDS, {}), (None, dict(slo_period_days=28, min_events_per_second=0.5))],
    ids=["defaults", "simulated", "test", "28-days"],
)
def test_promtool_check_rules(promtool, tmp_path, thresholds, kwargs):
    if thresholds == "simulated":
        thresholds = _simulated_thresholds()
    path = write_rules(tmp_path / "rules.yml", thresholds, **kwargs)
    res = _run([promtool, "check", "rules", "--lint-fatal", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def _unit_test_dir(tmp_path: Path, **kwargs) -> Path:
    write_rules(tmp_path / "rules.yml", TEST_THRESHOLDS, **kwargs)
    for f in UNIT_TESTS:
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_unit_test_files_are_present():
    assert {f.name for f in UNIT_TESTS} >= {
        "burn_rate.test.yml", "zero_traffic.test.yml", "low_traffic.test.yml", "violations.test.yml",
    }


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=[f.name for f in UNIT_TESTS])
def test_promtool_unit_tests(promtool, tmp_path, unit_test):
    d = _unit_test_dir(tmp_path)
    res = _run([promtool, "test", "rules", unit_test.name], cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_unit_tests_catch_a_missing_traffic_guard(promtool, tmp_path):
    """Teeth: without the guard, one bad event every 5 minutes pages (the failure Pyrra users hit)."""
    d = _unit_test_dir(tmp_path, min_events_per_second=0)
    res = _run([promtool, "test", "rules", "low_traffic.test.yml"], cwd=d)
    assert res.returncode != 0
    assert "low traffic below the guard never alerts" in res.stdout + res.stderr
