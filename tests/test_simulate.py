"""The main job: simulated engine -> StatLogger code path -> runtime -> detection, exporter, summary."""
import subprocess
import sys
import urllib.request

import pytest

from aphrodite_sla.simulate import run_simulation


def test_latency_spike_is_detected_end_to_end_and_exported():
    scraped = {}
    lines = []

    def out(line):
        lines.append(line)
        if line.startswith("exporter: "):
            url = line.split(" ", 1)[1]
            scraped["url"] = url

    result = run_simulation("latency_spike", duration_s=1300, port=0, out=out)
    assert result.exporter_port is not None
    (fault,) = result.faults
    assert fault.fault.name == "latency_spike" and fault.fault.start_s == pytest.approx(600, abs=1)
    assert fault.detected and 0 <= fault.mttd_s <= 30  # the anomaly detector flags it within a few evaluations
    assert fault.first_violation is not None and fault.first_violation.at_s < 600 + 300
    assert result.unexplained == [] or all(s.at_s >= 600 for s in result.unexplained)
    assert any("MTTD" in line for line in lines)


def test_exporter_serves_sla_metrics_while_running():
    """Scraped over HTTP from inside the run (the simulation waits for the scrape): no wall-clock race."""
    box = {}

    def out(line):
        if line.startswith("exporter: "):
            box["url"] = line.split(" ", 1)[1]

    def scrape(engine_s):
        if engine_s >= 300 and "body" not in box:
            box["body"] = urllib.request.urlopen(box["url"], timeout=30).read().decode()

    run_simulation("steady", duration_s=400, port=0, out=out, on_evaluation=scrape)
    body = box["body"]
    assert "127.0.0.1" in box["url"]
    assert "sla_bound" in body and "sla_evaluations_total" in body and "sla_evaluation_duration_seconds_bucket" in body
    # Our families are sla_*; the vllm:* ones are the simulated engine's own exporter, as a real
    # engine would serve them beside ours.
    names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")}
    recovery = ("recovery_", "circuit_breaker_", "degradation_level", "monitoring_mode")  # the recovery collector's families
    assert names and all(n.startswith(("sla_", "vllm:", "rca_", *recovery)) for n in names)  # rca_: the RCA collector's
    assert "rca_duration_seconds_count" in names and "rca_correlations_found" in names
    assert any(n.startswith("vllm:e2e_request_latency_seconds") for n in names)
    assert "aphrodite:" not in body


def test_stall_scenario_raises_a_critical_stall_violation():
    result = run_simulation("stall", duration_s=800, out=lambda s: None)
    (fault,) = result.faults
    page = fault.first_page  # a stall is a page (StallDetected is a PageRaised)
    assert page is not None and page.rule == "stall" and page.severity == "critical"
    assert page.sla == "engine_stalled"
    assert 15 <= page.at_s - fault.fault.start_s <= 30


def test_steady_run_raises_no_violation():
    result = run_simulation("steady", duration_s=1200, out=lambda s: None)
    assert [s for s in result.signals if s.kind == "violation"] == []


def test_bad_arguments():
    with pytest.raises(KeyError):
        run_simulation("no_such_scenario", out=lambda s: None)
    with pytest.raises(ValueError, match="duration"):
        run_simulation("steady", duration_s=-1, out=lambda s: None)


def test_cli_list_and_errors():
    run = lambda *a: subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", "simulate", *a], capture_output=True, text=True)
    listing = run("--list")
    assert listing.returncode == 0 and "latency_spike" in listing.stdout and "mixed" in listing.stdout
    bad = run("--scenario", "nope")
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr
    neg = run("--duration", "-3")
    assert neg.returncode == 2 and "--duration" in neg.stderr
