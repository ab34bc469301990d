"""Our vLLM StatLogger against vLLM's own ``PrometheusStatLogger``, in one process, on the same real
``SchedulerStats`` / ``IterationStats`` / ``FinishedRequestStats`` objects.

Run with the engine venv (``scripts/engine_venv.sh``)::

    .venv-engines/bin/python benchmarks/bench_statlogger.py [--duration 20] [--steps 250] [--rounds 21]

Without vLLM it says so and exits 0.

Part 1, cost per engine step (median over rounds of ``--steps`` steps each, GC off):
  * ``record()``: what the engine's event loop pays. Ours only keeps references to the step's
    stats (plus the stall detector's O(1) update); target <= 0.25x vLLM's ``record()``.
  * ``flush()`` / steps: our deferred cost per step (reading the stats into the ring buffers),
    paid on the evaluator thread, not the event loop. Shown separately, and the total
    (record + flush) ratio too, so nothing is hidden. ``--steps`` 250 = one 5 s evaluation
    interval at 50 steps/s.
  Two steps: decode (64 inter-token latencies, 2 TTFTs, 2 finished requests) and prefill-heavy
  (16 TTFTs, 8 finished, 4 inter-token latencies).

Part 2, monitor CPU share at 50 steps/s: the runtime started as in a server (evaluator every 5 s,
stall detector, system sampler), our ``record()`` called at 50 Hz for ``--duration`` s of wall time.
CPU of our threads (psutil per-thread times) + ``record()``'s CPU on the calling thread
(``time.thread_time``), over wall time; target <= 0.3 %. Cross-checked against the process CPU of a
baseline run of the same 50 Hz loop without monitoring. The evaluator's one-time start-up (numba
kernels loaded or compiled) is reported apart.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # the repo root, when the package is not installed

import numpy as np
from _common import fmt_ns, header, verdict

TARGET_RECORD_RATIO = 0.25
TARGET_CPU_SHARE = 0.003
STEP_HZ = 50.0
NS = types.SimpleNamespace


def vllm_config(model: str = "bench-model") -> NS:
    """What StatLoggerManager / PrometheusStatLogger read (shared ENGINES.md); a real VllmConfig
    has no model config on a CPU-only machine."""
    return NS(
        model_config=NS(served_model_name=model, max_model_len=4096, is_diffusion=False),
        observability_config=NS(show_hidden_metrics=False, kv_cache_metrics=False, custom_histogram_buckets=None,
                                cudagraph_metrics=False, enable_mfu_metrics=False),
        speculative_config=None, kv_transfer_config=None, ec_transfer_config=None, lora_config=None,
        watermark_config=None,
        cache_config=NS(num_gpu_blocks=8192, metrics_info=lambda: {"block_size": "16"}),
        device_config=NS(device_type="cpu"),
    )


def make_step(api: NS, rng: np.random.Generator, *, n_ttft: int, n_itl: int, n_finished: int, running: int):
    sched = api.SchedulerStats(num_running_reqs=running, num_waiting_reqs=4, kv_cache_usage=0.62)
    sched.prefix_cache_stats = api.PrefixCacheStats(requests=n_ttft, queries=512 * n_ttft, hits=200 * n_ttft)
    it = api.IterationStats()
    it.time_to_first_tokens_iter = rng.lognormal(np.log(0.3), 0.5, n_ttft).tolist()
    it.inter_token_latencies_iter = rng.lognormal(np.log(0.03), 0.3, n_itl).tolist()
    it.num_generation_tokens = n_itl + n_ttft
    it.prompt_token_stats.total = 512 * n_ttft
    reasons = [api.FinishReason.STOP, api.FinishReason.LENGTH]
    for i in range(n_finished):
        e2e = float(rng.lognormal(np.log(2.0), 0.4))
        it.finished_requests.append(api.FinishedRequestStats(
            finish_reason=reasons[i % 2], request_id=f"r{i}", e2e_latency=e2e, num_prompt_tokens=512,
            num_generation_tokens=128, queued_time=0.05, prefill_time=0.2, inference_time=e2e - 0.05,
            decode_time=e2e - 0.25, mean_time_per_output_token=(e2e - 0.25) / 127, num_cached_tokens=200,
        ))
    return sched, it


def bench_step(name: str, prom, ours, recorder, step, steps: int, rounds: int) -> dict[str, float]:
    sched, it = step

    def run_prom() -> None:
        for _ in range(steps):
            prom.record(sched, it, None, 0)

    def run_ours() -> None:
        for _ in range(steps):
            ours.record(sched, it, None, 0)

    for _ in range(2):  # warm-up (and the series' first samples)
        run_prom()
        run_ours()
        recorder.flush()
    prom_ns, rec_ns, flush_ns = [], [], []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            run_prom()
            t1 = time.perf_counter_ns()
            run_ours()
            t2 = time.perf_counter_ns()
            flushed = recorder.flush()
            t3 = time.perf_counter_ns()
            assert flushed == steps, (flushed, steps)
            prom_ns.append((t1 - t0) / steps)
            rec_ns.append((t2 - t1) / steps)
            flush_ns.append((t3 - t2) / steps)
    finally:
        if enabled:
            gc.enable()
    p, r, f = statistics.median(prom_ns), statistics.median(rec_ns), statistics.median(flush_ns)
    print(f"-- {name}")
    print(f"   vLLM PrometheusStatLogger.record()   {fmt_ns(p):>10} / step")
    print(f"   ours SLAStatLogger.record()          {fmt_ns(r):>10} / step   ratio {r / p:.3f}x  "
          f"(target <= {TARGET_RECORD_RATIO}x: {verdict(r / p <= TARGET_RECORD_RATIO)})")
    print(f"   ours deferred flush() / steps        {fmt_ns(f):>10} / step   (evaluator thread, {steps} steps a flush)")
    print(f"   ours total record + flush            {fmt_ns(r + f):>10} / step   ratio {(r + f) / p:.3f}x")
    return {"prom": p, "record": r, "flush": f}


def thread_cpu(prefix: str = "aphrodite-sla") -> dict[str, float]:
    """CPU seconds of this process's live threads whose name starts with ``prefix``: each thread's
    own CPU-time clock (ns resolution) where the platform has one, else psutil (clock ticks)."""
    threads = [t for t in threading.enumerate() if t.name.startswith(prefix) and t.ident is not None]
    out: dict[str, float] = {}
    try:
        for t in threads:
            out[t.name] = out.get(t.name, 0.0) + time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        return out
    except (AttributeError, OSError):
        out.clear()
    import psutil

    by_native = {t.native_id: t.name for t in threads}
    for pt in psutil.Process().threads():
        name = by_native.get(pt.id)
        if name is not None:
            out[name] = out.get(name, 0.0) + pt.user_time + pt.system_time
    return out


def process_cpu() -> float:
    import psutil

    c = psutil.Process().cpu_times()
    return c.user + c.system


def paced_loop(duration: float, fn) -> tuple[float, float, int]:
    """Call ``fn()`` at STEP_HZ for ``duration`` s; returns (wall s, CPU s spent inside fn on this
    thread, calls)."""
    period = 1.0 / STEP_HZ
    start = time.perf_counter()
    nxt = start
    inside = 0.0
    n = 0
    while True:
        now = time.perf_counter()
        if now - start >= duration:
            break
        if nxt > now:
            time.sleep(nxt - now)
        c0 = time.thread_time()
        fn()
        inside += time.thread_time() - c0
        n += 1
        nxt += period
    return time.perf_counter() - start, inside, n


def cpu_share(api: NS, prom, step, duration: float) -> None:
    from aphrodite_sla import runtime as runtime_mod
    from aphrodite_sla.integrations.vllm import SLAStatLogger

    sched, it = step
    print(f"-- monitor CPU share at {STEP_HZ:.0f} steps/s, {duration:.0f} s of wall time each run (decode step)")
    # baseline: the same paced loop, nothing monitored
    runtime_mod.reset_runtime()
    p0 = process_cpu()
    wall_b, probe_cpu, n_b = paced_loop(duration, lambda: None)
    probe_per_step = probe_cpu / max(n_b, 1)  # two thread_time() reads + a call, woken from sleep
    base_cpu = process_cpu() - p0

    runtime_mod.reset_runtime()
    rt = runtime_mod.get_runtime()
    ours = SLAStatLogger(vllm_config(), 0)
    t_start = time.perf_counter()
    c_start = thread_cpu()
    ours.log_engine_initialized()
    deadline = time.monotonic() + 300
    while rt.manager.evaluator_stats.evaluations < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    warm_s = time.perf_counter() - t_start
    warm_cpu = sum(thread_cpu().values()) - sum(c_start.values())
    threads = sorted(thread_cpu())
    print(f"   runtime started: threads {', '.join(threads)}; system sampler "
          f"{'on' if rt.system is not None else 'off'}, evaluation every {rt.manager.evaluation_interval_s:g} s")
    print(f"   one-time start-up (numba kernels, first evaluation): {warm_s:.2f} s wall, {warm_cpu:.2f} s CPU")

    c0 = thread_cpu()
    p0 = process_cpu()
    evals0 = rt.manager.evaluator_stats.evaluations
    wall, record_cpu, n = paced_loop(duration, lambda: ours.record(sched, it, None, 0))
    p1 = process_cpu()
    c1 = thread_cpu()
    evals = rt.manager.evaluator_stats.evaluations - evals0
    per_thread = {k: c1.get(k, 0.0) - c0.get(k, 0.0) for k in sorted(set(c0) | set(c1))}
    threads_cpu = sum(per_thread.values())
    share = (threads_cpu + record_cpu) / wall
    net_record = max(record_cpu - probe_per_step * n, 0.0)
    net_share = (threads_cpu + net_record) / wall
    print(f"   steps {n} in {wall:.2f} s ({n / wall:.1f}/s), {evals} evaluations; baseline loop {n_b} steps in {wall_b:.2f} s")
    print("   (a call made right after a 20 ms sleep runs with cold caches: it costs far more than in the")
    print("   tight loop of part 1, for every logger alike; see the vLLM reference line below)")
    for k, v in per_thread.items():
        print(f"   {k:<32} {v * 1e3:8.1f} ms CPU")
    print(f"   {'record() on the calling thread':<32} {record_cpu * 1e3:8.1f} ms CPU "
          f"({record_cpu / max(n, 1) * 1e6:.1f} us/step as measured; the same probe around a no-op "
          f"reads {probe_per_step * 1e6:.1f} us/step)")
    print(f"   monitor CPU share: {share * 100:.3f} % of one core as measured, {net_share * 100:.3f} % net of the "
          f"probe (target <= {TARGET_CPU_SHARE * 100:.1f} %: {verdict(net_share <= TARGET_CPU_SHARE)}"
          f"{'' if share <= TARGET_CPU_SHARE else ', not met before the probe is subtracted'})")
    delta = (p1 - p0) / wall - base_cpu / wall_b
    print(f"   cross-check, whole process: {(p1 - p0) / wall * 100:.3f} % monitored vs {base_cpu / wall_b * 100:.3f} % "
          f"baseline loop -> +{delta * 100:.3f} %")
    runtime_mod.reset_runtime()

    ref_s = max(duration / 4, 1.0)
    wall_p, prom_cpu, n_p = paced_loop(ref_s, lambda: prom.record(sched, it, None, 0))
    print(f"   reference, vLLM PrometheusStatLogger.record() paced the same way for {ref_s:.0f} s: "
          f"{prom_cpu / max(n_p, 1) * 1e6:.1f} us/step as measured, {prom_cpu / wall_p * 100:.3f} % of one core")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of wall time per CPU-share run")
    ap.add_argument("--steps", type=int, default=250, help="steps per timed round (and per flush)")
    ap.add_argument("--rounds", type=int, default=21, help="timed rounds per step kind")
    args = ap.parse_args()
    header("bench_statlogger: our StatLogger vs vLLM's PrometheusStatLogger on real stats objects")
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    t0 = time.perf_counter()
    try:
        import vllm
        from vllm.v1.engine import FinishReason
        from vllm.v1.metrics import loggers, stats
    except Exception as err:
        print(f"   vLLM is not importable here ({type(err).__name__}: {err}); nothing to compare.")
        print("   Build the engine venv with scripts/engine_venv.sh and run "
              ".venv-engines/bin/python benchmarks/bench_statlogger.py")
        return 0
    print(f"   vllm {vllm.__version__} imported in {time.perf_counter() - t0:.1f} s")
    api = NS(SchedulerStats=stats.SchedulerStats, IterationStats=stats.IterationStats,
             FinishedRequestStats=stats.FinishedRequestStats, PrefixCacheStats=stats.PrefixCacheStats,
             FinishReason=FinishReason)

    from aphrodite_sla import runtime as runtime_mod
    from aphrodite_sla.integrations.vllm import SLAStatLogger

    runtime_mod.reset_runtime()
    rt = runtime_mod.get_runtime()  # not started: no evaluator flushing behind our back here
    prom = loggers.PrometheusStatLogger(vllm_config(), [0])
    ours = SLAStatLogger(vllm_config(), 0)
    rng = np.random.default_rng(7)
    decode = make_step(api, rng, n_ttft=2, n_itl=64, n_finished=2, running=64)
    prefill = make_step(api, rng, n_ttft=16, n_itl=4, n_finished=8, running=32)
    print(f"   {args.rounds} rounds x {args.steps} steps per kind, medians; GC off while timing")
    bench_step("decode step: 64 ITLs, 2 TTFTs, 2 finished", prom, ours, rt.recorder, decode, args.steps, args.rounds)
    bench_step("prefill-heavy step: 16 TTFTs, 8 finished, 4 ITLs", prom, ours, rt.recorder, prefill, args.steps, args.rounds)
    drops = rt.manager.store.dropped_total()
    bad = rt.recorder.counters.bad_steps + rt.recorder.counters.record_errors + ours.record_errors
    print(f"   sanity: {rt.recorder.counters.steps_flushed} steps flushed, {bad} unreadable, {drops} samples dropped")
    runtime_mod.reset_runtime()
    cpu_share(api, prom, decode, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
