"""RCA: the graph is valid, bad input gives insufficient evidence, injected causes are named."""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import numpy as np
import pytest

from aphrodite_sla.rca import create_production_rca_engine
from aphrodite_sla.rca.engine import RCAEngine
from aphrodite_sla.rca.frame import build_frame, mapping_reader
from aphrodite_sla.rca.graph import GRAPH, validate
from aphrodite_sla.rca.onset import change_point
from aphrodite_sla.sim.incident_cases import IncidentCase, simulate_case
from tests.tools import record_gpu_throttling


def test_graph_is_acyclic_and_parents_exist():
    validate(GRAPH)  # raises on the written-down graph if it is broken ...
    a = GRAPH[0]
    with pytest.raises(ValueError, match="unknown parent"):  # ... and does catch the faults it checks for
        validate([replace(a, parents=("no_such_metric",))])
    with pytest.raises(ValueError, match="cycle"):
        validate([replace(a, name="x", parents=("y",)), replace(a, name="y", parents=("x",))])


def test_change_point_finds_a_step():
    y = np.r_[np.full(40, 10.0), np.full(20, 30.0)] + np.random.default_rng(0).normal(0, 1, 60)
    idx, stat = change_point(y, +1)
    assert 38 <= idx <= 42 and stat > 5


def _analyse(data, sli):
    frame = build_frame(mapping_reader(data.series), data.window_start, data.onset_time + 65.0, 5.0)
    return RCAEngine(with_diagnostics=False).analyze_frame(frame, sli, len(frame) - 2)


@pytest.mark.parametrize("cause,sli,mag", [("kv_cache_exhaustion", "ttft_ms", 9.0), ("gpu_throttling", "itl_ms", 2.0),
                                           ("bad_configuration", "ttft_ms", 16.0)])
def test_injected_cause_is_named(cause, sli, mag):
    a = _analyse(simulate_case(IncidentCase(cause, 11, magnitude=mag)), sli)
    assert a.primary_root_cause.cause == cause, a.scores


def test_healthy_window_has_no_confident_cause():
    a = _analyse(simulate_case(IncidentCase("healthy", 5)), "ttft_ms")
    assert a.insufficient_evidence and a.primary_root_cause.cause == "insufficient_evidence"


@pytest.mark.parametrize("series", [
    {},  # nothing recorded
    {"ttft_ms": (np.arange(100.0), np.full(100, 5.0))},  # constant
    {"ttft_ms": (np.arange(100.0), np.full(100, np.nan))},  # a NaN run
    {"ttft_ms": (np.arange(8.0), np.arange(8.0))},  # too little history
])
def test_bad_input_gives_reasons_never_an_exception(series):
    eng = RCAEngine(mapping_reader(series), clock=lambda: 100.0, with_diagnostics=False)
    a = eng.analyze("ttft_ms", 99.0)
    assert a.insufficient_evidence and a.insufficient_reasons
    assert a.to_dict()["insufficient_evidence"] is True


def test_seed_api_without_context_reports_insufficient_evidence():
    class V:
        source_metric = "ttft_ms"
        detected_at = 10.0

    a = asyncio.run(create_production_rca_engine(with_diagnostics=False).analyze_incident(V()))
    assert a.insufficient_evidence and a.recommendations


# -- the service on a real monitor context ------------------------------------------------------------
def _violation(detected_at: float):
    from aphrodite_sla.sla.threshold import Direction, SLAViolation, Statistic, ViolationSeverity

    return SLAViolation(
        metric_name="itl_p99", source_metric="itl_ms", statistic=Statistic.P99, direction=Direction.UPPER, observed_value=15.0,
        bound=12.0, target_value=10.0, severity=ViolationSeverity.MAJOR, window_seconds=60.0, first_breach_time=detected_at - 20,
        detected_at=detected_at, sustained_ratio=0.9, evaluation_points=10, sample_count=400,
    )


def test_service_names_the_cause_of_a_violation_and_publishes_it():
    from aphrodite_sla.clock import ManualClock
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.events import RootCauseFound
    from aphrodite_sla.export.rca_collector import RCACollector

    clock = ManualClock(1_700_000_000.0)
    ctx = MonitorContext.build(clock=clock, with_recovery=False)
    assert ctx.rca is not None
    found: list[RootCauseFound] = []
    ctx.manager.subscribe(found.append, RootCauseFound, name="test")
    record_gpu_throttling(ctx, clock, seed=1, fingerprint="fp", episode="ep-1", violation=_violation)
    assert found, "no RootCauseFound"
    ev = found[0]
    assert ev.cause == "gpu_throttling" and ev.category == "infrastructure" and ev.episode == "ep-1", ev.analysis.scores
    assert ctx.rca.analysis("ep-1") is ev.analysis
    assert ev.analysis.diagnostics["processes"]["by_cpu"]  # psutil's top processes
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    reg.register(RCACollector(ctx.rca.metrics_view, model_name="m"))
    text = generate_latest(reg).decode()
    assert 'rca_analyses_total{category="infrastructure",cause="gpu_throttling",model_name="m"} 1.0' in text
    assert "rca_duration_seconds_bucket" in text and "rca_correlations_found{" in text


