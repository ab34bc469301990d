"""The engine simulator (aphrodite_sla.sim): vLLM stats shapes, scheduler invariants, timing
consistency, determinism, each fault's effect (after its start and not before), trace CSV
parsing (speed: benchmarks/bench_simulator.py)."""
from __future__ import annotations

import dataclasses
import gc
import io
import itertools
import math
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field

import numpy as np
import pytest

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.sim import (
    SCENARIOS,
    BurstyArrivals,
    DiurnalArrivals,
    EngineConfig,
    EngineSimulator,
    Fault,
    FaultKind,
    FinishedRequestStats,
    FinishReason,
    IterationStats,
    LengthDist,
    PoissonArrivals,
    PrefixCacheStats,
    Scenario,
    SchedulerStats,
    StatsFactory,
    TraceArrivals,
    Workload,
    list_scenarios,
    load_trace_csv,
)
from aphrodite_sla.sim.workload import ArrivalStream

START = 1_700_000_000.0
FAULT_AT = 120.0  # engine seconds of clean baseline in the fault tests
FAULT_FOR = 120.0
RUN_FOR = 300.0


# --------------------------------------------------------------------------- helpers


@dataclass
class Rec:
    """Everything a run produced, with times relative to the simulator's start."""

    sim: EngineSimulator
    steps: list[tuple[float, SchedulerStats, IterationStats]] = field(default_factory=list)
    nones: list[tuple[float, int]] = field(default_factory=list)  # (t before the step, running)
    probes: list = field(default_factory=list)  # (t after the step, probe(sim))

    def finished(self, t0: float, t1: float) -> list[FinishedRequestStats]:
        return [f for t, _, it in self.steps if t0 <= t < t1 for f in it.finished_requests]

    def e2e(self, t0: float, t1: float) -> np.ndarray:
        return np.array([f.e2e_latency for f in self.finished(t0, t1)])

    def itl(self, t0: float, t1: float) -> np.ndarray:
        return np.array([x for t, _, it in self.steps if t0 <= t < t1 for x in it.inter_token_latencies_iter])

    def in_window(self, t0: float, t1: float) -> list[tuple[float, SchedulerStats, IterationStats]]:
        return [row for row in self.steps if t0 <= row[0] < t1]


