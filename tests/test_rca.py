"""RCA: the graph is valid, bad input gives insufficient evidence, injected causes are named."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aphrodite_sla.rca import create_production_rca_engine
from aphrodite_sla.rca.engine import RCAEngine
from aphrodite_sla.rca.frame import build_frame, mapping_reader
from aphrodite_sla.rca.graph import GRAPH, validate
from aphrodite_sla.rca.onset import change_point
from aphrodite_sla.sim.incident_cases import IncidentCase, simulate_case


def test_graph_is_acyclic_and_parents_exist():
    validate(GRAPH)


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
