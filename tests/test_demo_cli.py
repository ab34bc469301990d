"""The demo (main job) detects every injected fault; the CLI runs and reports errors clearly."""
import subprocess
import sys

from aphrodite_sla.cli import main
from aphrodite_sla.demo import run_demo, synthetic_fault
from aphrodite_sla.sim.attribution import ANOMALY


def test_demo_detects_each_injected_fault_after_injection():
    lines = []
    result = run_demo(2400, seed=3, out=lines.append)
    assert result.false_alarms == []
    for r in result.faults:
        detected = r.first_violation
        assert detected is not None, r.fault.name
        assert r.fault.start_s < detected.at_s <= r.fault.start_s + 300, r
        # the early warning: before the sustained violation, once the change held for most of a
        # minute after its onset (sla.warning_policy: an onset within ~15 s, confirmed within 60 s)
        warned = r.first(ANOMALY)
        assert warned is not None and warned.at_s < detected.at_s and warned.at_s - r.fault.start_s <= 75, r
    assert any("INJECTED" in line for line in lines)
    assert any("MTTD" in line for line in lines)


def test_demo_without_faults_raises_no_violation():
    result = run_demo(1200, seed=4, faults=[], out=lambda s: None)
    assert result.false_alarms == []
    assert all(c == 100.0 for c in result.compliance.values())


def test_demo_reports_a_missed_fault(capsys):
    # A fault too short for a 3-minute window with an 80% sustained rule is not a violation.
    result = run_demo(900, seed=5, faults=[synthetic_fault("blip", "tokens_per_second", 300, 330)], out=lambda s: None)
    assert result.faults[0].first_violation is None


def test_cli_thresholds_lists_the_active_and_the_seed_slas(capsys, monkeypatch):
    monkeypatch.delenv("APHRODITE_SLA_CONFIG", raising=False)
    assert main(["thresholds"]) == 0
    out = capsys.readouterr().out
    assert "ttft_p95" in out and "tpot_p95" in out and "request_latency_p95" not in out
    assert main(["thresholds", "--set", "seed"]) == 0
    out = capsys.readouterr().out
    for name in ("request_latency_p95", "tokens_per_second", "echo_evolution_convergence"):
        assert name in out


def test_cli_rejects_bad_duration():
    proc = subprocess.run(
        [sys.executable, "-m", "aphrodite_sla.cli", "demo", "--duration", "-5"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--duration must be > 0" in proc.stderr