def record(scenario: Scenario, seed: int = 1, until: float | None = None, check_every: int = 0, probe=None) -> Rec:
    """Steps ``scenario`` and keeps every stats object (the cyclic GC is paused meanwhile: the
    kept objects hold no cycles, and rescanning them would triple the test's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _record(scenario, seed, until, check_every, probe)
    finally:
        if enabled:
            gc.enable()


def _record(scenario: Scenario, seed: int, until: float | None, check_every: int, probe) -> Rec:
    sim = EngineSimulator(scenario, clock=ManualClock(START), seed=seed)
    rec = Rec(sim)
    end = START + (scenario.duration_s if until is None else until)
    n = 0
    while sim.clock() < end:
        before = sim.clock() - START
        running = sim.num_running
        out = sim.step()
        if out is None:
            rec.nones.append((before, running))
        else:
            rec.steps.append((out[1].iteration_timestamp - START, out[0], out[1]))
        n += 1
        if probe is not None:
            rec.probes.append((sim.clock() - START, probe(sim)))
        if check_every and n % check_every == 0:
            sim.check_invariants()
    return rec


def with_fault(kind: FaultKind, magnitude: float | None = None, **kw) -> Scenario:
    fault = Fault(kind, FAULT_AT, kw.pop("duration_s", FAULT_FOR), magnitude, **kw)
    return Scenario(f"test_{kind.value}", "test", RUN_FOR, faults=(fault,))


def p95(x: np.ndarray) -> float:
    return float(np.percentile(x, 95))


def step_key(row) -> tuple:
    t, s, it = row
    return (
        round(t, 9), s.num_running_reqs, s.num_waiting_reqs, round(s.kv_cache_usage, 12),
        s.prefix_cache_stats.queries, it.num_generation_tokens, it.num_prompt_tokens,
        it.num_preempted_reqs, len(it.inter_token_latencies_iter),
        tuple(round(x, 9) for x in it.time_to_first_tokens_iter),
        tuple((f.request_id, f.finish_reason, round(f.e2e_latency, 9)) for f in it.finished_requests),
    )


@pytest.fixture(scope="module")
def steady() -> Rec:
    """The no-fault reference run: same seed and workload as the fault tests."""
    return record(Scenario("steady_test", "test", RUN_FOR), seed=1)


def assert_same_before_fault(rec: Rec, steady: Rec) -> None:
    """Not before: until the fault starts the run is step-for-step the steady run."""
    a = [step_key(r) for r in rec.steps if r[0] < FAULT_AT]
    b = [step_key(r) for r in steady.steps if r[0] < FAULT_AT]
    assert len(a) > 5000
    assert a == b


def assert_fault_logged(rec: Rec, kind: FaultKind, ends: bool = True) -> None:
    (ev,) = rec.sim.fault_log
    assert ev.fault.kind is kind
    assert FAULT_AT <= ev.start_time - START < FAULT_AT + 0.2
    if ends:
        assert ev.end_time is not None and FAULT_AT + FAULT_FOR <= ev.end_time - START < FAULT_AT + FAULT_FOR + 0.2
    else:
        assert ev.end_time is None


# --------------------------------------------------------------------------- stats shapes

# Field names from /work/shared/ENGINES.md (vLLM v1 vllm/v1/metrics/stats.py).
VLLM_FIELDS = {
    SchedulerStats: {
        "num_running_reqs", "num_waiting_reqs", "num_skipped_waiting_reqs", "kv_cache_usage",
        "prefix_cache_stats", "iteration_details", "spec_decoding_stats", "kv_cache_eviction_events",
        "perf_stats", "running_lora_adapters", "waiting_lora_adapters", "step_counter",
    },
    IterationStats: {
        "iteration_timestamp", "num_generation_tokens", "num_prompt_tokens", "num_preempted_reqs",
        "time_to_first_tokens_iter", "inter_token_latencies_iter", "finished_requests", "num_corrupted_reqs",
    },
    FinishedRequestStats: {
        "finish_reason", "request_id", "e2e_latency", "num_prompt_tokens", "num_generation_tokens",
        "num_preemptions", "queued_time", "prefill_time", "inference_time", "decode_time",
        "mean_time_per_output_token", "num_cached_tokens", "max_tokens_param", "is_corrupted",
    },
    PrefixCacheStats: {"reset", "requests", "queries", "hits"},
}


@pytest.mark.parametrize("cls", list(VLLM_FIELDS), ids=lambda c: c.__name__)
def test_stats_field_names_match_vllm(cls):
    names = {f.name for f in dataclasses.fields(cls)}
    missing = VLLM_FIELDS[cls] - names
    assert not missing, f"{cls.__name__} lacks vLLM fields {missing}"


def test_finish_reason_matches_vllm():
    assert [(r.name, int(r)) for r in FinishReason] == [
        ("STOP", 0), ("LENGTH", 1), ("ABORT", 2), ("ERROR", 3), ("REPETITION", 4)
    ]
    assert str(FinishReason.ERROR) == "error"


def test_step_returns_vllm_shaped_stats(steady):
    t, s, it = steady.steps[-1]
    assert isinstance(s, SchedulerStats) and isinstance(it, IterationStats)
    assert isinstance(s.prefix_cache_stats, PrefixCacheStats)
    assert 0.0 < s.kv_cache_usage < 1.0
    assert it.iteration_timestamp == pytest.approx(START + t)
    assert all(isinstance(x, float) for x in it.inter_token_latencies_iter)
    steps = [row for row in steady.steps if row[0] > 60]
    assert [row[1].step_counter for row in steps] == list(range(steps[0][1].step_counter, steps[0][1].step_counter + len(steps)))
    fins = [f for _, _, it in steps for f in it.finished_requests]
    assert all(isinstance(f.finish_reason, FinishReason) and f.request_id.startswith("req-") for f in fins)


# --------------------------------------------------------------------------- default model


def test_default_model_is_realistic(steady):
    """~40 req/s, prompt median 512 / output 128: p95 e2e of a few seconds, tens of requests
    running, KV cache partly used, ~10 ms steps, no preemption."""
    e2e_ms = 1000 * steady.e2e(60, RUN_FOR)
    assert 1.0e3 < np.percentile(e2e_ms, 50) < 2.0e3
    assert 2.0e3 < np.percentile(e2e_ms, 95) < 5.0e3
    assert np.percentile(e2e_ms, 95) < np.percentile(e2e_ms, 99) < 8.0e3
    rows = steady.in_window(60, RUN_FOR)
    running = np.mean([s.num_running_reqs for _, s, _ in rows])
    assert 40 < running < 90
    assert 0.2 < np.mean([s.kv_cache_usage for _, s, _ in rows]) < 0.6
    assert 5.0 < np.mean([s.iteration_details.elapsed_ms for _, s, _ in rows]) < 20.0
    assert sum(it.num_preempted_reqs for _, _, it in rows) == 0
    n_fin = len(steady.finished(60, RUN_FOR))
    assert 38 < n_fin / (RUN_FOR - 60) < 42
    ttft = np.array([x for _, _, it in rows for x in it.time_to_first_tokens_iter])
    assert 0.005 < np.median(ttft) < 0.2


# --------------------------------------------------------------------------- invariants


def test_conservation_and_kv_budget_under_pressure():
    """KV exhaustion plus a surge: preemptions galore, yet blocks never exceed the budget and
    every arrived request is finished, running or waiting."""
    sc = Scenario("pressure", "test", 200.0, faults=(
        Fault(FaultKind.KV_EXHAUSTION, 40.0, 80.0, 4.0),
        Fault(FaultKind.TRAFFIC_SURGE, 60.0, 40.0, 1.5),
    ))
    rec = record(sc, seed=3, check_every=3)
    sim = rec.sim
    assert sim.preemptions > 100
    assert max(s.kv_cache_usage for _, s, _ in rec.steps) <= 1.0
    assert max(s.num_running_reqs for _, s, _ in rec.steps) <= sim.config.max_num_seqs
    n_fin = sum(len(it.finished_requests) for _, _, it in rec.steps)
    assert n_fin == sim.finished == sum(sim.finished_by_reason.values())
    _, s_last, _ = rec.steps[-1]
    assert sim.arrived == n_fin + s_last.num_running_reqs + s_last.num_waiting_reqs
    assert sum(it.num_preempted_reqs for _, _, it in rec.steps) == sim.preemptions
    ids = [f.request_id for _, _, it in rec.steps for f in it.finished_requests]
    assert len(ids) == len(set(ids))


def _drain_trace(n: int = 400, seed: int = 2) -> tuple[TraceArrivals, Rec]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / 30.0, n))
    prompts = np.maximum(1, rng.lognormal(math.log(600), 0.9, n)).astype(int)
    outputs = np.maximum(1, rng.lognormal(math.log(120), 0.8, n)).astype(int)
    trace = TraceArrivals(tuple(arrivals.tolist()), tuple(prompts.tolist()), tuple(outputs.tolist()))
    # a small KV cache so that some requests are preempted and resumed
    sc = Scenario("drain", "test", 400.0, workload=Workload(arrivals=trace, max_tokens=400, abort_fraction=0.02),
                  engine=EngineConfig(num_gpu_blocks=1200, max_num_seqs=64))
    rec = record(sc, seed=seed, until=arrivals[-1] + 120.0, check_every=1)
    return trace, rec


def test_timing_fields_consistent_and_everything_drains():
    trace, rec = _drain_trace()
    sim = rec.sim
    fins = [f for _, _, it in rec.steps for f in it.finished_requests]
    mml = sim.config.max_model_len
    too_long = sum(p >= mml for p in trace.prompt_tokens)
    assert too_long >= 1, "the trace should hold a prompt longer than the context"
    assert sim.rejected_too_long == too_long, "over-long prompts are rejected at the door"
    assert len(fins) == sim.arrived == len(trace.arrival_s) - too_long, "all accepted requests finish once arrivals stop"
    assert sim.num_running == sim.num_waiting == 0
    assert sim.preemptions > 0, "the test should exercise preemption"
    for f in fins:
        for name in ("queued_time", "prefill_time", "decode_time", "inference_time", "e2e_latency"):
            assert getattr(f, name) >= -1e-6, (name, f)
        assert f.e2e_latency == pytest.approx(f.queued_time + f.prefill_time + f.decode_time, abs=2e-6)
        assert f.inference_time == pytest.approx(f.prefill_time + f.decode_time, abs=2e-6)
        if f.num_generation_tokens > 1:
            assert f.mean_time_per_output_token == pytest.approx(f.decode_time / (f.num_generation_tokens - 1), rel=1e-6, abs=1e-9)
        else:
            assert f.mean_time_per_output_token == 0.0
        assert 1 <= f.num_generation_tokens <= f.max_tokens_param <= 400
        if f.finish_reason is FinishReason.LENGTH:
            assert f.num_generation_tokens == f.max_tokens_param
        elif f.finish_reason is FinishReason.STOP:
            assert f.num_generation_tokens < f.max_tokens_param
        assert 0 <= f.num_cached_tokens < f.num_prompt_tokens
    assert {FinishReason.STOP, FinishReason.LENGTH, FinishReason.ABORT} <= {f.finish_reason for f in fins}
    # token accounting: every token is either a first token (TTFT) or has an inter-token latency
    ttfts = [x for _, _, it in rec.steps for x in it.time_to_first_tokens_iter]
    itls = [x for _, _, it in rec.steps for x in it.inter_token_latencies_iter]
    assert len(ttfts) == len(fins)
    assert len(itls) == sum(f.num_generation_tokens - 1 for f in fins)
    assert sum(it.num_generation_tokens for _, _, it in rec.steps) == sum(f.num_generation_tokens for f in fins)
    # prompts that do not fit the context are rejected, never cut to fit: the rest is served whole
    expected_prompt = sum(p for p in trace.prompt_tokens if p < mml)
    assert max(f.num_prompt_tokens for f in fins) < mml
    assert sum(it.num_prompt_tokens for _, _, it in rec.steps) == expected_prompt == sum(f.num_prompt_tokens for f in fins)
    # the ITLs add up to the decode times, the TTFTs are queued + prefill times
    assert sum(itls) == pytest.approx(sum(f.decode_time for f in fins), rel=1e-9, abs=1e-4)
    assert sorted(ttfts) == pytest.approx(sorted(f.queued_time + f.prefill_time for f in fins), abs=2e-6)
    assert min(itls) > 0
    assert sum(f.num_preemptions for f in fins) == sim.preemptions
    # iteration timestamps strictly increase (the clock moves forward every step)
    ts = [it.iteration_timestamp for _, _, it in rec.steps]
    assert all(b > a for a, b in itertools.pairwise(ts))


def test_determinism_with_a_seed():
    sc = Scenario("det", "test", 60.0, workload=Workload(arrivals=BurstyArrivals()),
                  faults=(Fault(FaultKind.ERROR_BURST, 20.0, 20.0, 0.3),))
    a = [step_key(r) for r in record(sc, seed=7).steps]
    b = [step_key(r) for r in record(sc, seed=7).steps]
    c = [step_key(r) for r in record(sc, seed=8).steps]
    assert len(a) > 3000
    assert a == b
    assert a != c


# --------------------------------------------------------------------------- faults


def test_latency_spike(steady):
    rec = record(with_fault(FaultKind.LATENCY_SPIKE, 2.0))
    assert_same_before_fault(rec, steady)
    assert_fault_logged(rec, FaultKind.LATENCY_SPIKE)
    ratio = p95(rec.e2e(FAULT_AT + 30, FAULT_AT + FAULT_FOR)) / p95(rec.e2e(30, FAULT_AT))
    assert 1.5 < ratio < 3.5, ratio  # roughly the magnitude (batches grow too)
    itl_ratio = np.median(rec.itl(FAULT_AT + 30, FAULT_AT + FAULT_FOR)) / np.median(rec.itl(30, FAULT_AT))
    assert itl_ratio >= 2.0 * 0.95
    after = p95(rec.e2e(FAULT_AT + FAULT_FOR + 30, RUN_FOR)) / p95(rec.e2e(30, FAULT_AT))
    assert after < 1.3, "recovers once the fault ends"


def test_throughput_collapse(steady):
    rec = record(with_fault(FaultKind.THROUGHPUT_COLLAPSE, 2.5))
    assert_same_before_fault(rec, steady)
    tpot = lambda a, b: np.median([f.mean_time_per_output_token for f in rec.finished(a, b) if f.num_generation_tokens > 1])
    ratio = tpot(FAULT_AT + 30, FAULT_AT + FAULT_FOR) / tpot(30, FAULT_AT)
    assert 2.0 < ratio < 4.5, ratio
    # per-request decode throughput (tokens/s while decoding) falls at least 2x
    dec = lambda a, b: np.median([(f.num_generation_tokens - 1) / f.decode_time for f in rec.finished(a, b) if f.num_generation_tokens > 10])
    assert dec(FAULT_AT + 30, FAULT_AT + FAULT_FOR) < dec(30, FAULT_AT) / 2


def test_error_burst(steady):
    rec = record(with_fault(FaultKind.ERROR_BURST, 0.2))
    assert_same_before_fault(rec, steady)
    before = rec.finished(0, FAULT_AT)
    during = rec.finished(FAULT_AT + 10, FAULT_AT + FAULT_FOR)
    after = rec.finished(FAULT_AT + FAULT_FOR + 30, RUN_FOR)
    err = lambda fs: np.mean([f.finish_reason is FinishReason.ERROR for f in fs])
    assert err(before) == 0.0
    assert 0.17 < err(during) < 0.23
    assert err(after) == 0.0
    # failed requests stop early: fewer tokens than successful ones
    errs = [f.num_generation_tokens for f in during if f.finish_reason is FinishReason.ERROR]
    oks = [f.num_generation_tokens for f in during if f.finish_reason is FinishReason.STOP]
    assert np.mean(errs) < 0.8 * np.mean(oks)


def test_kv_exhaustion(steady):
    rec = record(with_fault(FaultKind.KV_EXHAUSTION, 3.0), check_every=7)
    assert_same_before_fault(rec, steady)
    assert_fault_logged(rec, FaultKind.KV_EXHAUSTION)
    pre = lambda a, b: sum(it.num_preempted_reqs for _, _, it in rec.in_window(a, b))
    assert pre(0, FAULT_AT) == 0
    assert pre(FAULT_AT, FAULT_AT + FAULT_FOR) > 200
    during = rec.in_window(FAULT_AT + 30, FAULT_AT + FAULT_FOR)
    assert np.mean([s.kv_cache_usage for _, s, _ in during]) > 0.9
    assert max(s.kv_cache_usage for _, s, _ in rec.steps) <= 1.0
    assert np.mean([s.num_waiting_reqs for _, s, _ in during]) > 50
    fins = rec.finished(FAULT_AT + 30, FAULT_AT + FAULT_FOR)
    assert any(f.num_preemptions > 0 for f in fins)
    assert p95(np.array([f.queued_time for f in fins])) > 5.0


def test_memory_leak(steady):
    rec = record(with_fault(FaultKind.MEMORY_LEAK, 4.0), probe=lambda sim: sim.memory_bytes)
    base = rec.sim.config.process_memory_bytes
    mem = np.array(rec.probes, dtype=float)
    t, m = mem[:, 0], mem[:, 1]
    assert np.all(m[t <= FAULT_AT] == base)
    inside = (t > FAULT_AT) & (t < FAULT_AT + FAULT_FOR)
    expected = base + 4.0 * 2**20 * (t[inside] - FAULT_AT)
    assert np.allclose(m[inside], expected, rtol=0, atol=2**20)
    assert np.all(np.diff(m) >= 0)
    assert np.all(m[t >= FAULT_AT + FAULT_FOR] == base + int(4.0 * 2**20 * FAULT_FOR)), "a leak does not heal"
    # engine stats are untouched
    assert [step_key(r) for r in rec.steps] == [step_key(r) for r in steady.steps]


def test_stall(steady):
    rec = record(with_fault(FaultKind.STALL, duration_s=30.0))
    assert_same_before_fault(rec, steady)
    sim = rec.sim
    stall = [(t, running) for t, running in rec.nones if FAULT_AT - 0.1 <= t < FAULT_AT + 30]
    assert len(stall) == pytest.approx(30.0 / sim.config.stall_tick_s, abs=2)
    assert all(running > 20 for _, running in stall), "requests stay running while stalled"
    assert not [r for r in rec.steps if FAULT_AT + 0.02 < r[0] < FAULT_AT + 30], "no stats while stalled"
    assert sim.stall_ticks == len(stall), "no stall outside the fault"
    # the first step after the stall: decode tokens waited the whole stall, queue piled up
    t, s, it = next(r for r in rec.steps if r[0] > FAULT_AT + 30)
    assert min(it.inter_token_latencies_iter) >= 30.0
    assert s.num_waiting_reqs > 30 * 40 * 0.5
    (ev,) = sim.fault_log
    assert ev.end_time - ev.start_time == pytest.approx(30.0, abs=0.1)


def test_stall_run_calls_on_tick_but_not_on_step():
    sc = Scenario("stall_only", "test", 20.0, faults=(Fault(FaultKind.STALL, 5.0, 10.0),))
    sim = EngineSimulator(sc, seed=0)
    ticks, steps = [], []
    sim.run(on_step=lambda s, it: steps.append(it.iteration_timestamp - sim.start_time),
            on_tick=lambda s: ticks.append((s.elapsed_s, s.stalled)))
    assert not [t for t in steps if 5.05 < t < 15.0]
    assert sum(1 for _, stalled in ticks if stalled) == pytest.approx(10.0 / sim.config.stall_tick_s, abs=2)


def test_gpu_throttling(steady):
    rec = record(with_fault(FaultKind.GPU_THROTTLING, 1.5))
    assert_same_before_fault(rec, steady)
    elapsed = lambda a, b: np.median([s.iteration_details.elapsed_ms for _, s, _ in rec.in_window(a, b)])
    assert elapsed(FAULT_AT + 30, FAULT_AT + FAULT_FOR) > 1.5 * elapsed(30, FAULT_AT)
    assert rec.sim.gpu_clock_ratio == 1.0  # over by the end
    sim = EngineSimulator(with_fault(FaultKind.GPU_THROTTLING, 1.5), seed=1)
    sim.run(FAULT_AT - 1)
    assert sim.gpu_clock_ratio == 1.0
    sim.run(10)
    assert sim.gpu_clock_ratio == pytest.approx(1 / 1.5)


def test_traffic_surge(steady):
    rec = record(with_fault(FaultKind.TRAFFIC_SURGE, 2.0))
    assert_same_before_fault(rec, steady)
    admitted = lambda a, b: sum(s.prefix_cache_stats.requests for _, s, _ in rec.in_window(a, b)) / (b - a)
    base, surge = admitted(20, FAULT_AT), admitted(FAULT_AT + 10, FAULT_AT + FAULT_FOR)
    assert 36 < base < 44
    assert 1.8 < surge / base < 2.2


def test_prompt_length_shift(steady):
    rec = record(with_fault(FaultKind.PROMPT_LENGTH_SHIFT, 2.0))
    assert_same_before_fault(rec, steady)
    med = lambda a, b: np.median([f.num_prompt_tokens for f in rec.finished(a, b)])
    assert 480 < med(20, FAULT_AT) < 545
    assert 1.8 < med(FAULT_AT + 20, FAULT_AT + FAULT_FOR) / med(20, FAULT_AT) < 2.2
    assert med(FAULT_AT + FAULT_FOR + 20, RUN_FOR) < 545


def test_bad_deployment_is_persistent(steady):
    rec = record(with_fault(FaultKind.BAD_DEPLOYMENT, 1.4, duration_s=math.inf, error_fraction=0.05))
    assert_same_before_fault(rec, steady)
    assert_fault_logged(rec, FaultKind.BAD_DEPLOYMENT, ends=False)
    err = lambda a, b: np.mean([f.finish_reason is FinishReason.ERROR for f in rec.finished(a, b)])
    assert err(0, FAULT_AT) == 0.0
    assert 0.035 < err(FAULT_AT + 20, RUN_FOR) < 0.065
    elapsed = lambda a, b: np.median([s.iteration_details.elapsed_ms for _, s, _ in rec.in_window(a, b)])
    assert elapsed(RUN_FOR - 60, RUN_FOR) > 1.4 * elapsed(30, FAULT_AT)


def test_fault_validation():
    with pytest.raises(ValueError, match="unknown fault kind 'meltdown'"):
        Fault("meltdown", 0.0)
    with pytest.raises(ValueError, match="fraction"):
        Fault(FaultKind.ERROR_BURST, 0.0, 10.0, 1.5)
    with pytest.raises(ValueError, match="slow-down"):
        Fault(FaultKind.LATENCY_SPIKE, 0.0, 10.0, 0.5)
    assert Fault("stall", 10.0).kind is FaultKind.STALL
    assert Fault(FaultKind.LATENCY_SPIKE, 10.0).magnitude == 2.0


# --------------------------------------------------------------------------- scenarios


def test_scenario_catalogue():
    required = {
        "steady", "latency_spike", "throughput_collapse", "error_burst", "kv_exhaustion",
        "memory_leak", "stall", "gpu_throttling", "traffic_surge", "prompt_length_shift",
        "bad_deployment", "diurnal", "mixed",
    }
    assert required <= set(list_scenarios())
    for kind in FaultKind:
        assert any(f.kind is kind for f in SCENARIOS[kind.value].faults)
    assert len({f.kind for f in SCENARIOS["mixed"].faults}) >= 4
    for name, sc in SCENARIOS.items():
        assert sc.description and 1800 <= sc.duration_s <= 3600, name
        assert all(f.start_s >= 600 for f in sc.faults), f"{name}: needs a clean baseline"
        assert all(f.start_s < sc.duration_s for f in sc.faults), name


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_runs(name):
    sim = EngineSimulator(SCENARIOS[name], seed=0)
    out = sim.run(20.0)
    assert out.stats_steps > 500 and out.finished > 100
    sim.check_invariants()


# --------------------------------------------------------------------------- workload


def test_arrival_processes_and_lengths():
    def arrivals(spec, until, **wk):
        stream = ArrivalStream(Workload(arrivals=spec, **wk), seed=3)
        out: list = []
        t = 0.0
        while t < until:
            t = min(until, t + 0.01)
            stream.pull(t, 1.0, 1.0, out)
        return np.array(out)

    a = arrivals(PoissonArrivals(40.0), 300.0)
    assert 40 * 300 * 0.95 < len(a) < 40 * 300 * 1.05
    assert np.all(np.diff(a[:, 0]) >= 0)
    assert np.median(a[:, 1]) == pytest.approx(512, rel=0.05)
    assert np.median(a[:, 2]) == pytest.approx(128, rel=0.05)
    assert np.mean(a[:, 3] > 0) == pytest.approx(0.5, abs=0.03)

    d = arrivals(DiurnalArrivals(mean_rate=30.0, amplitude=0.6, period_s=400.0), 400.0)
    peak = np.sum((d[:, 0] > 50) & (d[:, 0] < 150))  # rate ~ 30 * 1.6 around t = 100
    trough = np.sum((d[:, 0] > 250) & (d[:, 0] < 350))  # ~ 30 * 0.4 around t = 300
    assert peak > 3 * trough

    spec = BurstyArrivals(rate_on=80.0, rate_off=10.0, mean_on_s=5.0, mean_off_s=10.0)
    b = arrivals(spec, 1500.0)
    assert len(b) / 1500 == pytest.approx(spec.mean_rate, rel=0.15)
    per_s = np.bincount(b[:, 0].astype(int), minlength=1500)
    assert np.var(per_s) > 5 * np.mean(per_s), "bursty: far more variance than Poisson"

    short = arrivals(PoissonArrivals(40.0), 60.0, prompt=LengthDist(100.0, 0.0, max_tokens=100))
    assert set(short[:, 1]) == {100}


# --------------------------------------------------------------------------- trace CSV

GOOD = """\
# recorded 2026-11-02
arrival_time_s,prompt_tokens,output_tokens,user
0.0,512,128,a

