"""Recorded traffic in the engine simulator: the trace formats (ours, Azure, Mooncake, BurstGPT),
auto-detection and malformed rows; time scaling, thinning and looping; the capacity measurement
behind a target load; over-long prompt rejection, block-hash prefix caching, failed trace rows,
arrival stats; traffic surges and every other fault on a trace (speed: benchmarks/bench_simulator.py)."""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math

import numpy as np
import pytest

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.sim import (
    ArrivalStats,
    EngineConfig,
    EngineSimulator,
    Fault,
    FaultKind,
    FinishReason,
    Scenario,
    TraceArrivals,
    TraceFormatError,
    Workload,
    detect_format,
    load_trace,
    load_trace_csv,
    measure_capacity,
    time_scale_for_load,
    trace_scenario,
)
from aphrodite_sla.sim.traces import synthetic_trace, write_trace
from aphrodite_sla.sim.workload import ArrivalStream

START = 1_700_000_000.0


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def pull_all(trace: TraceArrivals, until: float, dt: float = 0.01, rate_mult=lambda t: 1.0, seed: int = 0, **wk) -> list:
    """Every arrival a stream emits up to ``until`` (pulled in steps of ``dt``)."""
    stream = ArrivalStream(Workload(arrivals=trace, **wk), seed=seed)
    out: list = []
    t = 0.0
    while t < until:
        m = rate_mult(t)
        t = min(until, t + dt)
        stream.pull(t, m, 1.0, out)
    return out


def run(scenario: Scenario, seed: int = 0, check_every: int = 0):
    """Runs a scenario; returns the simulator, finished requests [(t, FinishedRequestStats)],
    per-step prefix-cache stats and per-tick arrival stats [(t, ArrivalStats)]."""
    sim = EngineSimulator(scenario, clock=ManualClock(START), seed=seed)
    fins: list = []
    pcs: list = []
    arrivals: list = []
    n = 0

    def on_step(s, it):
        t = it.iteration_timestamp - START
        fins.extend((t, f) for f in it.finished_requests)
        pcs.append(s.prefix_cache_stats)

    def on_tick(sim):
        nonlocal n
        n += 1
        a = sim.take_arrival_stats()
        if a.count:
            arrivals.append((sim.elapsed_s, a))
        if check_every and n % check_every == 0:
            sim.check_invariants()

    sim.run(on_step=on_step, on_tick=on_tick)
    return sim, fins, pcs, arrivals


def poisson_trace(n: int, rate: float, seed: int = 0, prompt=(400.0, 0.6), output=(60.0, 0.5), **kw) -> TraceArrivals:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, n))
    p = np.maximum(1, rng.lognormal(math.log(prompt[0]), prompt[1], n)).astype(int)
    o = np.maximum(1, rng.lognormal(math.log(output[0]), output[1], n)).astype(int)
    return TraceArrivals(tuple(t.tolist()), tuple(p.tolist()), tuple(o.tolist()), **kw)


# --------------------------------------------------------------------------- formats

OURS = """\
# our format
arrival_time_s,prompt_tokens,output_tokens
0.0,512,128
0.5,1024,64
2.25,300,300
"""

AZURE = """\
TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 23:59:59.9000000,4808,10
2023-11-17 00:00:00.0000001,3180,8

2023-11-17 00:00:01,110,0
2023-11-17T00:00:02.25,7433,11
"""

MOONCAKE = """\
{"timestamp": 1000, "input_length": 1100, "output_length": 12, "hash_ids": [0, 1, 2]}
{"timestamp": 1000, "input_length": 1400, "output_length": 30, "hash_ids": [0, 1, 3], "extra": "ignored"}
{"timestamp": 4500, "input_length": 300, "output_length": 0, "hash_ids": [7]}
"""

BURSTGPT = """\
Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45.5,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,API log
"""


def test_our_csv_through_load_trace(tmp_path):
    path = write(tmp_path, "ours.csv", OURS)
    tr = load_trace(path)
    assert tr == load_trace_csv(path) == load_trace(path, "csv")
    assert tr.arrival_s == (0.0, 0.5, 2.25)
    assert tr.prompt_tokens == (512, 1024, 300) and tr.output_tokens == (128, 64, 300)
    assert tr.source == str(path) and not tr.block_hashes


