"""`simulate` on recorded traffic: each trace format through the CLI, strict --fault parsing and
argument errors, --target-load from the measured capacity, SLAs from a configuration, the
demand-relative goodput SLA (not breached by a quiet trace nor by recovery shedding load), and
the arrival series recorded for RCA."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from aphrodite_sla.cli import main
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder
from aphrodite_sla.sim import Fault, FaultKind, get_scenario, measure_capacity, trace_scenario
from aphrodite_sla.sim.scenarios import parse_fault, scaled_trace
from aphrodite_sla.sim.traces import FORMATS, synthetic_trace, write_trace
from aphrodite_sla.simulate import ARRIVAL_SERIES, SIMULATED_MODEL_SLAS, run_simulation, simulation_config
from aphrodite_sla.sla.threshold import SLAThreshold, Statistic

EXT = {"csv": "csv", "azure": "csv", "mooncake": "jsonl", "burstgpt": "csv"}


def model_like_trace(duration_s: float, rate: float, seed: int = 0):
    """A trace with the default workload's mix (prompt median 512, output median 128), which the
    simulated model's SLAs are set for."""
    return synthetic_trace(duration_s, rate, seed=seed, burstiness=1.0, prompt_median=512.0, prompt_sigma=0.8,
                           output_median=128.0, output_sigma=0.6, follow_up_fraction=0.0)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("APHRODITE_SLA_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", "simulate", *args], capture_output=True, text=True,
                          env=full, timeout=300)


def capture_runtime(box: dict):
    """A step logger that keeps the runtime (to read the recorded series after the run)."""
    def make(runtime):
        box["runtime"] = runtime
        return runtime.recorder.record
    return make


def series(runtime, name: str) -> np.ndarray:
    return runtime.manager.store.buffer(name).window(-math.inf, math.inf)[1]


# --------------------------------------------------------------------------- the CLI on each format


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_replays_each_format(tmp_path, fmt):
    path = tmp_path / f"trace.{EXT[fmt]}"
    write_trace(model_like_trace(150.0, 20.0, seed=1), path, fmt)
    proc = cli("--trace", str(path), "--format", fmt, "--duration", "120", "--no-live", "--port", "0", "--recovery", "off")
    assert proc.returncode == 0, proc.stderr
    assert f"scenario trace:trace.{EXT[fmt]}: 120 s of engine time" in proc.stdout
    assert "SLA compliance" in proc.stdout and "goodput_percent" in proc.stdout


def test_cli_trace_with_a_fault_detects_it(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(model_like_trace(400.0, 30.0, seed=2), path, "mooncake")
    proc = cli("--trace", str(path), "--fault", "stall@120+40", "--duration", "300", "--no-live", "--port", "0", "--recovery", "off")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("stall "))
    assert "120s" in row and "160s" in row and "engine_stalled" in row


# --------------------------------------------------------------------------- argument errors