0.5,1024,64,b
0.5,20,7,c
2.25,300,300,d
"""


def test_trace_csv_parses(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(GOOD)
    tr = load_trace_csv(path)
    assert tr.arrival_s == (0.0, 0.5, 0.5, 2.25)
    assert tr.prompt_tokens == (512, 1024, 20, 300)
    assert tr.output_tokens == (128, 64, 7, 300)
    assert load_trace_csv(io.StringIO(GOOD)) == dataclasses.replace(tr, source="<trace>")
    # replayed by the engine: exactly these requests
    sc = Scenario("trace", "test", 30.0, workload=Workload(arrivals=tr, abort_fraction=0.0))
    rec = record(sc)
    fins = sorted((f.num_prompt_tokens, f.num_generation_tokens) for _, _, it in rec.steps for f in it.finished_requests)
    assert fins == sorted(zip(tr.prompt_tokens, tr.output_tokens))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("arrival_time_s,prompt_tokens\n0,1\n", r":1: trace header is missing column\(s\) output_tokens"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\n1,2\n", r":3: expected 3 fields"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\nsoon,2,2\n", r":3: column arrival_time_s: not a number: 'soon'"),
        ("arrival_time_s,prompt_tokens,output_tokens\n# c\n\n-1,2,2\n", r":4: column arrival_time_s: must be finite and >= 0"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\n1,0,2\n", r":3: column prompt_tokens: must be a whole number >= 1, got '0'"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\n1,2,2.5\n", r":3: column output_tokens: must be a whole number >= 1, got '2.5'"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\n1,2,x\n", r":3: column output_tokens: not a number: 'x'"),
        ("arrival_time_s,prompt_tokens,output_tokens\n5,1,1\n4,2,2\n", r":3: column arrival_time_s: 4 is earlier than the previous arrival 5"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0,1,1\nnan,2,2\n", r":3: column arrival_time_s: must be finite"),
        ("", r"empty trace"),
        ("arrival_time_s,prompt_tokens,output_tokens\n", r"no requests"),
    ],
)
def test_trace_csv_malformed(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as exc:
        load_trace_csv(path)
    assert str(path) in str(exc.value)


# --------------------------------------------------------------------------- real vLLM objects


def _fake_vllm(monkeypatch) -> None:
    """Installs a stand-in for vllm.v1.metrics.stats / vllm.v1.engine shaped like vLLM 0.3x:
    IterationStats() takes no arguments and num_prompt_tokens is a read-only property;
    FinishedRequestStats lacks num_preemptions; SchedulerStats lacks perf fields."""
    ns: dict = {}
    exec(textwrap.dedent("""
        import enum, time
        from dataclasses import dataclass, field

        class FinishReason(enum.IntEnum):
            STOP = 0
            LENGTH = 1
            ABORT = 2
            ERROR = 3

        @dataclass
        class PrefixCacheStats:
            reset: bool = False
            requests: int = 0
            queries: int = 0
            hits: int = 0

        @dataclass
        class SchedulerStats:
            num_running_reqs: int = 0
            num_waiting_reqs: int = 0
            step_counter: int = 0
            kv_cache_usage: float = 0.0
            prefix_cache_stats: PrefixCacheStats = field(default_factory=PrefixCacheStats)

        @dataclass
        class FinishedRequestStats:
            finish_reason: "FinishReason"
            request_id: str | None = None
            e2e_latency: float = 0.0
            num_prompt_tokens: int = 0
            num_generation_tokens: int = 0
            max_tokens_param: int | None = None
            queued_time: float = 0.0
            prefill_time: float = 0.0
            inference_time: float = 0.0
            decode_time: float = 0.0
            mean_time_per_output_token: float = 0.0
            is_corrupted: bool = False
            num_cached_tokens: int = 0

        @dataclass
        class PromptTokenStats:
            computed: int = 0
            cached_tokens: int = 0
            total: int = 0

        class IterationStats:
            def __init__(self):
                self.iteration_timestamp = time.time()
                self.num_generation_tokens = 0
                self.prompt_token_stats = PromptTokenStats()
                self.num_preempted_reqs = 0
                self.finished_requests = []
                self.time_to_first_tokens_iter = []
                self.inter_token_latencies_iter = []
                self.num_corrupted_reqs = 0

            @property
            def num_prompt_tokens(self):
                return self.prompt_token_stats.total
    """), ns)
    mods = {name: types.ModuleType(name) for name in ("vllm", "vllm.v1", "vllm.v1.metrics", "vllm.v1.metrics.stats", "vllm.v1.engine")}
    for k, v in ns.items():
        setattr(mods["vllm.v1.metrics.stats"], k, v)
    mods["vllm.v1.engine"].FinishReason = ns["FinishReason"]
    mods["vllm"].v1 = mods["vllm.v1"]
    mods["vllm.v1"].metrics = mods["vllm.v1.metrics"]
    mods["vllm.v1"].engine = mods["vllm.v1.engine"]
    mods["vllm.v1.metrics"].stats = mods["vllm.v1.metrics.stats"]
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


def test_stats_factory_builds_real_vllm_objects(monkeypatch):
    _fake_vllm(monkeypatch)
    real = sys.modules["vllm.v1.metrics.stats"]
    factory = StatsFactory(prefer_real=True)
    assert factory.using_real
    sc = Scenario("real", "test", 30.0, workload=Workload(error_fraction=0.05))
    sim = EngineSimulator(sc, seed=0, stats_factory=factory)
    seen_prompt = seen_fin = 0
    for _ in range(3000):
        out = sim.step()
        if out is None:
            continue
        s, it = out
        assert type(s) is real.SchedulerStats and type(it) is real.IterationStats
        assert type(s.prefix_cache_stats) is real.PrefixCacheStats
        assert it.iteration_timestamp > START - 1e9  # set from the simulated clock
        seen_prompt += it.num_prompt_tokens
        for f in it.finished_requests:
            assert type(f) is real.FinishedRequestStats
            assert type(f.finish_reason) is real.FinishReason
            assert not hasattr(f, "num_preemptions")
            seen_fin += 1
    assert seen_prompt > 10_000 and seen_fin > 100
    assert it.iteration_timestamp == pytest.approx(sim.clock())


def test_stats_factory_falls_back_without_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    factory = StatsFactory(prefer_real=True)
    assert not factory.using_real and "vllm" in factory.import_error
    sim = EngineSimulator(SCENARIOS["steady"], stats_factory=factory)
    assert sim.step() is None  # idle: nothing has arrived at t=0
    out = next(o for o in iter(sim.step, "never") if o is not None)
    assert type(out[0]) is SchedulerStats and type(out[1]) is IterationStats


def test_importing_sim_does_not_import_vllm(tmp_path):
    pkg = tmp_path / "vllm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('vllm imported')\n")
    code = (
        "import sys; import aphrodite_sla.sim as s; s.StatsFactory(); "
        "s.EngineSimulator(s.SCENARIOS['steady']).run(1.0); "
        "assert 'vllm' not in sys.modules; print('ok')"
    )
    env_path = f"{tmp_path}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": env_path, "PATH": ""}, cwd=str(_repo_root()))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- an hour (speed: benchmarks/bench_simulator.py)


def test_an_hour_of_engine_time():
    sim = EngineSimulator(SCENARIOS["steady"].with_(duration_s=3600.0), seed=0)
    out = sim.run()
    assert out.engine_s >= 3600.0
    assert out.stats_steps > 200_000 and 0.95 * 40 * 3600 < out.arrived < 1.05 * 40 * 3600
