"""SLA calibration: the method on synthetic histories (bounds, replayed breaches and firings, lower
bounds, too little history), the TOML it writes read back by ``load_config``, the simulate source
and the property the margin is for (a healthy replay raises nothing, a fault is still caught), and
the Prometheus source against a real Prometheus scraping the simulator, through the CLI too.

The Prometheus tests start ``simulate --scenario steady --speed 60 --no-live --port 0 --recovery
off`` and ``prometheus`` (127.0.0.1, a temporary storage directory, a 1 s scrape); without the
binary they fail when ``CI`` is set and are skipped otherwise.
"""
from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from aphrodite_sla import cli
from aphrodite_sla.calibration import (
    Calibration,
    NotEnoughHistory,
    WindowSeries,
    propose,
    render_table,
    render_toml,
    replay,
    window_series,
    write_config,
)
from aphrodite_sla.calibration_sources import (
    PrometheusClient,
    SourceError,
    candidate_queries,
    parse_duration,
    prometheus_history,
    simulate_history,
)
from aphrodite_sla.config import ENV_FILE, builtin_thresholds, load_config
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic
from tests.tools import require_tool, start_prometheus, start_simulator, stop_process

P95 = SLAThreshold("lat_p95", 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat_ms", unit="ms", min_samples=5)


def _series(values: list[float], step_s: float = 5.0) -> WindowSeries:
    return WindowSeries(np.arange(1, len(values) + 1) * step_s, np.asarray(values, dtype=float), step_s)


# -- the method -------------------------------------------------------------------------------

def test_window_series_computes_each_sliding_window_statistic():
    t = np.arange(0.0, 300.0, 1.0)  # 1 Hz for 5 minutes
    v = np.where(t < 150, 10.0, 30.0)
    s = window_series(t, v, P95, 5.0)  # 60 s windows every 5 s, from the first full window
    assert s.ends[0] == pytest.approx(60.0) and s.ends[-1] <= 299.0
    assert len(s.ends) == int((299 - 60) // 5) + 1
    by_end = dict(zip(s.ends.tolist(), s.values.tolist()))
    assert by_end[100.0] == 10.0  # (40, 100]: all 10
    assert by_end[210.0] == 30.0  # (150, 210]: all 30
    # (120, 180]: 29 values of 10 (121..149), 31 of 30 (150..180)
    assert by_end[180.0] == 30.0
    mean = window_series(t, v, replace(P95, statistic=Statistic.MEAN), 5.0)
    assert dict(zip(mean.ends.tolist(), mean.values.tolist()))[180.0] == pytest.approx((29 * 10 + 31 * 30) / 60)
    rate = window_series(t, v, replace(P95, statistic=Statistic.RATE), 5.0)
    assert dict(zip(rate.ends.tolist(), rate.values.tolist()))[180.0] == pytest.approx((29 * 10 + 31 * 30) / 60.0)
    p50 = window_series(t, v, replace(P95, statistic=Statistic.P50), 5.0)
    assert dict(zip(p50.ends.tolist(), p50.values.tolist()))[165.0] == 10.0  # (105, 165]: 45 of 10, 15 of 30


def test_window_series_leaves_windows_with_too_few_samples_unjudged():
    t = np.concatenate([np.arange(0.0, 120.0, 1.0), np.arange(120.0, 240.0, 30.0)])  # 1 Hz, then one per 30 s
    s = window_series(t, np.ones_like(t), P95, 10.0)
    judged = dict(zip(s.ends.tolist(), np.isfinite(s.values).tolist()))
    assert judged[110.0] and not judged[200.0]  # 2 samples in (140, 200] < min_samples 5
    assert len(window_series([0.0, 10.0], [1.0, 2.0], P95, 5.0).ends) == 0  # shorter than one window


def test_propose_upper_bound_is_worst_window_plus_margin_and_target_the_median():
    values = [80.0, 90.0, 100.0, 110.0, 140.0, 95.0, 100.0]
    cal = propose(P95, _series(values), margin=0.1)
    assert cal.median == 100.0 and cal.worst == 140.0
    p = cal.proposed
    assert p is not None and p.target_value == 100.0
    assert p.bound == pytest.approx(154.0) and p.bound >= 154.0  # tolerance rounded outward
    assert p.tolerance_percent == pytest.approx(54.0)
    assert (p.metric_name, p.source, p.statistic, p.measurement_window_minutes) == ("lat_p95", "lat_ms", Statistic.P95, 1.0)
    assert cal.proposed_replay is not None and cal.proposed_replay.breaches == 0 and cal.proposed_replay.fires == 0
    # the current bound (120) is beyond at one window: breached, never sustained
    assert cal.current_replay is not None and cal.current_replay.breaches == 1 and cal.current_replay.fires == 0


def test_replay_counts_sustained_firings_like_the_evaluator():
    th = replace(P95, resolve_after_s=10.0)  # bound 120; 60 s window = 12 points at 5 s
    healthy, bad = [100.0] * 30, [200.0] * 20
    series = _series(healthy + bad + healthy + bad + healthy)
    r = replay(series, th)
    assert r.breaches == 40 and r.windows == 130
    assert r.fires == 2  # two sustained episodes, each resolved in between
    assert r.fires_per_day == pytest.approx(2 * 86_400 / (130 * 5.0))
    assert r.breach_percent == pytest.approx(100 * 40 / 130)
    blips = _series(([100.0] * 9 + [200.0]) * 10)  # one point in ten beyond: never 80% of the window
    assert replay(blips, th).fires == 0 and replay(blips, th).breaches == 10
    # unjudged points are not evaluation points: after a gap longer than the window, three points
    # beyond are the whole window
    nan_gap = _series([100.0] * 12 + [math.nan] * 20 + [200.0] * 3)
    assert replay(nan_gap, th).windows == 15 and replay(nan_gap, th).fires == 1
    # ... but at the history's start the window not yet seen counts as not beyond, as in the
    # evaluator after a start (SLAThreshold.is_sustained): 3 of 12 points is not 80% of the window
    cold = _series([200.0] * 3 + [math.nan] * 50)
    assert replay(cold, th).windows == 3 and replay(cold, th).fires == 0
    assert replay(_series([200.0] * 10), th).fires == 1  # 10 of 12 points: 83%


def test_lower_bound_sla_is_the_mirror_image():
    th = SLAThreshold("tps", 6000.0, 20.0, 1, direction=Direction.LOWER, unit="tokens/s", min_samples=1)
    values = [6000.0, 6200.0, 5800.0, 5000.0, 6100.0]
    cal = propose(th, _series(values), margin=0.1)
    p = cal.proposed
    assert p is not None and cal.worst == 5000.0 and p.target_value == 6000.0
    assert p.bound == pytest.approx(4500.0) and p.bound <= 4500.0
    assert p.tolerance_percent == pytest.approx(25.0)
    assert p.direction is Direction.LOWER
    # current bound 4800: never beyond; a stricter one (5500) is breached by one window
    assert cal.current_replay is not None and cal.current_replay.breaches == 0
    assert replay(_series(values), replace(th, tolerance_percent=100 * (1 - 5500 / 6000))).breaches == 1


def test_not_enough_history_is_a_clear_error():
    with pytest.raises(NotEnoughHistory, match="lat_p95: not enough history: 2 judged 1-minute windows of lat_ms"):
        propose(P95, _series([100.0, 110.0, math.nan, math.nan]))
    with pytest.raises(NotEnoughHistory, match="not enough history: 0 judged"):
        propose(P95, window_series([], [], P95, 5.0))
    with pytest.raises(ValueError, match="margin"):
        propose(P95, _series([1.0] * 10), margin=1.0)


def test_all_zero_healthy_history_keeps_the_current_bound():
    err = SLAThreshold("errors", 0.1, 400.0, 1, source_metric="request_error_percent", unit="%", min_samples=1)
    cal = propose(err, _series([0.0] * 20))
    assert cal.proposed is None and cal.note == "healthy mean never above 0: no relative bound from it; kept the current one"
    some = propose(err, _series([0.0] * 18 + [1.0, 1.0]))  # median 0: the target is the mean window
    assert some.proposed is not None and some.proposed.target_value == pytest.approx(0.1)
    assert some.proposed.bound == pytest.approx(1.1) and "mean" in some.note


def test_toml_round_trip_through_load_config(tmp_path):
    th = SLAThreshold("ttft_p95", 2000.0, 25.0, 5, statistic=Statistic.P95, source_metric="ttft_ms", unit="ms",
                      description='95th "percentile" TTFT — ünïcode', sample_rate_hz=200.0, severity_ratios=(1.3, 2.0), objective_percent=99.0)
    tps = SLAThreshold("tokens_per_second", 100.0, 20.0, 3, direction=Direction.LOWER, unit="tokens/s", enabled=False)
    cals = [propose(th, _series([20.0, 25.0, 30.0, 24.0])), propose(tps, _series([6000.0, 6100.0, 5900.0])),
            Calibration(SLAThreshold("gpu_utilization_percent", 85.0, 10.0, 10), None, note="no source")]
    path = write_config(tmp_path / "slas.toml", cals, sla_set="seed", header="calibrated\nby a test")
    text = path.read_text()
    assert text.startswith("# calibrated\n# by a test\n")
    assert "# not calibrated (no source): kept as it was\n[[thresholds]]\nmetric_name = \"gpu_utilization_percent\"" in text
    assert not list(tmp_path.glob(".slas.toml.*"))  # the temporary file was renamed, not left behind
    cfg = load_config({ENV_FILE: str(path)})
    assert cfg.sla_set == "seed"
    assert list(cfg.thresholds) == [cals[0].proposed, cals[1].proposed, cals[2].current]  # every field, exactly
    active = {t.metric_name: t for t in cfg.active_thresholds()}
    assert active["ttft_p95"].bound == pytest.approx(cals[0].proposed.bound)  # type: ignore[union-attr]
    assert active["gpu_utilization_percent"].target_value == 85.0  # not calibrated: kept as it was
    assert render_toml([]) == "\n"


# -- the sources ------------------------------------------------------------------------------

def test_parse_duration():
    assert parse_duration("7d") == 7 * 86_400 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_duration("500ms") == 0.5
    for bad in ("", "7 days", "1x", "-5s", "0s", "1h-"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_each_serving_sla_maps_to_an_engine_query_or_to_no_source():
    ttft = candidate_queries(SLAThreshold("t", 1.0, 1.0, 5, statistic=Statistic.P99, source_metric="ttft_ms"), 300.0)
    assert ttft[0] == ("vllm:time_to_first_token_seconds_bucket",
                       "histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[300s]))) * 1000")
    assert ttft[1][0] == "aphrodite:time_to_first_token_seconds_bucket"
    itl = [n for n, _ in candidate_queries(SLAThreshold("i", 1.0, 1.0, 5, statistic=Statistic.P95, source_metric="itl_ms"), 60.0)]
    assert itl[:2] == ["vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket"]
    err = candidate_queries(SLAThreshold("e", 1.0, 1.0, 5, source_metric="request_error_percent"), 15.0, 'model_name="m"')
    assert err[0][1] == ('100 * (sum(rate(vllm:request_success_total{model_name="m",finished_reason="error"}[15s])) or vector(0)) '
                         '/ sum(rate(vllm:request_success_total{model_name="m"}[15s]))')
    assert candidate_queries(SLAThreshold("gpu_utilization_percent", 85.0, 10.0, 10), 600.0) == []
    assert candidate_queries(SLAThreshold("t", 1.0, 1.0, 5, statistic=Statistic.MAX, source_metric="ttft_ms"), 300.0) == []


def test_unreachable_prometheus_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError, match=f"Prometheus at http://127.0.0.1:{port} is unreachable"):
        prometheus_history([P95], f"http://127.0.0.1:{port}", since_s=60, step_s=5,
                           client=PrometheusClient(f"http://127.0.0.1:{port}", timeout_s=2))
    with pytest.raises(SourceError, match="not an http"):
        PrometheusClient("localhost:9090")


class _FakePrometheus(PrometheusClient):
    """Answers the API from a function of time, recording each range query (no server)."""

    def __init__(self) -> None:
        super().__init__("http://fake:9090")
        self.ranges: list[tuple[float, float]] = []

    def get(self, path, params):
        p = dict(params)
        if path == "/api/v1/query":
            return {"resultType": "scalar", "result": [0, "1"]}
        if path == "/api/v1/series":
            return [{"__name__": p["match[]"]}] if p["match[]"].startswith("vllm:time_to_first_token") else []
        start, end, step = float(p["start"]), float(p["end"]), float(p["step"])
        self.ranges.append((start, end))
        n = int(math.floor((end - start) / step + 1e-6)) + 1
        values = [[start + k * step, "NaN" if (start + k * step) % 100 < 1 else str(20 + (start + k * step) % 7)] for k in range(n)]
        return {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}


def test_prometheus_history_chunks_long_ranges_and_maps_points_to_the_grid():
    fake = _FakePrometheus()
    slas = [SLAThreshold("ttft_p95", 30.0, 100.0, 5, statistic=Statistic.P95, source_metric="ttft_ms"),
            SLAThreshold("itl_p99", 20.0, 50.0, 5, statistic=Statistic.P99, source_metric="itl_ms")]
    history = prometheus_history(slas, fake.url, since_s=3 * 3600.0, step_s=1.0, end=1_800_000_000.0, client=fake)
    assert history.missing["itl_p99"].startswith("no data: none of aphrodite:inter_token_latency_seconds_bucket")
    series = history.series["ttft_p95"]
    assert len(series.ends) == 3 * 3600 + 1 and series.ends[0] == 1_800_000_000.0 - 3 * 3600
    assert len(fake.ranges) == 2 and fake.ranges[0][0] == series.ends[0] and fake.ranges[-1][1] == series.ends[-1]
    assert fake.ranges[1][0] == fake.ranges[0][1] + 1.0  # no point twice, none lost
    expected = np.where(series.ends % 100 < 1, np.nan, 20 + series.ends % 7)
    np.testing.assert_array_equal(series.values, expected)
    with pytest.raises(ValueError, match="at least one --step"):
        prometheus_history(slas, fake.url, since_s=30.0, step_s=60.0, client=fake)


def test_simulate_source_reads_each_slas_windows():
    from aphrodite_sla.simulate import SIMULATED_MODEL_SLAS

    slas = [*SIMULATED_MODEL_SLAS, SLAThreshold("gpu_utilization_percent", 85.0, 10.0, 1)]
    history = simulate_history(slas, duration_s=400.0)
    assert "steady" in history.source and set(history.missing) == {"gpu_utilization_percent"}
    ttft = history.series["ttft_p95"]
    assert len(ttft.ends) == 80 and ttft.step_s == pytest.approx(5.0)
    assert np.isfinite(ttft.values).all() and 10.0 < float(np.median(ttft.values)) < 60.0  # the steady scenario: ~25 ms
    cal = propose(SIMULATED_MODEL_SLAS[0], history.series["request_latency_p95"])
    assert cal.proposed is not None and cal.proposed.bound > cal.median > 0  # type: ignore[operator]


def test_calibrated_bounds_pass_a_healthy_replay_and_still_catch_a_fault(monkeypatch):
    """The margin's purpose: the same healthy traffic raises no SLA violation under the proposed
    bounds, while the latency spike (2x slower steps) is still a violation."""
    import aphrodite_sla.simulate as simulate
    from aphrodite_sla.sim.attribution import VIOLATION

    history = simulate_history(simulate.SIMULATED_MODEL_SLAS, duration_s=900.0, seed=3)
    proposed = tuple(propose(th, history.series[th.metric_name]).proposed for th in simulate.SIMULATED_MODEL_SLAS)
    assert all(p is not None for p in proposed)
    # the latency proposals are tighter than the hand-set SLAs (otherwise this proves nothing); the
    # goodput ratio sits at 100% when healthy, so its margin rule gives 90% under a hand-set 95%
    assert all(p.bound < th.bound if p.direction is Direction.UPPER else p.bound > th.bound  # type: ignore[union-attr]
               for p, th in zip(proposed, simulate.SIMULATED_MODEL_SLAS) if th.metric_name != "goodput_percent")
    monkeypatch.setattr(simulate, "SIMULATED_MODEL_SLAS", proposed)
    healthy = simulate.run_simulation("steady", duration_s=900.0, seed=3, recovery="off", print_summary=False, out=lambda _: None)
    assert [s for s in healthy.signals if s.kind == VIOLATION] == []
    faulty = simulate.run_simulation("latency_spike", duration_s=1000.0, seed=3, recovery="off", print_summary=False, out=lambda _: None)
    [report] = faulty.faults
    assert report.first_violation is not None and report.first_violation.at_s >= report.fault.start_s


def test_cli_calibrate_simulate_writes_a_config(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_FILE, raising=False)
    out = tmp_path / "calibrated.toml"
    assert cli.main(["calibrate", "--simulate", "--duration", "400", "--margin", "0.2", "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "the level healthy windows pass once in 30 days (tail fit), at least the worst healthy window x (1 +/- 0.2)" in stdout
    assert re.search(r"^ttft_p95\s+p95\s+30\s+60\s+[\d.]+", stdout, re.M)
    assert "# bound = the level healthy windows pass once in 30 days" in out.read_text()
    assert cli.main(["calibrate", "--simulate", "--duration", "300", "--worst-plus-margin"]) == 0
    assert "; bound = worst healthy window x (1 +/- 0.1)\n" in capsys.readouterr().out
    cfg = load_config({ENV_FILE: str(out)})
    names = [t.metric_name for t in cfg.thresholds]
    assert names == ["request_latency_p95", "request_latency_p99", "goodput_percent", "ttft_p95", "itl_p99", "process_memory_mb"]
    assert cfg.sla_set == "seed"


def test_cli_calibrate_errors(capsys, monkeypatch):
    monkeypatch.delenv(ENV_FILE, raising=False)
    assert cli.main(["calibrate", "--prometheus", "http://127.0.0.1:9", "--since", "7 days"]) == 2
    assert "--since/--step: not a duration: '7 days'" in capsys.readouterr().err
    assert cli.main(["calibrate", "--simulate", "--scenario", "nope"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
    assert cli.main(["calibrate", "--simulate", "--margin", "1.5"]) == 2
    assert "--margin must be in [0, 1)" in capsys.readouterr().err
    assert cli.main(["calibrate", "--simulate", "--return-period-days", "0"]) == 2
    assert "--return-period-days: return_period_days must be a finite number > 0" in capsys.readouterr().err
    assert cli.main(["calibrate", "--prometheus", "http://127.0.0.1:9", "--since", "1m", "--step", "5s"]) == 2
    assert "Prometheus at http://127.0.0.1:9 is unreachable" in capsys.readouterr().err
    assert cli.main(["calibrate", "--simulate", "--duration", "100", "-o", "/nonexistent-dir/slas.toml"]) == 2
    assert "cannot write /nonexistent-dir/slas.toml" in capsys.readouterr().err
    # the simulator records neither GPU utilisation nor convergence: nothing to calibrate from is an error
    monkeypatch.setenv("APHRODITE_SLA_SLA_SET", "seed")
    monkeypatch.setenv("APHRODITE_SLA_DISABLED_SLAS",
                       "request_latency_p95,request_latency_p99,tokens_per_second,error_rate_percent,kv_cache_usage_percent")
    assert cli.main(["calibrate", "--simulate", "--duration", "100"]) == 2
    err = capsys.readouterr().err
    assert "no healthy history to calibrate from" in err and "gpu_utilization_percent: no data: the simulator records no" in err
    monkeypatch.setenv("APHRODITE_SLA_DISABLED_SLAS", "ttft_p95,tpot_p95,error_rate_percent")
    monkeypatch.setenv("APHRODITE_SLA_SLA_SET", "serving")
    assert cli.main(["calibrate", "--simulate"]) == 2
    assert "no SLAs to calibrate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["calibrate"])  # a source is required


def test_render_table_reports_current_and_proposed():
    cal = propose(P95, _series([100.0] * 20 + [130.0] * 20))
    table = render_table([cal, Calibration(SLAThreshold("gpu", 85.0, 10.0, 10), None, note="no source")])
    header, row, missing = table.splitlines()
    assert "proposed: beyond fires/d" in header
    assert row.split()[:6] == ["lat_p95", "p95", "100", "120", "115", "143"]
    assert header.index("stat") == row.index(" p95") + 1 == len("lat_p95") + 1  # the name column fits the longest name
    assert "50.0%" in row and "no source" in missing


# -- against a real Prometheus fed by the simulator ------------------------------------------

SPEED = 60.0
DURATION_S = 1800.0


@dataclass
class PromStack:
    url: str
    started: float
    ended: float = 0.0  # wall time the simulator finished (its last scrape is at most 1 s before)
    sim_output: list[str] = field(default_factory=list)
    log: Path | None = None

    def diagnostics(self) -> str:
        log = self.log.read_text()[-2000:] if self.log and self.log.exists() else ""
        return "simulator output:\n" + "".join(self.sim_output[-20:]) + "\nprometheus log (tail):\n" + log


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    require_tool("prometheus")
    work = tmp_path_factory.mktemp("calibrate-prometheus")
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        sim, base_url, output = start_simulator("--scenario", "steady", "--speed", str(SPEED), "--duration", str(DURATION_S),
                                                "--no-live", "--recovery", "off")
        procs.append(sim)
        target = urllib.parse.urlparse(base_url).netloc
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                  f"scrape_configs:\n  - job_name: sim\n    static_configs:\n      - targets: [\"{target}\"]\n")
        p, url, log = start_prometheus(work, config, lambda: "simulator output:\n" + "".join(output[-20:]))
        procs.append(p)
        stack = PromStack(url, started, sim_output=output, log=log)
        # the whole run scraped: the simulator exits after its 1800 engine seconds (30 s of wall time)
        try:
            sim.wait(timeout=DURATION_S / SPEED + 60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the simulator did not finish within {DURATION_S / SPEED + 60:.0f} s:\n{stack.diagnostics()}")
        stack.ended = time.time()
        yield stack
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def _short(th: SLAThreshold) -> SLAThreshold:
    """Windows in Prometheus are wall time: 15 s here (15 engine-minutes at --speed 60)."""
    return replace(th, measurement_window_minutes=0.25, min_samples=1)


def test_prometheus_source_proposes_finite_bounds_above_the_healthy_median(prom):
    slas = [
        _short(SLAThreshold("ttft_p95", 30.0, 100.0, statistic=Statistic.P95, source_metric="ttft_ms", unit="ms")),
        _short(SLAThreshold("request_latency_p99", 5500.0, 50.0, statistic=Statistic.P99, source_metric="request_latency_ms")),
        _short(SLAThreshold("itl_p99", 20.0, 50.0, statistic=Statistic.P99, source_metric="itl_ms")),
        _short(SLAThreshold("tokens_per_second", 6000.0, 20.0, direction=Direction.LOWER)),
        _short(SLAThreshold("tpot_p95", 100.0, 25.0, statistic=Statistic.P95, source_metric="tpot_ms")),
        _short(SLAThreshold("gpu_utilization_percent", 85.0, 10.0)),
    ]
    history = prometheus_history(slas, prom.url, since_s=20.0, step_s=1.0, end=prom.ended)
    assert history.missing.keys() == {"tpot_p95", "gpu_utilization_percent"}, history.missing
    assert history.missing["gpu_utilization_percent"].startswith("no source")
    assert history.missing["tpot_p95"].startswith("no data")  # the simulator exports no TPOT family
    for th in slas[:4]:
        series = history.series[th.metric_name]
        assert len(series.ends) == 21 and series.step_s == 1.0
        cal = propose(th, series)
        p = cal.proposed
        assert p is not None and cal.median is not None, (th.metric_name, series.values, prom.diagnostics())
        assert math.isfinite(p.bound) and p.bound > 0 and math.isfinite(p.target_value)
        if th.direction is Direction.UPPER:
            assert p.bound > cal.median and p.target_value == pytest.approx(cal.median, rel=1e-3)
        else:
            assert 0 < p.bound < cal.median
    # histogram estimates land in the engine's buckets: TTFT ~25 ms (0.02-0.04 s bucket), e2e p99 seconds
    assert 10.0 < history.series["ttft_p95"].judged.max() <= 40.0
    assert 1000.0 < float(np.median(history.series["request_latency_p99"].judged)) < 10_000.0
    # counters are rates per wall second: ~6,100 tokens per engine second x --speed
    assert 4000.0 * SPEED < float(np.median(history.series["tokens_per_second"].judged)) < 8000.0 * SPEED


def test_cli_calibrate_against_prometheus_writes_a_config(prom, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_FILE, raising=False)
    out = tmp_path / "from-prometheus.toml"
    rc = cli.main(["calibrate", "--prometheus", prom.url, "--since", "20s", "--step", "2s", "--sla-set", "serving", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"source: prometheus {prom.url}" in captured.out
    assert re.search(r"^tpot_p95 .*no data", captured.out, re.M)
    cfg = load_config({ENV_FILE: str(out)})
    [ttft] = [t for t in cfg.thresholds if t.metric_name == "ttft_p95"]
    assert 10.0 < ttft.target_value < 40.0 and ttft.bound > ttft.target_value and ttft.measurement_window_minutes == 5.0
    # errors stay at zero on the healthy run: no relative bound, the current one is kept
    [errors] = [t for t in cfg.thresholds if t.metric_name == "error_rate_percent"]
    assert errors == next(t for t in builtin_thresholds("serving") if t.metric_name == "error_rate_percent")
    assert "# not calibrated (healthy mean never above 0: no relative bound from it; kept the current one)" in out.read_text()
    # a selector matching nothing: an empty history is an error, and no file is written
    empty = tmp_path / "empty.toml"
    assert cli.main(["calibrate", "--prometheus", prom.url, "--since", "20s", "--step", "2s", "--sla-set", "serving",
                     "--match", 'model_name="nope"', "-o", str(empty)]) == 2
    assert "no healthy history to calibrate from" in capsys.readouterr().err and not empty.exists()


def test_the_monitor_keeps_a_day_of_evaluations_and_serves_it():
    """/metrics/history: every SLA's statistic per evaluation (NaN as null), bounded, from the
    snapshots the evaluator publishes."""
    import json

    from aphrodite_sla import ManualClock
    from aphrodite_sla.config import SLAConfig
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.sla.evaluation_history import EvaluationHistory

    with pytest.raises(ValueError, match="max_points"):
        EvaluationHistory(0)
    clock = ManualClock()
    ctx = MonitorContext.build(SLAConfig(system_sampler=False), clock=clock, with_recovery=False)
    for i in range(30):
        clock.advance(5.0)
        ctx.manager.record_measurement("ttft_ms", 100.0 + i)
        ctx.manager.evaluate()
    assert ctx.events.drain(10.0)
    body = json.loads(ctx.endpoints.handle("GET", "/metrics/history").body)
    assert body["evaluation_interval_s"] == 5.0
    ttft = next(v for name, v in body["slas"].items() if "ttft" in name)
    assert len(ttft["ends"]) == 30 and ttft["ends"] == sorted(ttft["ends"])
    from aphrodite_sla.events import SnapshotPublished

    small = EvaluationHistory(3)
    for _ in range(5):
        small.on_snapshot(SnapshotPublished("fp", "ep", 0.0, ctx.manager.snapshot()))
    name = next(iter(body["slas"]))
    assert len(small.series(name)) == 3  # bounded: the newest max_points
    assert len(ctx.endpoints.history.series(name)) == 30
    # the console's latency charts read the same history: window quantiles under their own keys,
    # never in the SLA history calibration reads
    from aphrodite_sla.sla.evaluation_history import quantile_key

    p95 = ctx.endpoints.history.series(quantile_key("ttft_ms", 0.95))
    assert len(p95) == 30 and p95[-1][1] >= p95[0][1] > 0  # the recorded TTFT rose from 100 to 129
    assert not any(":" in key for key in body["slas"])
    last = ctx.endpoints.history.last_at()
    assert last is not None and ctx.endpoints.history.between(quantile_key("ttft_ms", 0.95), last - 10.0, last) == p95[-3:]


def test_calibrate_from_the_running_monitor(tmp_path, monkeypatch):
    """`calibrate --monitor URL` against a running simulate (its exporter forwards /metrics/history
    to the monitor): proposals from what the evaluator judged, written to a file load_config reads."""
    monkeypatch.delenv(ENV_FILE, raising=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APHRODITE_SLA_")}
    sim, url, _ = start_simulator("--scenario", "steady", "--speed", "100", "--duration", "3000", "--no-live", "--recovery", "off",
                                  env=env)
    try:
        import json

        deadline = time.monotonic() + 90
        while True:  # ~12 engine-minutes: more than two 5-minute windows judged
            with urllib.request.urlopen(f"{url}/metrics/history", timeout=10) as r:
                slas = json.loads(r.read())["slas"]
            judged = [v for v in slas.get("ttft_p95", {}).get("values", []) if v is not None]
            if len(judged) >= 100:
                break
            assert time.monotonic() < deadline, f"only {len(judged)} judged ttft_p95 windows"
            time.sleep(1.0)
        out = tmp_path / "from_monitor.toml"
        done = subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", "calibrate", "--monitor", url, "--sla-set", "seed",
                               "--output", str(out)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "the monitor at" in done.stdout
        cfg = load_config({ENV_FILE: str(out)})
        names = {t.metric_name for t in cfg.thresholds}
        assert "request_latency_p95" in names
    finally:
        stop_process(sim)
    bad = subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", "calibrate", "--monitor", "http://127.0.0.1:9"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "unreachable" in bad.stderr