def test_report_renders_json_and_markdown():
    import json

    from aphrodite_sla.rca.report import to_json, to_markdown

    a = _analyse(simulate_case(IncidentCase("gpu_throttling", 4, magnitude=2.0)), "itl_ms")
    assert json.loads(to_json(a))["primary_root_cause"]["cause"] == "gpu_throttling"
    md = to_markdown(a)
    assert "gpu_throttling" in md and "Recommendations" in md


def test_history_matches_a_direct_frame():
    from aphrodite_sla.rca.history import NodeHistory

    t = np.arange(0.5, 900.0, 0.5)
    series = {"itl_ms": (t, 10.0 + np.sin(t / 30.0)), "gpu_throttled": (t, (t > 600).astype(float))}
    reader = mapping_reader(series)
    hist = NodeHistory(reader, 5.0, 3600.0)
    for now in range(300, 900, 5):  # the first update reaches back 300 s
        hist.update(float(now))
    frame = hist.frame(900.0)
    direct = build_frame(reader, 0.0, 900.0, 5.0)
    assert np.allclose(frame.times, direct.times)
    assert np.allclose(frame.values["step_time_ms"], direct.values["step_time_ms"], equal_nan=True)


def test_correlations_are_corrected_for_multiple_comparisons():
    from aphrodite_sla.rca.correlation import correlations

    rng = np.random.default_rng(3)
    sli = rng.normal(size=200)
    series = {f"noise{i}": rng.normal(size=200) for i in range(30)}
    series["moves_with"] = sli * 2 + rng.normal(0, 0.1, 200)
    out = correlations(sli, series)
    assert out[0].metric == "moves_with" and out[0].significant
    assert sum(c.significant for c in out) <= 2  # 30 noise series: BH keeps the false discoveries down
    assert all(c.p_adjusted >= min(c.pearson_p, 1.0) or c.p_adjusted >= c.spearman_p for c in out)


def test_shipped_calibration_is_monotone_and_loaded_by_production():
    """The table bench_rca.py --write-calibration fitted on the development half ships in the
    package, is non-decreasing in the raw strength, maps into [0, 1], and is what the production
    engine uses by default."""
    from aphrodite_sla.rca import calibration_table as table
    from aphrodite_sla.rca.calibration import shipped_calibration
    from aphrodite_sla.rca.engine import create_production_rca_engine

    assert len(table.RAW) >= 2 and len(table.RAW) == len(table.CALIBRATED)
    assert all(b >= a for a, b in itertools.pairwise(table.RAW))
    assert all(b >= a for a, b in itertools.pairwise(table.CALIBRATED))
    assert all(0.0 <= y <= 1.0 for y in table.CALIBRATED)
    cal = shipped_calibration()
    assert cal.fitted
    grid = np.linspace(0.0, 1.0, 101)
    mapped = [cal(x) for x in grid]
    assert all(b >= a for a, b in itertools.pairwise(mapped))
    engine = create_production_rca_engine()
    assert engine.calibration.fitted
    assert np.allclose(engine.calibration.xs, table.RAW) and np.allclose(engine.calibration.ys, table.CALIBRATED)


def test_calibration_knots_interpolate_like_the_full_fit():
    from aphrodite_sla.rca.calibration import Calibration

    rng = np.random.default_rng(3)
    raw = rng.random(300)
    correct = rng.random(300) < raw
    full = Calibration().fit(raw, correct)
    xs, ys = full.knots()
    small = Calibration(np.asarray(xs), np.asarray(ys), fitted=True)
    assert len(xs) < len(raw)
    for x in np.linspace(0, 1, 57):
        assert small(x) == pytest.approx(full(x), abs=1e-5)


def test_calibration_never_ships_certainty():
    from aphrodite_sla.rca.calibration import Calibration

    raw = np.linspace(0.3, 1.0, 50)
    cal = Calibration().fit(raw, raw > 0.31)  # one wrong case at the bottom, 49 right
    assert cal(1.0) == pytest.approx(50.0 / 51.0)
    assert 0.0 < cal(0.3) < 0.5


def test_write_table_round_trips(tmp_path):
    import importlib.util

    from aphrodite_sla.rca.calibration import Calibration, write_table

    rng = np.random.default_rng(7)
    raw = rng.random(200)
    cal = Calibration().fit(raw, rng.random(200) < raw)
    path = tmp_path / "table.py"
    write_table(cal, "a note long enough to be wrapped " * 6, path)
    spec = importlib.util.spec_from_file_location("table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.RAW, module.CALIBRATED) == cal.knots()
    assert max(len(line) for line in path.read_text().splitlines()) <= 100