def test_azure_trace(tmp_path):
    path = write(tmp_path, "AzureLLMInferenceTrace_conv.csv", AZURE)
    tr = load_trace(path)
    # relative to the first row, across midnight, 7 / 0 / 2 fractional digits, T or space
    assert tr.arrival_s == pytest.approx((0.0, 0.1000001, 1.1, 2.35), abs=1e-9)
    assert tr.prompt_tokens == (4808, 3180, 110, 7433)
    assert tr.output_tokens == (10, 8, 1, 11), "0 generated tokens replays as 1 (an engine produces one)"
    assert tr.failed_count == 0


@pytest.mark.parametrize("digits", range(10))
def test_azure_fractional_digits(tmp_path, digits):
    frac = "123456789"[:digits]
    stamp = "2024-05-10 00:00:07" + ("." + frac if digits else "")
    path = write(tmp_path, "a.csv", f"TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00,5,5\n{stamp},5,5\n")
    tr = load_trace(path, "azure")
    assert tr.arrival_s[1] == pytest.approx(7 + (int(frac) / 10**digits if digits else 0.0), abs=1e-12)


def test_azure_time_zones_and_order(tmp_path):
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10T01:00:00+01:00,5,5\n"
            "2024-05-10 00:00:03Z,6,6\n2024-05-10 00:00:01.5,7,7\n")
    tr = load_trace(write(tmp_path, "a.csv", text))
    # +01:00 is 00:00:00 UTC; rows out of order are sorted (stable)
    assert tr.arrival_s == pytest.approx((0.0, 1.5, 3.0))
    assert tr.prompt_tokens == (5, 7, 6)


def test_mooncake_trace(tmp_path):
    path = write(tmp_path, "mooncake_trace.jsonl", MOONCAKE)
    tr = load_trace(path, hash_block_size=256)
    assert tr.arrival_s == (0.0, 0.0, 3.5)  # milliseconds, relative to the first row
    assert tr.prompt_tokens == (1100, 1400, 300)
    assert tr.output_tokens == (12, 30, 1)
    assert tr.block_hashes == ((0, 1, 2), (0, 1, 3), (7,))
    assert tr.hash_block_size == 256
    # without hash_ids: the workload's prefix model applies
    plain = write(tmp_path, "plain.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 5}\n')
    assert load_trace(plain).block_hashes == ()


def test_burstgpt_trace(tmp_path):
    path = write(tmp_path, "BurstGPT_1.csv", BURSTGPT)
    tr = load_trace(path)
    assert tr.arrival_s == (0.0, 40.5, 113.0)
    assert tr.prompt_tokens == (472, 1087, 417)
    assert tr.output_tokens == (18, 0, 276), "a failed row (0 response tokens) is kept, as output 0"
    assert tr.failed_count == 1


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("t.csv", OURS, "csv"),
        ("t.csv", AZURE, "azure"),
        ("t.txt", MOONCAKE, "mooncake"),
        ("t.jsonl", "# a comment\n" + MOONCAKE, "mooncake"),
        ("t.csv", BURSTGPT, "burstgpt"),
        ("t.csv", BURSTGPT.replace("Timestamp,Model,Request tokens", "timestamp , model,request_tokens"), "burstgpt"),
    ],
)
def test_auto_detection(tmp_path, name, text, fmt):
    path = write(tmp_path, name, text)
    assert detect_format(path) == fmt
    assert load_trace(path) == load_trace(path, fmt)
    assert detect_format(io.StringIO(text)) == fmt


def test_auto_detection_failures(tmp_path):
    with pytest.raises(TraceFormatError, match=r"u\.csv:2: cannot tell the trace format .*TIMESTAMP,ContextTokens.*mooncake") as exc:
        load_trace(write(tmp_path, "u.csv", "\nwhen,in,out\n1,2,3\n"))
    assert exc.value.line == 2 and exc.value.path.endswith("u.csv")
    with pytest.raises(TraceFormatError, match="empty trace"):
        load_trace(write(tmp_path, "e.csv", "# nothing\n\n"))
    with pytest.raises(ValueError, match="unknown trace format 'parquet'"):
        load_trace(write(tmp_path, "x.csv", OURS), "parquet")


def test_gzip_and_open_files(tmp_path):
    path = tmp_path / "mooncake_trace.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(MOONCAKE)
    assert load_trace(path).block_hashes == ((0, 1, 2), (0, 1, 3), (7,))
    tr = load_trace(io.StringIO(BURSTGPT))
    assert tr.source == "<trace>" and tr.output_tokens == (18, 0, 276)


AZ_H = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,10,10\n"
BG_H = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,ChatGPT,10,10,20,Conversation log\n"
MC_1 = '{"timestamp": 0, "input_length": 10, "output_length": 10, "hash_ids": [1]}\n'


