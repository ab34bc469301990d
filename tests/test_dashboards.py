"""Grafana dashboards (grafana/*.json) and the demo Prometheus config.

Structure is checked here without any server: import format, datasource input, a unit and a target
on every panel, template variables, layout, and that the JSON is what grafana/build_dashboards.py
generates. Every query is parsed by promtool (wrapped as recording rules: `promtool check rules`
parses PromQL); whether each one returns data is tests/test_prometheus_e2e.py's job.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aphrodite_sla.export.rules import write_rules
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = ("sla-compliance.json", "engine-overview.json", "incident-response.json", "root-cause-analysis.json")
DS_UID = "${DS_PROMETHEUS}"
# What Grafana substitutes at query time, for running the queries outside Grafana.
SUBSTITUTIONS = {"$model_name": ".*", "$instance": ".*", "$__rate_interval": "1m", "$__range": "1h"}


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((GRAFANA / name).read_text(encoding="utf-8"))


def data_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that query (rows are containers; nested row panels included)."""
    out = []
    for p in dash["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def substitute(expr: str) -> str:
    for var, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def panel_queries(files: tuple[str, ...] = DASHBOARD_FILES) -> list[tuple[str, str, str, str]]:
    """(dashboard file, panel title, refId, expr with the variables substituted) for every target."""
    out = []
    for name in files:
        for p in data_panels(load_dashboard(name)):
            for t in p["targets"]:
                out.append((name, p["title"], t["refId"], substitute(t["expr"])))
    return out


@pytest.fixture(params=DASHBOARD_FILES)
def dash(request) -> dict[str, Any]:
    return load_dashboard(request.param)


def load_generator():
    """grafana/build_dashboards.py as a module. It builds with grafana-foundation-sdk (the `test`
    extra), which needs Python >= 3.11: skipped below that; missing on 3.11+, this fails when CI is
    set (the extra installs it) and skips otherwise."""
    if sys.version_info < (3, 11):
        pytest.skip("grafana-foundation-sdk needs Python >= 3.11 (the JSON is checked on 3.11+)")
    if importlib.util.find_spec("grafana_foundation_sdk") is None:
        reason = "grafana-foundation-sdk is not installed (pip install -e '.[test]', Python >= 3.11)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dashboards_are_up_to_date_with_the_generator():
    mod = load_generator()
    assert set(mod.DASHBOARDS) == set(DASHBOARD_FILES)
    for name in DASHBOARD_FILES:
        assert (GRAFANA / name).read_text(encoding="utf-8") == mod.render(name), f"{name}: run python grafana/build_dashboards.py"


def test_generator_check_mode_detects_a_stale_file(tmp_path, monkeypatch):
    """`--check` is what a contributor runs; it must notice a hand edit (and leave the file alone)."""
    mod = load_generator()
    for name in DASHBOARD_FILES:
        (tmp_path / name).write_text(mod.render(name), encoding="utf-8")
    monkeypatch.setattr(mod, "HERE", tmp_path)
    assert mod.main(["--check"]) == 0
    edited = (tmp_path / "incident-response.json").read_text(encoding="utf-8").replace("recovery_active", "recovery_actives", 1)
    (tmp_path / "incident-response.json").write_text(edited, encoding="utf-8")
    assert mod.main(["--check"]) == 1
    assert (tmp_path / "incident-response.json").read_text(encoding="utf-8") == edited


def test_generator_rejects_an_option_the_schema_lacks():
    """The point of the typed builders: a misspelt panel option is an error, not a key Grafana ignores."""
    load_generator()
    from grafana_foundation_sdk.builders import timeseries

    with pytest.raises(AttributeError):
        timeseries.Panel().line_widht(2)  # type: ignore[attr-defined]


def test_uids_are_unique_and_stable():
    uids = {name: load_dashboard(name)["uid"] for name in DASHBOARD_FILES}
    assert len(set(uids.values())) == len(uids)
    # links and bookmarks use these: changing one breaks them
    assert uids == {"sla-compliance.json": "aphrodite-sla-compliance", "engine-overview.json": "aphrodite-sla-engine",
                    "incident-response.json": "aphrodite-sla-incidents", "root-cause-analysis.json": "aphrodite-sla-rca"}


def test_import_format(dash):
    assert dash["schemaVersion"] == 39
    assert dash["id"] is None and re.fullmatch(r"[a-z0-9-]{1,40}", dash["uid"])
    (inp,) = dash["__inputs"]
    assert inp["name"] == "DS_PROMETHEUS" and inp["type"] == "datasource" and inp["pluginId"] == "prometheus"
    requires = {(r["type"], r["id"]) for r in dash["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= requires
    kinds = {p["type"] for p in data_panels(dash)}
    assert {("panel", k) for k in kinds} <= requires
    assert dash["title"] and dash["tags"] and dash["time"]["from"].startswith("now-")


def test_variables(dash):
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"model_name", "instance"} <= set(variables)
    for name in ("model_name", "instance"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"]["uid"] == DS_UID
        assert re.fullmatch(rf"label_values\([a-z_:]+(\{{.*\}})?, {name}\)", v["query"]["query"]), v["query"]
        assert v["definition"] == v["query"]["query"]
        assert v["includeAll"] and v["allValue"] == ".*" and v["multi"]
    assert "$model_name" in variables["instance"]["query"]["query"]  # instance follows the model choice


def test_every_panel_has_datasource_unit_thresholds_and_targets(dash):
    panels = data_panels(dash)
    assert len(panels) >= 10
    for p in panels:
        where = f"{dash['uid']}: panel {p['title']!r}"
        assert p["datasource"] == {"type": "prometheus", "uid": DS_UID}, where
        defaults = p["fieldConfig"]["defaults"]
        assert isinstance(defaults.get("unit"), str) and defaults["unit"], where
        steps = defaults["thresholds"]["steps"]
        assert steps and steps[0]["value"] is None, where
        assert p["targets"], where
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs), where
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DS_UID, where
            assert t["expr"].strip(), where
            # the model variable applies to every query (the instance one to all but fleet-wide rules)
            assert 'model_name=~"$model_name"' in t["expr"], f"{where}: {t['expr']}"
            assert t["expr"].count("(") == t["expr"].count(")") and t["expr"].count("{") == t["expr"].count("}"), where
        assert p["description"], where


def test_units_are_the_expected_ones():
    units = {(name, p["title"]): p["fieldConfig"]["defaults"]["unit"] for name in DASHBOARD_FILES for p in data_panels(load_dashboard(name))}
    assert units[("sla-compliance.json", "SLA compliance")] == "percent"
    assert units[("sla-compliance.json", "E2E latency p95: exact vs histogram_quantile")] == "ms"
    assert units[("sla-compliance.json", "Goodput")] == "reqps"
    assert units[("sla-compliance.json", "Anomaly scores")] == "percentunit"
    assert units[("engine-overview.json", "KV-cache usage")] == "percentunit"
    assert units[("engine-overview.json", "Time to first token")] == "ms"
    assert units[("incident-response.json", "Recovery success rate")] == "percent"
    assert units[("incident-response.json", "Recovery duration")] == "s"


def test_seed_panels_and_comparisons_are_present():
    exprs = "\n".join(q[3] for q in panel_queries())
    for needle in (
        "sla_compliance_rate", "increase(sla_violations_total", "sla_threshold_breaches_total", "sla_regression_percent",
        "sla_anomaly_score", "sla_burn_rate", "sla_goodput_requests_per_second", "sla_engine_stalled",
        "sla:sla_events_error_ratio:rate1h",
        "histogram_quantile(0.95, sum by (le, instance) (rate(vllm:e2e_request_latency_seconds_bucket",
        "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
        "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
        "vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:request_success_total",
        'series="ttft_ms"', 'series="itl_ms"', "sla_monitor_errors_total", "sla_evaluation_duration_seconds_bucket",
    ):
        assert needle in exprs, needle
    kinds = {p["type"] for p in data_panels(load_dashboard("sla-compliance.json"))}
    assert "heatmap" in kinds


def _panel(name: str, title: str) -> dict[str, Any]:
    (panel,) = [p for p in data_panels(load_dashboard(name)) if p["title"] == title]
    return panel


def _mapped(panel: dict[str, Any]) -> dict[str, str]:
    return {k: v["text"] for m in panel["fieldConfig"]["defaults"]["mappings"] for k, v in m["options"].items()}


def test_incident_response_panels():
    """The seed's Incident Response dashboard: recovery operations, breakers, success rates, escalations."""
    exprs = "\n".join(q[3] for q in panel_queries(("incident-response.json",)))
    for needle in (
        "recovery_active{", "sum by (procedure, status) (increase(recovery_executions_total{", "recovery_success_rate{",
        "histogram_quantile(0.5, sum by (le) (rate(recovery_duration_seconds_bucket{",
        "histogram_quantile(0.95, sum by (le) (rate(recovery_duration_seconds_bucket{",
        "max by (service) (circuit_breaker_state{", "sum by (service) (increase(circuit_breaker_rejected_total{",
        "degradation_level{", "monitoring_mode{", "recovery_approvals_pending{", "increase(recovery_escalations_total{",
        "recovery_desired_replicas{", "max by (severity) (incidents_open{", "incident_mttd_seconds{", "incident_mtta_seconds{",
        "incident_mttr_seconds{", "sum by (level) (increase(incident_escalations_total{", "max by (status) (incidents{",
        "sum by (receiver) (increase(notifications_sent_total{", "sum by (receiver) (increase(notifications_failed_total{",
        "max by (receiver) (notifications_pending{",
    ):
        assert needle in exprs, needle
    breaker = _panel("incident-response.json", "Circuit breaker state")
    assert breaker["type"] == "state-timeline"
    assert _mapped(breaker) == {"0": "closed", "1": "half_open", "2": "open", "3": "forced_open", "4": "disabled"}
    for title in ("Degradation level", "Degradation level over time"):
        assert _mapped(_panel("incident-response.json", title)) == {"0": "none", "1": "minimal", "2": "moderate", "3": "severe", "4": "emergency"}
    mode = _panel("incident-response.json", "Monitoring mode")
    assert mode["options"]["textMode"] == "name" and mode["targets"][0]["legendFormat"] == "{{mode}}"  # shows the mode's name
    rate = _panel("incident-response.json", "Recovery success rate")["fieldConfig"]["defaults"]
    assert (rate["min"], rate["max"]) == (0, 100)
    executions = _panel("incident-response.json", "Recovery executions by procedure and status")
    assert "[$__range]" in executions["targets"][0]["expr"] and executions["targets"][0]["instant"]


def test_layout_fits_and_does_not_overlap(dash):
    ids = [p["id"] for p in dash["panels"]]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] >= 1
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_every_query_parses(tmp_path):
    """promtool cannot parse a bare query, but it parses every rule's expression: wrap each."""
    promtool = require_tool("promtool")
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    queries = panel_queries()
    for dash in DASHBOARD_FILES:
        d = load_dashboard(dash)
        for a in d["annotations"]["list"]:
            if "expr" in a:
                queries.append((dash, "annotation " + a["name"], "-", substitute(a["expr"])))
        for v in d["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+), [a-z_]+\)", v["query"]["query"])
            queries.append((dash, "variable " + v["name"], "-", substitute(m.group(1))))
    for i, (_dash, _title, _ref, expr) in enumerate(queries):
        lines.append(f"      - record: dashboard_query_{i}")
        lines.append(f"        expr: {json.dumps(expr)}")
    path = tmp_path / "queries.yml"
    path.write_text("\n".join(lines) + "\n")
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(queries)} rules found" in res.stdout


def test_demo_prometheus_config(tmp_path):
    promtool = require_tool("promtool")
    text = (GRAFANA / "prometheus.yml").read_text()
    assert "127.0.0.1:9464" in text and "scrape_interval: 5s" in text and "aphrodite-sla-rules.yml" in text
    shutil.copy(GRAFANA / "prometheus.yml", tmp_path / "prometheus.yml")
    write_rules(tmp_path / "aphrodite-sla-rules.yml")
    res = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_readme_explains_import_and_rules_export():
    text = (GRAFANA / "README.md").read_text()
    for needle in ("Import", "DS_PROMETHEUS", "aphrodite-sla rules export", "prometheus.yml", "schemaVersion"):
        assert needle in text, needle
