"""End to end with a real Prometheus: the simulator's exporter is scraped every second, the rules
are loaded, and every query of every panel of every dashboard must return data.

Set-up (module fixture, always torn down): `aphrodite-sla simulate --scenario latency_spike
--port 0` in a subprocess (a latency spike at 600 engine-seconds gives violations, breaches, bad
events and anomalies within ~20 s of wall time at --speed 60), then `prometheus` on 127.0.0.1 with
a temporary storage directory, scraping it at 1 s and evaluating the rendered rules at 1 s.
Without `prometheus`/`promtool` the tests fail when ``CI`` is set and are skipped otherwise.

The incident-response dashboard reads the recovery families (recovery_*, circuit_breaker_*,
degradation_level, monitoring_mode): the simulator runs with ``--recovery`` (acting on the simulated
engine), and every one of its queries must return a finite value, after a recovery has run.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aphrodite_sla.export.rules import write_rules
from tests.test_dashboards import DASHBOARD_FILES, load_dashboard, panel_queries, substitute
from tests.tools import require_tool, start_prometheus, start_simulator, stop_process

SCENARIO = "latency_spike"
SPEED = 60.0  # engine seconds per wall second; the spike's violation is at ~840 engine-s
DURATION_S = 4000.0  # engine seconds: longer than the test needs (the fixture stops it)
DATA_DEADLINE_S = 75.0  # wall seconds from the simulator's start until every query must have data

INCIDENT_FILES = ("incident-response.json",)
BASE_FILES = tuple(f for f in DASHBOARD_FILES if f not in INCIDENT_FILES)
SIM_RECOVERY_ARGS = ["--recovery"]


@dataclass
class Stack:
    exporter_url: str
    prometheus_url: str
    started: float
    sim_output: list[str] = field(default_factory=list)
    prometheus_log: Path | None = None

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.prometheus_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def query(self, expr: str) -> dict:
        try:
            return self.api("/api/v1/query", query=expr)
        except urllib.error.HTTPError as err:  # 400 on a bad query: the body says why
            return json.loads(err.read() or b"{}") or {"status": "error", "error": str(err)}

    def diagnostics(self) -> str:
        log = self.prometheus_log.read_text()[-3000:] if self.prometheus_log and self.prometheus_log.exists() else ""
        return "simulator output:\n" + "".join(self.sim_output[-30:]) + "\nprometheus log (tail):\n" + log


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    require_tool("prometheus")
    require_tool("promtool")
    work = tmp_path_factory.mktemp("prometheus-e2e")
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        sim, base_url, output = start_simulator("--scenario", SCENARIO, "--speed", str(SPEED), "--duration", str(DURATION_S),
                                                "--no-live", *SIM_RECOVERY_ARGS, "--incidents-db", str(work / "incidents.db"))
        procs.append(sim)
        exporter_url = f"{base_url}/metrics"
        target = urllib.parse.urlparse(exporter_url).netloc

        from aphrodite_sla.simulate import SIMULATED_MODEL_SLAS

        write_rules(work / "rules.yml", SIMULATED_MODEL_SLAS)
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                  "rule_files:\n  - rules.yml\n"
                  "scrape_configs:\n  - job_name: aphrodite-sla\n    static_configs:\n"
                  f"      - targets: [\"{target}\"]\n")
        prom, prometheus_url, log = start_prometheus(work, config, lambda: "simulator output:\n" + "".join(output[-30:]))
        procs.append(prom)
        yield Stack(exporter_url, prometheus_url, started, output, log)
    finally:
        for p in reversed(procs):
            stop_process(p)


def _all_queries() -> list[tuple[str, str, str, str]]:
    queries = panel_queries(BASE_FILES)
    for name in DASHBOARD_FILES:
        for v in load_dashboard(name)["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+), ([a-z_]+)\)", v["query"]["query"])
            # a variable's values come from this selector's series: it must find some with the label
            queries.append((name, f"variable {v['name']}", "-", f"count by ({m.group(2)}) ({substitute(m.group(1))})"))
    # the simulated latency spike becomes a (pending or firing) SLAViolation alert in Prometheus
    queries.append(("rules", "SLAViolation alert", "-", 'max_over_time(ALERTS{alertname="SLAViolation"}[10m])'))
    return queries


def _wait_for_data(stack: Stack, queries: list[tuple[str, str, str, str]], deadline: float, *, finite: bool = False) -> None:
    """Query until every one returns a series (with ``finite``: one whose value is not NaN) or the
    deadline passes, then assert; a query Prometheus rejects fails at once."""
    while True:
        empty, errors = [], []
        for q in queries:
            res = stack.query(q[3])
            if res.get("status") != "success":
                errors.append((q, res.get("error")))
            elif not res["data"]["result"] or (finite and all(s["value"][1] in ("NaN", "+Inf", "-Inf") for s in res["data"]["result"])):
                empty.append(q)
        assert not errors, "queries Prometheus rejected:\n" + "\n".join(f"  {q[0]} / {q[1]} [{q[2]}]: {q[3]}\n    {e}" for q, e in errors)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not empty, (
        f"queries with no {'finite value' if finite else 'series'} after {time.monotonic() - stack.started:.0f} s:\n"
        + "\n".join(f"  {q[0]} / {q[1]} [{q[2]}]: {q[3]}" for q in empty)
        + "\n" + stack.diagnostics()
    )


def test_every_dashboard_query_returns_data(stack):
    queries = _all_queries()
    assert len(queries) >= 40
    _wait_for_data(stack, queries, stack.started + DATA_DEADLINE_S)


def test_incident_response_queries_return_data(stack):
    """Every incident-response query has a finite value: the simulator ran with --recovery, the
    latency spike started a recovery (executions, a duration observed within 5 minutes), and every
    other family is exported for the model (zero-valued series count)."""
    queries = panel_queries(INCIDENT_FILES)
    assert len(queries) >= 15
    queries.append(("recovery", "a recovery ran", "-", 'sum(recovery_executions_total{model_name=~".*"}) > 0'))
    _wait_for_data(stack, queries, stack.started + DATA_DEADLINE_S, finite=True)


def test_rules_load_and_evaluate_without_errors(stack):
    deadline = time.monotonic() + 20
    while True:
        groups = stack.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        pending = [r["name"] for r in rules if r["health"] == "unknown"]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {g["name"] for g in groups} == {"aphrodite-sla-slo", "aphrodite-sla-alerts"}
    assert len(rules) >= 21 + 4
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok" or r.get("lastError")]
    assert not bad, f"rules not healthy: {bad}"
    # the fleet-wide ratios exist and are numbers in [0, 1] (never NaN)
    res = stack.query('{__name__=~"sla:sla_events_error_ratio:rate.*"}')
    values = [float(s["value"][1]) for s in res["data"]["result"]]
    assert values and all(0.0 <= v <= 1.0 for v in values), values


def test_promtool_check_metrics_is_clean_for_our_families(stack):
    promtool = require_tool("promtool")
    with urllib.request.urlopen(stack.exporter_url, timeout=10) as resp:
        body = resp.read()
    assert b"sla_compliance_rate" in body and b"vllm:e2e_request_latency_seconds_bucket" in body
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).decode().splitlines() if line.strip()]
    # the emulated engine series keep vLLM's own names (colons): promtool warns about those only
    ours = [p for p in problems if not p.startswith("vllm:")]
    assert not ours, "promtool check metrics on our families:\n" + "\n".join(
        f"  {p} (x{ours.count(p)})" for p in sorted(set(ours))
    )