@pytest.fixture
def small_trace(tmp_path):
    path = tmp_path / "t.csv"
    write_trace(model_like_trace(60.0, 5.0), path, "csv")
    return str(path)


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "nosuch@10"], "--fault 'nosuch@10': unknown fault kind 'nosuch'"),
    (["--fault", "stall@-5"], "START must be >= 0"),
    (["--fault", "stall@ten"], "START must be a number"),
    (["--fault", "stall@10+abc"], "DURATION must be a number"),
    (["--fault", "stall@10+0"], "DURATION must be > 0"),
    (["--fault", "error_burst@10+20x2"], "must be in [0, 1]"),
    (["--fault", "stall"], "expected KIND@START"),
    (["--fault", "stall@5000"], "starts at or after the end of the run"),
    (["--thin", "0"], "--thin is the share of requests kept"),
    (["--target-load", "-1"], "--target-load must be"),
    (["--scenario", "steady"], "--scenario and --trace both"),
])
def test_cli_bad_arguments_exit_2_with_a_message(small_trace, capsys, args, message):
    assert main(["simulate", "--trace", small_trace, "--no-live", "--port", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_scaling_options_are_exclusive_and_need_a_trace(small_trace, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--trace", small_trace, "--target-load", "0.5", "--thin", "0.5"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["simulate", "--time-scale", "0.5", "--no-live"]) == 2
    assert "give --trace FILE" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(tmp_path / "missing.csv"), "--no-live"]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_time_s,prompt_tokens,output_tokens\n0.0,zero,5\n")
    assert main(["simulate", "--trace", str(bad), "--no-live"]) == 2
    assert "bad.csv:2: column prompt_tokens" in capsys.readouterr().err


def test_parse_fault():
    assert parse_fault("stall@600+45") == Fault(FaultKind.STALL, 600.0, 45.0)
    assert parse_fault("latency_spike@300") == Fault(FaultKind.LATENCY_SPIKE, 300.0, 600.0)
    f = parse_fault("bad_deployment@900+infx1.6")
    assert f.kind is FaultKind.BAD_DEPLOYMENT and math.isinf(f.duration_s) and f.magnitude == 1.6
    assert parse_fault("error_burst@0+30x0.5").magnitude == 0.5
    for bad in ("stall@nan", "stall@inf", "stall@10+nan", "stall@10+-3", "@10", "stall@10x"):
        with pytest.raises(ValueError, match=r"(START|DURATION|MAGNITUDE) must|unknown fault kind"):
            parse_fault(bad)


# --------------------------------------------------------------------------- target load


def test_target_load_scales_arrivals_to_the_measured_capacity():
    tr = model_like_trace(600.0, 10.0, seed=3)
    cap = measure_capacity(tr)
    at3 = scaled_trace(tr, target_load=0.3)
    at6 = scaled_trace(tr, target_load=0.6)
    assert at3.mean_rate == pytest.approx(0.3 * cap.requests_per_s, rel=1e-9)
    assert at6.mean_rate == pytest.approx(2 * at3.mean_rate, rel=1e-9)
    assert len(at6) == len(tr) and at6.prompt_tokens == tr.prompt_tokens  # the same requests, closer together
    assert scaled_trace(tr, time_scale=0.5).mean_rate == pytest.approx(2 * tr.mean_rate)
    assert scaled_trace(tr, thin=0.25, loop=True).loop
    with pytest.raises(ValueError, match="give one"):
        scaled_trace(tr, target_load=0.5, thin=0.5)

    # and the simulation runs at that rate: what arrives per second is the target share of capacity
    scenario = trace_scenario(at3, duration_s=200.0)
    assert scenario.duration_s == 200.0
    box: dict = {}
    result = run_simulation(scenario, recovery="off", out=lambda _s: None, step_logger=capture_runtime(box))
    offered = series(box["runtime"], "arrival_rate_rps")
    assert np.mean(offered[2:]) == pytest.approx(0.3 * cap.requests_per_s, rel=0.15)
    assert result.arrived / 200.0 == pytest.approx(0.3 * cap.requests_per_s, rel=0.15)


def test_trace_scenario_duration_defaults_to_the_trace_length():
    tr = model_like_trace(90.0, 5.0, seed=4)
    result = run_simulation(trace_scenario(tr), recovery="off", out=lambda _s: None)
    assert result.engine_s == pytest.approx(tr.duration_s + 1.0, abs=0.1)
    assert result.scenario.startswith("trace:")


# --------------------------------------------------------------------------- SLAs from configuration

MY_SLA = SLAThreshold("my_ttft_p90", 40.0, 25.0, 2, statistic=Statistic.P90, source_metric="ttft_ms", unit="ms", sample_rate_hz=100.0)


def test_thresholds_replace_the_simulated_models():
    result = run_simulation("steady", duration_s=200, recovery="off", out=lambda _s: None, thresholds=[MY_SLA])
    assert "my_ttft_p90" in result.compliance
    assert "goodput_percent" not in result.compliance and "request_latency_p95" not in result.compliance
    config = simulation_config(SLAConfig(thresholds=(MY_SLA,), recovery_cooldown_s=10.0), recovery="off")
    assert config.recovery == "off" and not config.system_sampler and config.recovery_cooldown_s == 10.0
    assert config.ttft_objective_ms == SLAConfig().ttft_objective_ms  # the configuration's objectives
    default = simulation_config(None)
    assert default.thresholds == SIMULATED_MODEL_SLAS and "tokens_per_second" not in {t.metric_name for t in SIMULATED_MODEL_SLAS}
    assert default.ttft_objective_ms < SLAConfig().ttft_objective_ms  # the simulated model's
    assert simulation_config(SLAConfig(ttft_objective_ms=900.0)).ttft_objective_ms == 900.0


def test_cli_config_file_and_environment(tmp_path, small_trace):
    cfg = tmp_path / "sla.toml"
    cfg.write_text('sla_set = "serving"\n\n[[thresholds]]\nmetric_name = "my_ttft_p90"\ntarget_value = 40.0\n'
                   'tolerance_percent = 25.0\nstatistic = "p90"\nsource_metric = "ttft_ms"\nunit = "ms"\n')
    common = ("--trace", small_trace, "--duration", "50", "--no-live", "--port", "0", "--recovery", "off")
    by_flag = cli(*common, "--config", str(cfg))
    assert by_flag.returncode == 0, by_flag.stderr
    assert "my_ttft_p90" in by_flag.stdout and "tpot_p95" in by_flag.stdout and "goodput_percent" not in by_flag.stdout
    as_json = tmp_path / "sla.json"
    as_json.write_text(json.dumps({"thresholds": [{"metric_name": "json_sla", "target_value": 5000.0, "tolerance_percent": 10.0,
                                                   "source_metric": "request_latency_ms"}]}))
    by_env = cli(*common, env={"APHRODITE_SLA_CONFIG": str(as_json)})
    assert by_env.returncode == 0, by_env.stderr
    assert "json_sla" in by_env.stdout
    malformed = tmp_path / "broken.toml"
    malformed.write_text("[[thresholds]]\nmetric_name = \n")
    bad = cli(*common, "--config", str(malformed))
    assert bad.returncode == 2 and "not valid TOML" in bad.stderr
    bad_env = cli(*common, env={"APHRODITE_SLA_EVALUATION_INTERVAL_S": "0"})
    assert bad_env.returncode == 2 and "evaluation_interval_s" in bad_env.stderr
    missing = cli(*common, "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "--config" in missing.stderr


# --------------------------------------------------------------------------- the demand-relative SLA


def test_goodput_percent_is_recorded_per_finished_request():
    from aphrodite_sla.clock import ManualClock
    from aphrodite_sla.sla.manager import SLAManager

    class Req:
        def __init__(self, reason, queued, prefill, tpot, tokens=10):
            self.finish_reason, self.queued_time, self.prefill_time = reason, queued, prefill
            self.mean_time_per_output_token, self.num_generation_tokens = tpot, tokens
            self.e2e_latency, self.decode_time = 1.0, 0.5

    class It:
        num_generation_tokens = num_prompt_tokens = num_preempted_reqs = 0
        time_to_first_tokens_iter: list = []
        inter_token_latencies_iter: list = []
        finished_requests = [Req("STOP", 0.1, 0.1, 0.02), Req("ERROR", 0.1, 0.1, 0.02), Req("STOP", 2.5, 0.1, 0.02),
                             Req("LENGTH", 0.1, 0.1, 0.2)]

    mgr = SLAManager([], clock=ManualClock())
    rec = EngineStatsRecorder(mgr)
    rec.record(None, It())
    rec.flush()
    assert mgr.store.buffer("goodput_percent").window(-math.inf, math.inf)[1].tolist() == [100.0, 0.0, 0.0, 0.0]


def test_a_quiet_trace_does_not_breach_the_goodput_sla():
    """At 10% of capacity tokens/s is far below the old absolute minimum (6,000), yet nothing is wrong."""
    tr = scaled_trace(model_like_trace(900.0, 10.0, seed=5), target_load=0.1)
    box: dict = {}
    result = run_simulation(trace_scenario(tr, duration_s=600.0), recovery="off", out=lambda _s: None, step_logger=capture_runtime(box))
    assert [s for s in result.signals if s.kind == "violation"] == []
    assert result.compliance["goodput_percent"] == 100.0
    tps = series(box["runtime"], "tokens_per_second")
    assert tps.size and np.mean(tps) < 0.5 * 6000.0
    assert np.mean(series(box["runtime"], "goodput_percent")) > 99.0


def test_recovery_shedding_load_does_not_breach_the_goodput_sla():
    """Half the requests turned away for five minutes: tokens/s halves, goodput does not move."""
    box: dict = {}
    tps: dict[str, float] = {}

    def recent_tokens_per_second(span_s: float) -> float:
        t, v = box["runtime"].manager.store.buffer("tokens_per_second").window(-math.inf, math.inf)
        return float(np.mean(v[t > t[-1] - span_s]))

    def shed(engine_s: float) -> None:
        admission = box["runtime"].context.server.admission
        if engine_s == pytest.approx(200.0, abs=2.0):
            tps["before"] = recent_tokens_per_second(120.0)
            admission.shed(0.5, reason="test: recovery sheds load")
        elif engine_s == pytest.approx(500.0, abs=2.0):
            tps["during"] = recent_tokens_per_second(150.0)
            admission.open()

    result = run_simulation("steady", duration_s=700, recovery="act", out=lambda _s: None, on_evaluation=shed,
                            step_logger=capture_runtime(box))
    assert result.shed_requests > 0.3 * 40 * 300
    assert [s for s in result.signals if s.sla == "goodput_percent"] == []
    assert tps["during"] < 0.7 * tps["before"] and tps["during"] < 6000.0  # the old absolute SLA would have breached
    runtime = box["runtime"]
    shed_series = series(runtime, "arrival_shed")
    assert shed_series.sum() == result.shed_requests


def test_arrival_series_are_registered_and_follow_the_traffic():
    box: dict = {}
    result = run_simulation("traffic_surge", duration_s=900, recovery="off", out=lambda _s: None, step_logger=capture_runtime(box))
    runtime = box["runtime"]
    for name, _ in ARRIVAL_SERIES:
        assert name in runtime.manager.store.names(), name
    t, rate = runtime.manager.store.buffer("arrival_rate_rps").window(-math.inf, math.inf)
    t = t - (runtime.manager.clock() - result.engine_s)  # engine seconds since the start (the ring keeps the last 600 s)
    assert t[0] < 590
    assert np.mean(rate[(t > 100) & (t < 595)]) == pytest.approx(40.0, rel=0.1)
    assert np.mean(rate[(t > 610) & (t < 895)]) == pytest.approx(80.0, rel=0.1)
    prompts = series(runtime, "arrival_prompt_tokens_mean")
    assert 400 < np.median(prompts) < 900


def test_summary_lists_regression_episodes():
    lines: list[str] = []
    result = run_simulation("latency_spike", duration_s=1300, recovery="off", out=lines.append)
    regressions = [s for s in result.signals if s.kind == "regression"]
    assert regressions
    head = next(i for i, line in enumerate(lines) if line.startswith("regression episodes"))
    assert lines[head] == f"regression episodes ({len(regressions)}):"
    listed = lines[head + 1: head + 1 + len(regressions)]  # every episode, one line each
    assert all(line.lstrip().startswith("[") and "regression" in line for line in listed)
    assert all(r.sla in line for r, line in zip(regressions, listed))


def test_named_scenarios_still_run_with_extra_faults(capsys):
    scenario = get_scenario("steady")
    assert scenario.faults == ()
    assert main(["simulate", "--scenario", "steady", "--duration", "300", "--fault", "error_burst@100+120x0.3",
                 "--no-live", "--port", "0", "--recovery", "off"]) == 0
    out = capsys.readouterr().out
    assert "error_burst" in out and "NOT DETECTED" not in out


def test_calibrate_then_replay_the_same_trace_healthy_is_quiet_and_a_fault_still_pages(tmp_path):
    """The issue's loop, as a user runs it: a trace whose mix the hand-set SLAs do not fit (long
    prompts, fewer tokens out: a healthy p95 of ~1.9 s under a 4.4 s bound, which a doubling would
    not cross); `calibrate --simulate --trace` writes the configuration; a healthy replay of the same
    trace with it raises no violation, and the same replay with a latency spike raises one."""
    trace = synthetic_trace(900.0, 6.0, seed=11, burstiness=1.0, prompt_median=2048.0, prompt_sigma=0.5,
                            output_median=96.0, output_sigma=0.5, follow_up_fraction=0.0)
    path = tmp_path / "long_prompts.csv"
    write_trace(trace, path, "csv")
    config = tmp_path / "calibrated.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APHRODITE_SLA_")}
    calibrated = subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", "calibrate", "--simulate", "--trace", str(path),
                                 "--seed", "1", "--output", str(config)], capture_output=True, text=True, env=env, timeout=300)
    assert calibrated.returncode == 0, calibrated.stderr
    assert config.exists() and "[[thresholds]]" in config.read_text()

    healthy = cli("--trace", str(path), "--config", str(config), "--recovery", "off", "--seed", "1", "--no-live", "--port", "0")
    assert healthy.returncode == 0, healthy.stderr
    assert " 0 violations" in healthy.stdout or "(0 violations" in healthy.stdout, healthy.stdout[-2000:]

    faulty = cli("--trace", str(path), "--config", str(config), "--recovery", "off", "--seed", "1", "--no-live", "--port", "0",
                 "--fault", "latency_spike@300+600")
    assert faulty.returncode == 0, faulty.stdout[-2000:]  # exit 1 would mean the fault went undetected
    row = next(line for line in faulty.stdout.splitlines() if line.startswith("latency_spike"))
    assert "NOT DETECTED" not in row and "violation" in faulty.stdout
    violation_at = row.split()[6]  # the fault table's "violation" column
    assert violation_at.endswith("s") and 300 <= float(violation_at[:-1]) <= 900
