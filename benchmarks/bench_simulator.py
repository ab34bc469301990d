"""The engine simulator's speed: microseconds per engine step and an hour of engine time in wall
seconds, against real time (the baseline: the engine itself takes 3600 s for that hour).

Why it matters: the simulator drives the demo, the tests and the benchmarks of detection, RCA and
recovery; an hour of engine time must take seconds, not minutes (target: <= 30 s on this 2-core
machine, ratio >= 120x real time).

Then trace replay: one hour of a generated trace in the shape of the public ones (~4 requests/s,
bursty gamma gaps, heavy-tailed lognormal prompts with conversational prefix reuse, 2% failed
requests) written in each trace format, loaded through that format's loader and replayed for
3600 s of engine time (wall seconds for load + replay against the 3600 s baseline, same target);
the capacity measurement behind ``time_scale_for_load``; and the same hour compressed to 60% of
the engine's capacity for its mix.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import header, verdict

from aphrodite_sla.sim import SCENARIOS, EngineSimulator, load_trace, measure_capacity, time_scale_for_load, trace_scenario
from aphrodite_sla.sim.traces import synthetic_trace, write_trace

TARGET_HOUR_WALL_S = 30.0
HOUR_S = 3600.0


def _replay(trace, label: str, load_s: float = 0.0) -> None:
    sim = EngineSimulator(trace_scenario(trace, duration_s=HOUR_S), seed=0)
    out = sim.run()
    total = load_s + out.wall_s
    print(f"  {label:<24} load {load_s:5.2f} s + replay {out.wall_s:5.2f} s = {total:5.2f} s wall for {out.engine_s:,.0f} s "
          f"({HOUR_S / total:,.0f}x real time; {out.steps:,} steps, {out.arrived:,} requests, "
          f"{out.rejected_too_long:,} rejected too long, {out.finished_by_reason.get('error', 0):,} errors); "
          f"target <= {TARGET_HOUR_WALL_S:.0f} s: {verdict(total <= TARGET_HOUR_WALL_S)}")


def main() -> None:
    header("bench_simulator: continuous-batching engine simulator")
    sim = EngineSimulator(SCENARIOS["steady"], seed=0)
    sim.run(120.0)  # a full batch
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        sim.step()
    per_step = (time.perf_counter() - t0) / n
    print(f"one step with ~{sim.num_running} running requests: {per_step * 1e6:.1f} us")
    hour = EngineSimulator(SCENARIOS["steady"].with_(duration_s=HOUR_S), seed=0)
    out = hour.run()
    ratio = out.engine_s / out.wall_s
    print(f"one hour of engine time ({out.steps:,} steps, {out.arrived:,} requests): {out.wall_s:.2f} s wall, "
          f"{ratio:,.0f}x real time; target <= {TARGET_HOUR_WALL_S:.0f} s: {verdict(out.wall_s <= TARGET_HOUR_WALL_S)}")

    trace = synthetic_trace(HOUR_S, 4.0, seed=0, failed_fraction=0.02)
    print(f"\nreplaying one hour of a generated public-shaped trace ({len(trace):,} requests, {trace.mean_rate:.2f} req/s, "
          f"{trace.failed_count:,} failed) through each loader:")
    with tempfile.TemporaryDirectory() as tmp:
        no_failures = trace.with_(output_tokens=tuple(max(1, o) for o in trace.output_tokens))  # our CSV has none
        for fmt, name, tr in (
            ("csv", "trace.csv", no_failures),
            ("azure", "AzureLLMInferenceTrace_conv.csv", trace),
            ("mooncake", "mooncake_trace.jsonl", trace),
            ("burstgpt", "BurstGPT_1.csv", trace),
        ):
            path = os.path.join(tmp, name)
            write_trace(tr, path, fmt)
            t0 = time.perf_counter()
            loaded = load_trace(path)
            load_s = time.perf_counter() - t0
            _replay(loaded, f"{fmt} ({os.path.getsize(path) / 2**20:.1f} MiB)", load_s)

    t0 = time.perf_counter()
    cap = measure_capacity(trace)
    scale = time_scale_for_load(trace, 0.6, capacity=cap)
    cap_s = time.perf_counter() - t0
    print(f"\ncapacity for the trace's mix: {cap.requests_per_s:.1f} req/s ({cap.rejected_fraction:.1%} too long), measured in "
          f"{cap_s:.2f} s wall ({cap.requests:,} requests, {cap.engine_s:.0f} s saturated); 60% load: time_scale {scale:.3f}")
    _replay(trace.with_(time_scale=scale, loop=True), "at 0.6 load (looped)")


if __name__ == "__main__":
    main()
