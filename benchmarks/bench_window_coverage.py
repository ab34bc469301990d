"""Does a window mean its length under heavy decode load? (issue 8, #13)

The production runtime (serving SLAs, the engine-stats recorder, the exporter's 5-minute windows,
the HTTP series) is fed through the StatLogger path by a synthetic engine with 256 running requests
and 25 steps a second: 6,400 inter-token latencies a second, 16 requests finishing a second, for
330 s of engine time on a manual clock, evaluated once a second as in production.

Reported: the lowest coverage over every evaluated window (``sla_window_coverage_ratio``), the bytes
held by all rings, and the ITL p50/p95/p99 over the last 300 s against the exact quantiles of every
ITL the engine produced in that window (as ranks: where our value sits in the true distribution),
next to the DKW rank bound stated in the README. Baseline in the same run: the same ITL stream into
the ring the series had before (100 a second over 300 s, not thinned).
Targets: every window covers its full length; all rings <= 16 MB; ITL quantiles within the bound.
"""
from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from _common import T0, fmt_bytes, header, verdict

from aphrodite_sla import ManualClock, SLAManager
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.integrations.asgi import register_http_metrics
from aphrodite_sla.runtime import SLARuntime
from aphrodite_sla.store.thinning import rank_error_bound

RUNNING = 256
STEPS_PER_S = 25
SECONDS = 330
WINDOW_S = 300.0
OUTPUT_TOKENS = 400  # each request decodes for 16 s: 16 finish (and 16 start) a second
TARGET_BYTES = 16e6
CONFIDENCE = 0.99


def finished(rng: np.random.Generator, n: int) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            finish_reason="STOP", e2e_latency=float(rng.lognormal(2.8, 0.2)), queued_time=float(rng.exponential(0.05)),
            prefill_time=float(rng.lognormal(-2.5, 0.4)), decode_time=16.0, mean_time_per_output_token=0.04,
            num_generation_tokens=OUTPUT_TOKENS, num_prompt_tokens=512,
        )
        for _ in range(n)
    ]


def main() -> None:
    header("bench_window_coverage: 256 running requests x 25 steps/s through the StatLogger path")
    rng = np.random.default_rng(11)
    clock = ManualClock(T0)
    rt = SLARuntime(SLAConfig(system_sampler=False), clock=clock)
    register_http_metrics(rt.manager)
    baseline = SLAManager([], clock=clock, anomaly_detection=False)
    baseline.register_metric("itl_ms", WINDOW_S, 100.0, unit="ms")  # the ring before: 30k, not thinned
    baseline.watch_window("itl_ms", WINDOW_S, quantiles=(0.5, 0.95, 0.99))

    dt = 1.0 / STEPS_PER_S
    finishing = RUNNING / (OUTPUT_TOKENS / STEPS_PER_S) / STEPS_PER_S  # requests finishing per step
    itl_times, itl_values = [], []
    started = time.perf_counter()
    carry = 0.0
    for second in range(SECONDS):
        drift = 1.0 + 0.3 * np.sin(second / 40.0)  # the distribution moves: an old window would show it
        for _ in range(STEPS_PER_S):
            clock.advance(dt)
            itl = rng.lognormal(np.log(38.0 * drift), 0.3, RUNNING) / 1000.0  # seconds, as the engine reports
            carry += finishing
            done, carry = int(carry), carry - int(carry)
            it = SimpleNamespace(
                num_generation_tokens=RUNNING, num_prompt_tokens=512 * done, num_preempted_reqs=0,
                time_to_first_tokens_iter=rng.lognormal(-2.3, 0.4, done).tolist(),
                inter_token_latencies_iter=itl.tolist(), finished_requests=finished(rng, done),
            )
            sched = SimpleNamespace(num_running_reqs=RUNNING, num_waiting_reqs=2, kv_cache_usage=0.6, prefix_cache_stats=None)
            rt.recorder.record(sched, it)
            baseline.record_batch("itl_ms", itl * 1000.0, clock())
            itl_times.append(clock())
            itl_values.append(itl * 1000.0)
        rt.manager.evaluate()
        baseline.evaluate()
    elapsed = time.perf_counter() - started
    snap, base = rt.manager.snapshot(), baseline.snapshot()

    now = clock()
    times = np.repeat(np.asarray(itl_times), RUNNING)
    truth = np.sort(np.concatenate(itl_values)[times > now - WINDOW_S])
    print(f"   {SECONDS} s of engine time ({truth.size / WINDOW_S:,.0f} ITL/s) fed in {elapsed:.1f} s; "
          f"ITL keep share {rt.manager.store.keep_probability('itl_ms'):g}")

    worst = min(snap.coverage.items(), key=lambda kv: kv[1])
    print(f"   windows evaluated: {len(snap.coverage)}; lowest coverage {worst[1]:.3f} ({worst[0][0]}, {worst[0][1]:g} s)")
    base_cov = base.coverage[("itl_ms", WINDOW_S)]
    print(f"   baseline (ITL ring of 30k, not thinned): the 300 s window covers {base_cov:.4f} "
          f"= {base_cov * WINDOW_S:.1f} s; ours {snap.coverage[('itl_ms', WINDOW_S)]:.3f} "
          f"= {snap.coverage[('itl_ms', WINDOW_S)] * WINDOW_S:.0f} s ({snap.coverage[('itl_ms', WINDOW_S)] / base_cov:.0f}x)")
    nbytes = rt.manager.store.nbytes
    print(f"   rings: {fmt_bytes(nbytes)} over {len(rt.manager.store.names())} series "
          f"(growing the ITL ring instead would take {fmt_bytes(truth.size * 16)} for ITL alone)")

    w = snap.window("itl_ms", WINDOW_S)
    bound = rank_error_bound(w.samples, CONFIDENCE)
    print(f"   ITL over 300 s: {w.samples:,} kept of {truth.size:,}; DKW rank bound at {CONFIDENCE:.0%}: ±{bound:.4f}")
    worst_rank = 0.0
    for q in (0.5, 0.95, 0.99):
        ours = w.quantiles[q]
        exact = float(np.quantile(truth, q))
        rank = np.searchsorted(truth, ours, side="right") / truth.size
        worst_rank = max(worst_rank, abs(rank - q))
        b = base.window("itl_ms", WINDOW_S).quantiles[q]
        print(f"     p{q * 100:g}: ours {ours:.3f} ms (rank {rank:.4f}, rel err {abs(ours - exact) / exact:.2%}); "
              f"exact {exact:.3f} ms; baseline {b:.3f} ms (rel err {abs(b - exact) / exact:.2%})")

    full = worst[1] >= 1.0
    print(f"   every window covers its full length: {verdict(full)}")
    print(f"   all rings <= {TARGET_BYTES / 1e6:.0f} MB: {fmt_bytes(nbytes)} {verdict(nbytes <= TARGET_BYTES)}")
    print(f"   ITL quantiles within the stated rank bound: worst {worst_rank:.4f} <= {bound:.4f} {verdict(worst_rank <= bound)}")


if __name__ == "__main__":
    main()