@pytest.mark.parametrize(
    ("fmt", "text", "line", "match"),
    [
        ("azure", AZ_H + "2023-11-16 18:15:47.1,10\n", 3, r"expected 3 fields like the header, got 2"),
        ("azure", AZ_H + "16/11/2023 18:15:47,10,10\n", 3, r"column TIMESTAMP: not a date-time like .*'16/11/2023 18:15:47'"),
        ("azure", AZ_H + "2023-13-16 18:15:47,10,10\n", 3, r"column TIMESTAMP: not a valid date"),
        ("azure", AZ_H + "2023-11-16 25:15:47,10,10\n", 3, r"column TIMESTAMP: not a valid time of day"),
        ("azure", AZ_H + "2023-11-16 18:15:47,0,10\n", 3, r"column ContextTokens: must be a whole number >= 1, got '0'"),
        ("azure", AZ_H + "2023-11-16 18:15:47,10,-3\n", 3, r"column GeneratedTokens: must be a whole number >= 0, got '-3'"),
        ("azure", "TIMESTAMP,ContextTokens\n", 1, r"azure trace header is missing column\(s\) GeneratedTokens"),
        ("mooncake", MC_1 + '{"timestamp": 5, "input_length": 10\n', 2, r"not valid JSON"),
        ("mooncake", MC_1 + "[1, 2, 3]\n", 2, r"expected a JSON object"),
        ("mooncake", MC_1 + '{"input_length": 10, "output_length": 1}\n', 2, r"field timestamp: missing"),
        ("mooncake", MC_1 + '{"timestamp": -4, "input_length": 10, "output_length": 1}\n', 2, r"field timestamp: must be a number of milliseconds >= 0"),
        ("mooncake", MC_1 + '{"timestamp": 4, "input_length": "ten", "output_length": 1}\n', 2, r"field input_length: must be a whole number >= 1, got 'ten'"),
        ("mooncake", MC_1 + '{"timestamp": 4, "input_length": 10}\n', 2, r"field output_length: missing"),
        ("mooncake", MC_1 + '{"timestamp": 4, "input_length": 10, "output_length": 1, "hash_ids": [1, "b"]}\n', 2,
         r"field hash_ids: must be a list of integers"),
        ("burstgpt", BG_H + "2,ChatGPT,10,x,20,Conversation log\n", 3, r"column Response tokens: not a number: 'x'"),
        ("burstgpt", BG_H + "-2,ChatGPT,10,10,20,Conversation log\n", 3, r"column Timestamp: must be finite and >= 0, got '-2'"),
        ("burstgpt", BG_H + "2,ChatGPT,0,10,10,Conversation log\n", 3, r"column Request tokens: must be a whole number >= 1, got '0'"),
        ("burstgpt", BG_H + "2,ChatGPT,10,10\n", 3, r"expected 6 fields like the header, got 4"),
        ("burstgpt", "Timestamp,Model,Request tokens,Total tokens\n", 1, r"burstgpt trace header is missing column\(s\) Response tokens"),
        ("burstgpt", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n", None, r"trace has a header but no requests"),
    ],
)
def test_malformed_rows_name_file_line_and_field(tmp_path, fmt, text, line, match):
    path = write(tmp_path, "bad." + ("jsonl" if fmt == "mooncake" else "csv"), text)
    with pytest.raises(TraceFormatError, match=match) as exc:
        load_trace(path, fmt)
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(exc.value).startswith(prefix), str(exc.value)
    assert exc.value.line == line and exc.value.path == str(path)
    if line is not None and line > 1:
        # auto-detection reads the same file the same way
        with pytest.raises(TraceFormatError, match=match):
            load_trace(path)


def test_max_bad_rows_skips_and_counts(tmp_path, caplog):
    text = BG_H + "2,ChatGPT,ten,10,20,Conversation log\n3,ChatGPT,10,10,20,Conversation log\n4,ChatGPT,10\n5,ChatGPT,7,7,14,API log\n"
    path = write(tmp_path, "b.csv", text)
    with pytest.raises(TraceFormatError, match=r"b\.csv:3: column Request tokens: not a number.*max_bad_rows=N"):
        load_trace(path)
    tr = load_trace(path, max_bad_rows=2)
    assert tr.skipped_rows == 2
    assert tr.arrival_s == (0.0, 2.0, 4.0) and tr.prompt_tokens == (10, 10, 7)
    assert "skipping malformed row" in caplog.text and "skipped 2 malformed row(s)" in caplog.text
    with pytest.raises(TraceFormatError, match=r"b\.csv:5: expected 6 fields.*\(2 malformed rows so far, more than max_bad_rows=1\)"):
        load_trace(path, max_bad_rows=1)


@pytest.mark.parametrize("fmt", ["csv", "azure", "mooncake", "burstgpt"])
def test_write_and_read_back(tmp_path, fmt):
    tr = synthetic_trace(120.0, 5.0, seed=3, failed_fraction=0.1 if fmt == "burstgpt" else 0.0)
    path = tmp_path / ("t.jsonl" if fmt == "mooncake" else "t.csv")
    write_trace(tr, path, fmt)
    back = load_trace(path)
    assert len(back) == len(tr) > 400
    tol = 1e-3 if fmt == "mooncake" else 1e-6  # Mooncake keeps milliseconds
    assert np.allclose(back.arrival_s, tr.arrival_s, atol=tol, rtol=0)
    assert back.prompt_tokens == tr.prompt_tokens
    assert back.output_tokens == tr.output_tokens
    assert back.block_hashes == (tr.block_hashes if fmt == "mooncake" else ())
    if fmt == "burstgpt":
        assert back.failed_count == tr.failed_count > 0


# --------------------------------------------------------------------------- scaling, thinning, looping


def test_time_scale_compresses_arrivals():
    tr = poisson_trace(300, 10.0, seed=1)
    base = pull_all(tr, tr.span_s + 1)
    half = pull_all(tr.with_(time_scale=0.5), tr.span_s + 1)
    assert [a[0] for a in base] == pytest.approx(list(tr.arrival_s), abs=1e-12)
    assert [a[0] for a in half] == pytest.approx([0.5 * t for t in tr.arrival_s], abs=1e-12)
    assert [a[1:3] for a in half] == [a[1:3] for a in base]
    assert tr.with_(time_scale=0.5).mean_rate == pytest.approx(2 * tr.mean_rate)
    assert tr.with_(time_scale=0.5).duration_s == pytest.approx(0.5 * tr.span_s)


def test_thinning_keeps_a_fraction_deterministically():
    tr = poisson_trace(4000, 40.0, seed=2)
    tr = dataclasses.replace(tr, output_tokens=tuple(range(1, 4001)))  # output = request id
    until = tr.span_s + 1
    kept = [a[2] for a in pull_all(tr.with_(thin=0.3), until)]
    assert 0.3 * 4000 - 4 * math.sqrt(4000 * 0.21) < len(kept) < 0.3 * 4000 + 4 * math.sqrt(4000 * 0.21)
    assert kept == sorted(set(kept)), "a subsequence of the trace, each request at most once"
    assert [a[2] for a in pull_all(tr.with_(thin=0.3), until, seed=99)] == kept, "independent of the simulator's seed"
    other = [a[2] for a in pull_all(tr.with_(thin=0.3, thin_seed=1), until)]
    assert other != kept and len(set(other) & set(kept)) < 0.5 * len(kept)
    assert tr.with_(thin=0.3).mean_rate == pytest.approx(0.3 * tr.mean_rate)


def test_looping_replays_back_to_back():
    tr = TraceArrivals((0.0, 1.0, 4.0), (10, 20, 30), (1, 2, 3), loop=True, time_scale=0.5)
    out = pull_all(tr, 6.5, dt=0.05)
    # one pass every span * time_scale = 2 s: the next pass's first request shares the previous last one's time
    assert [round(a[0], 9) for a in out] == [0.0, 0.5, 2.0, 2.0, 2.5, 4.0, 4.0, 4.5, 6.0, 6.0, 6.5]
    assert [a[1] for a in out] == [10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20]
    # thinned loops draw anew each pass
    big = poisson_trace(200, 50.0, seed=4, loop=True, thin=0.5)
    big = dataclasses.replace(big, output_tokens=tuple(range(1, 201)))
    passes = pull_all(big, 3 * big.span_s - 1e-6, dt=0.05)
    first = [a[2] for a in passes if a[0] < big.span_s - 1e-9]
    second = [a[2] for a in passes if big.span_s + 1e-9 < a[0] < 2 * big.span_s - 1e-9]
    assert first != second and 60 < len(first) < 140 and 60 < len(second) < 140


def test_trace_validation():
    with pytest.raises(ValueError, match="time_scale"):
        TraceArrivals((0.0,), (1,), (1,), time_scale=0.0)
    with pytest.raises(ValueError, match="thin"):
        TraceArrivals((0.0,), (1,), (1,), thin=0.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        TraceArrivals((1.0, 0.5), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="block_hashes"):
        TraceArrivals((0.0, 1.0), (1, 1), (1, 1), block_hashes=((1,),))
    with pytest.raises(ValueError, match="prompt_tokens must be >= 1"):
        TraceArrivals((0.0,), (0,), (1,))
    assert TraceArrivals([0.0, 1.0], [5, 6], [7, 0]).output_tokens == (7, 0)  # lists become tuples


# --------------------------------------------------------------------------- capacity and target load


def test_target_load_from_measured_capacity():
    """The time_scale for a 0.6 load replays at 0.6 x the measured capacity (the engine keeps up:
    no queue); replayed at 2x capacity the engine completes what the capacity says it sustains."""
    tr = synthetic_trace(1200.0, 4.0, seed=5)
    cap = measure_capacity(tr)
    assert 0.0 < cap.rejected_fraction < 0.2 and cap.requests_per_s > tr.mean_rate
    assert cap.requests_per_s == pytest.approx(cap.accepted_per_s / (1 - cap.rejected_fraction))
    again = measure_capacity(tr)
    assert again == dataclasses.replace(cap, wall_s=again.wall_s), "deterministic (but for the wall time)"

    x = time_scale_for_load(tr, 0.6, capacity=cap)
    assert time_scale_for_load(tr, 0.6) == pytest.approx(x)
    replay = tr.with_(time_scale=x)
    dur = 300.0
    sim, fins, _, arrivals = run(trace_scenario(replay, duration_s=dur))
    arrived = sum(a.count for _, a in arrivals)
    load = arrived / dur / cap.requests_per_s
    assert load == pytest.approx(0.6, rel=0.15)
    assert sim.num_waiting < 20, "at 0.6 of capacity the engine keeps up"
    done = sum(1 for t, _ in fins if 60 < t <= dur) / (dur - 60)
    accepted = sum(a.count - a.rejected for t, a in arrivals if 60 < t <= dur) / (dur - 60)
    assert done == pytest.approx(accepted, rel=0.1)

    over = tr.with_(time_scale=time_scale_for_load(tr, 2.0, capacity=cap), loop=True)  # one pass lasts ~100 s
    sim, fins, _, _ = run(trace_scenario(over, duration_s=dur))
    sustained = sum(1 for t, _ in fins if 60 < t <= dur) / (dur - 60)
    assert sustained == pytest.approx(cap.accepted_per_s, rel=0.15)
    assert sim.num_waiting > 1000, "at 2x capacity the queue grows"


def test_capacity_depends_on_the_engine_and_rejects_nonsense():
    tr = synthetic_trace(600.0, 4.0, seed=6)
    fast = measure_capacity(tr)
    slow = measure_capacity(tr, EngineConfig(step_base_s=0.016, decode_s_per_seq=2e-5))
    assert slow.requests_per_s < 0.75 * fast.requests_per_s
    with pytest.raises(ValueError, match=r"no request .* fits the context"):
        measure_capacity(TraceArrivals((0.0, 1.0), (9000, 9500), (5, 5)))
    with pytest.raises(ValueError, match="target_load"):
        time_scale_for_load(tr, 0.0, capacity=fast)


# --------------------------------------------------------------------------- fidelity


def test_over_long_prompts_rejected_not_truncated():
    cfg = EngineConfig()
    mml = cfg.max_model_len
    prompts = (100, mml - 1, mml, 20_000, 500, mml + 1)
    tr = TraceArrivals((0.1, 0.2, 0.3, 0.4, 0.5, 0.6), prompts, (50, 50, 50, 50, 50, 50))
    sim, fins, _, arrivals = run(trace_scenario(tr, duration_s=30.0, abort_fraction=0.0), check_every=1)
    got = sorted((f.num_prompt_tokens, f.num_generation_tokens, f.finish_reason) for _, f in fins)
    assert got == [(100, 50, FinishReason.STOP), (500, 50, FinishReason.STOP), (mml - 1, 1, FinishReason.LENGTH)]
    assert sim.rejected_too_long == 3 and sim.arrived == 3
    total = ArrivalStats(sum(a.count for _, a in arrivals), sum(a.prompt_tokens for _, a in arrivals),
                         sum(a.output_tokens for _, a in arrivals), sum(a.rejected for _, a in arrivals))
    assert total == ArrivalStats(6, sum(prompts), 300, 3)
    summary = EngineSimulator(trace_scenario(tr, duration_s=30.0)).run()
    assert summary.rejected_too_long == 3 and summary.arrived == 3


def test_arrival_stats_window_by_window():
    tr = poisson_trace(2000, 20.0, seed=7)
    sim = EngineSimulator(trace_scenario(tr, duration_s=tr.span_s + 1.0), seed=0)
    windows = []
    while sim.elapsed_s < tr.span_s + 1.0:
        sim.run(10.0)
        windows.append(sim.take_arrival_stats())
    assert sim.take_arrival_stats() == ArrivalStats()
    assert sum(w.count for w in windows) == 2000
    assert sum(w.prompt_tokens for w in windows) == sum(tr.prompt_tokens)
    assert sum(w.output_tokens for w in windows) == sum(tr.output_tokens)
    assert 0.7 * 200 < np.median([w.count for w in windows[:-1]]) < 1.3 * 200


def _hashed_trace(n: int, shared: int, unique_from: int) -> TraceArrivals:
    """Requests 0..unique_from-1 share a ``shared``-block prefix; the rest have unique hashes."""
    hashes, prompts = [], []
    nxt = 1000
    for i in range(n):
        if i < unique_from:
            hs = tuple(range(shared)) + (nxt,)
            nxt += 1
        else:
            hs = tuple(range(nxt, nxt + shared + 1))
            nxt += shared + 1
        hashes.append(hs)
        prompts.append(512 * shared + 100)
    times = tuple(0.5 * i for i in range(n))
    return TraceArrivals(times, tuple(prompts), (20,) * n, block_hashes=tuple(hashes))


def test_block_hashes_drive_prefix_cache_hits():
    tr = _hashed_trace(60, shared=4, unique_from=30)
    # prefix_hit_fraction=1 would give every request 256 cached tokens without hashes: hashes rule
    sim, fins, pcs, _ = run(trace_scenario(tr, duration_s=40.0, prefix_hit_fraction=1.0, abort_fraction=0.0))
    cached = {int(f.request_id.split("-")[1]): f.num_cached_tokens for _, f in fins}
    assert len(cached) == 60
    assert cached[0] == 0, "the first request finds nothing cached"
    assert all(cached[i] == 4 * 512 for i in range(1, 30)), "repeated prefixes: 4 blocks of 512 tokens cached"
    assert all(cached[i] == 0 for i in range(30, 60)), "unique prefixes: no hits"
    assert sum(p.hits for p in pcs) == 29 * 4 * 512
    assert sum(p.queries for p in pcs) == sum(tr.prompt_tokens)
    assert sum(p.requests for p in pcs) == 60


def test_prefix_cache_bounded_by_kv_budget():
    # a small KV cache: 2048 blocks x 16 = 32768 tokens = 64 hash blocks of 512
    cfg = EngineConfig(num_gpu_blocks=2048, max_num_seqs=64)
    shared = tuple(range(8))
    unique = [tuple(range(100 + 10 * i, 110 + 10 * i)) for i in range(12)]  # 120 blocks: evicts the shared prefix
    hashes = [shared + (901,), shared + (902,), *unique, shared + (903,)]
    n = len(hashes)
    tr = TraceArrivals(tuple(2.0 * i for i in range(n)), tuple(len(h) * 512 - 10 for h in hashes), (5,) * n, block_hashes=tuple(hashes))
    sim, fins, _, _ = run(trace_scenario(tr, duration_s=2.0 * n + 5, engine=cfg, abort_fraction=0.0))
    cached = {int(f.request_id.split("-")[1]): f.num_cached_tokens for _, f in fins}
    assert cached[1] == 8 * 512
    assert cached[n - 1] == 0, "the shared prefix was evicted (LRU bounded by the KV budget)"
    assert sim.prefix_cache_blocks <= 2048 * 16 // 512
    # the same trace with a roomy cache keeps it
    sim, fins, _, _ = run(trace_scenario(tr, duration_s=2.0 * n + 5, abort_fraction=0.0))
    assert {int(f.request_id.split("-")[1]): f.num_cached_tokens for _, f in fins}[n - 1] == 8 * 512


def test_burstgpt_failed_rows_finish_as_errors(tmp_path):
    rows = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    for i in range(40):
        rows.append(f"{0.25 * i},ChatGPT,{300 + i},{0 if i % 4 == 0 else 40 + i},{340 + i},Conversation log")
    tr = load_trace(write(tmp_path, "burst.csv", "\n".join(rows) + "\n"))
    assert tr.failed_count == 10
    sim, fins, _, _ = run(trace_scenario(tr, duration_s=30.0, abort_fraction=0.0))
    by_prompt = {f.num_prompt_tokens: f for _, f in fins}
    assert len(by_prompt) == 40
    for i in range(40):
        f = by_prompt[300 + i]
        if i % 4 == 0:
            assert f.finish_reason is FinishReason.ERROR and f.num_generation_tokens == 1
        else:
            assert f.finish_reason is FinishReason.STOP and f.num_generation_tokens == 40 + i
    assert sim.finished_by_reason[FinishReason.ERROR] == 10


# --------------------------------------------------------------------------- faults on a trace


def test_traffic_surge_on_a_trace_warps_time_without_duplicates():
    n = 1000
    tr = TraceArrivals(tuple(0.1 * i for i in range(n)), (100,) * n, tuple(range(1, n + 1)))  # 10 req/s, output = id
    out = pull_all(tr, 100.0, rate_mult=lambda t: 2.0 if 30.0 <= t < 50.0 else 1.0)
    ids = [a[2] for a in out]
    assert ids == list(range(1, n + 1)), "every request exactly once, in order"
    times = np.array([a[0] for a in out])
    assert np.all(np.diff(times) >= 0)
    count = lambda a, b: int(np.sum((times >= a) & (times < b)))
    assert count(10, 30) == pytest.approx(200, abs=2)
    assert count(30, 50) == pytest.approx(400, abs=2), "twice the rate during the surge"
    assert count(55, 75) == pytest.approx(200, abs=2), "back to the base rate after it"
    assert times[-1] == pytest.approx(99.9 - 20.0, abs=0.02), "the replay ends 20 s sooner"


def test_traffic_surge_fault_on_a_trace_in_the_engine():
    tr = poisson_trace(6000, 20.0, seed=8)
    surge = Fault(FaultKind.TRAFFIC_SURGE, 60.0, 60.0, 2.0)
    sim, fins, _, arrivals = run(trace_scenario(tr, [surge], duration_s=tr.span_s))
    rate = lambda a, b: sum(x.count for t, x in arrivals if a <= t < b) / (b - a)
    assert 1.8 < rate(65, 120) / rate(5, 60) < 2.2
    assert 0.8 < rate(130, 200) / rate(5, 60) < 1.2
    assert sum(x.count for _, x in arrivals) == 6000, "each trace request arrives once"
    assert sim.fault_log[0].fault.kind is FaultKind.TRAFFIC_SURGE


def _trace_with(kind: FaultKind, magnitude: float | None = None):
    tr = poisson_trace(2400, 20.0, seed=9, prompt=(600.0, 0.7), output=(120.0, 0.6))
    if kind in (FaultKind.KV_EXHAUSTION, FaultKind.GPU_MEMORY_NEIGHBOUR):
        magnitude = 6.0  # this load needs ~a third of the 4096 blocks
    elif kind is FaultKind.BAD_CONFIGURATION:
        magnitude = 32.0  # ~60 sequences run at once here: max_num_seqs / 32 makes a queue
    faults = [Fault(kind, 40.0, math.inf if kind is FaultKind.BAD_DEPLOYMENT else 40.0, magnitude)]
    return trace_scenario(tr, faults, duration_s=100.0, engine=EngineConfig(num_gpu_blocks=4096))


def _key(row):
    t, f = row
    return (round(t, 9), f.request_id, f.finish_reason, f.num_prompt_tokens, f.num_generation_tokens, round(f.e2e_latency, 9))


@pytest.fixture(scope="module")
def trace_baseline():
    return run(trace_scenario(_trace_with(FaultKind.STALL).workload.arrivals, duration_s=100.0, engine=EngineConfig(num_gpu_blocks=4096)))


@pytest.mark.parametrize("kind", list(FaultKind), ids=str)
def test_every_fault_kind_on_a_trace(kind, trace_baseline):
    _, base_fins, _, base_arr = trace_baseline
    sim, fins, pcs, arrivals = run(_trace_with(kind), check_every=5)
    (ev,) = sim.fault_log
    assert ev.fault.kind is kind and 40.0 <= ev.start_time - START < 40.3
    assert [_key(r) for r in fins if r[0] < 40.0] == [_key(r) for r in base_fins if r[0] < 40.0], "identical before the fault"
    window = lambda rows, a=45.0, b=80.0: [f for t, f in rows if a <= t < b]
    during, base = window(fins), window(base_fins)
    e2e = lambda fs: float(np.percentile([f.e2e_latency for f in fs], 95))
    if kind is FaultKind.MEMORY_LEAK:
        assert [_key(r) for r in fins] == [_key(r) for r in base_fins]
        assert sim.memory_bytes > sim.config.process_memory_bytes + 30 * 2**20
    elif kind in (FaultKind.ERROR_BURST, FaultKind.BAD_DEPLOYMENT):
        assert sum(f.finish_reason is FinishReason.ERROR for f in during) > 0.01 * len(during)
        assert not any(f.finish_reason is FinishReason.ERROR for f in base)
    elif kind is FaultKind.TRAFFIC_SURGE:
        count = lambda rows: sum(a.count for t, a in rows if 45.0 <= t < 80.0)
        assert count(arrivals) > 1.8 * count(base_arr)
    elif kind is FaultKind.PROMPT_LENGTH_SHIFT:
        assert np.median([f.num_prompt_tokens for f in during]) > 1.7 * np.median([f.num_prompt_tokens for f in base])
    elif kind is FaultKind.OUTPUT_LENGTH_SHIFT:  # started during the fault: longer targets
        started = lambda rows: [f.num_generation_tokens for t, f in rows if 45.0 <= t - f.e2e_latency < 80.0]
        assert np.mean(started(fins)) > 1.3 * np.mean(started(base_fins))
    elif kind is FaultKind.CLIENT_ERROR_BURST:  # the clients abandon requests; the engine does not fail them
        assert sum(f.finish_reason is FinishReason.ABORT for f in during) > 0.05 * len(during)
        assert not any(f.finish_reason is FinishReason.ERROR for f in during)
    elif kind is FaultKind.PREFIX_CACHE_THRASH:  # shared prefixes stop hitting the cache
        cached = lambda fs: sum(f.num_cached_tokens for f in fs) / max(1, sum(f.num_prompt_tokens for f in fs))
        assert cached(during) < 0.5 * cached(base)
    elif kind is FaultKind.CPU_NOISY_NEIGHBOUR:
        assert e2e(during) > 1.2 * e2e(base), (kind, e2e(during), e2e(base))
    elif kind in (FaultKind.GPU_MEMORY_NEIGHBOUR, FaultKind.BAD_CONFIGURATION):  # less KV / fewer sequences: a queue
        assert e2e(during) > 1.3 * e2e(base), (kind, e2e(during), e2e(base))
    elif kind is FaultKind.STALL:
        assert not [t for t, _ in fins if 40.1 < t < 80.0] and len(base) > 500, "nothing finishes while stalled"
        assert sim.stall_ticks == pytest.approx(40.0 / sim.config.stall_tick_s, abs=2)
        after = [f for t, f in fins if 80.0 <= t < 85.0]
        assert max(f.e2e_latency for f in after) > 30.0, "the backlog waited out the stall"
    else:  # latency_spike, throughput_collapse, kv_exhaustion, gpu_throttling: slower requests
        assert e2e(during) > 1.3 * e2e(base), (kind, e2e(during), e2e(base))
        if kind is FaultKind.KV_EXHAUSTION:
            assert sim.preemptions > 50


def test_trace_scenario_from_a_file_with_faults(tmp_path):
    tr = synthetic_trace(200.0, 6.0, seed=10)
    path = tmp_path / "conv.jsonl"
    write_trace(tr, path, "mooncake")
    sc = trace_scenario(path, [Fault("latency_spike", 50.0, 30.0), Fault("error_burst", 100.0, 30.0)], max_tokens=512)
    assert sc.duration_s == pytest.approx(load_trace(path).span_s + 1.0)
    assert sc.workload.max_tokens == 512 and sc.workload.arrivals.block_hashes
    assert "conv.jsonl" in sc.name and "latency_spike" in sc.description
    sim = EngineSimulator(sc, seed=0)
    summary = sim.run()
    assert [ev.fault.kind.value for ev in sim.fault_log] == ["latency_spike", "error_burst"]
    assert summary.arrived + summary.rejected_too_long == len(tr)
    assert summary.finished_by_reason.get("error", 0) > 0
    sim.check_invariants()
    with pytest.raises(TypeError, match="the trace is the arrivals"):
        trace_scenario(tr, arrivals=tr)


def test_mooncake_jsonl_hashes_reach_the_engine(tmp_path):
    lines = [json.dumps({"timestamp": 500 * i, "input_length": 1500, "output_length": 10, "hash_ids": [1, 2, 3]}) for i in range(5)]
    path = write(tmp_path, "m.jsonl", "\n".join(lines) + "\n")
    sim, fins, _, _ = run(trace_scenario(path, duration_s=10.0, abort_fraction=0.0))
    # equal hashes, equal prompts: everything but the last token is cached (in 16-token engine blocks)
    assert sorted(f.num_cached_tokens for _, f in fins) == [0] + [1488] * 4
