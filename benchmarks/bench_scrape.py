"""Cost of one full scrape of our exporter, and proof that recording allocates nothing in the collector.

Part 1: ``prometheus_client.generate_latest`` on the exporter's registry (the ``SLACollector`` of an
``SLARuntime`` with the default configuration: the seven production SLAs and every engine series,
stall detector attached), every window full (rings wrapped, the steady state of a long-running
server) and a minute of evaluations behind it. Median of many scrapes, timed round-robin with two
baselines built in the same run:
  (a) ``generate_latest`` of a registry holding vLLM-sized metrics built with prometheus_client
      (14 histograms with vLLM v1's default buckets, 12 counters/gauges, one model), i.e. what the
      engine's own /metrics costs;
  (b) the same scrape of our collector with the exact-quantile family taken out, to show where the
      time goes.
Target: median full scrape <= 5 ms.

Part 2: tracemalloc around many ``record_batch`` calls (the engine's hot path) with the collector
registered: the allocations attributed to ``aphrodite_sla/export/collector.py`` must be zero (the
collector does nothing per sample; it reads the published snapshot at scrape time only).

Part 3: 50 concurrent scrapers (threads of another process, each scraping ``/metrics`` of the
standalone exporter — itself a server process fed by this one — once a second, closed loop)
while a simulated engine steps as fast as it can in this process, with the stall detector
publishing every second and an evaluation every 5 seconds. Baseline: the same engine loop without
scrapers, in the same run. Targets: scrape p99 <= 50 ms, engine slowed <= 5%. A flood (the same
scrapers with no pause) is shown for information.
"""
from __future__ import annotations

import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from _common import T0, fill_full, fill_series, fmt_bytes, fmt_ns, header, interleaved_medians, verdict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from aphrodite_sla import ManualClock
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.export import collector as collector_mod
from aphrodite_sla.export.collector import SLACollector
from aphrodite_sla.runtime import SLARuntime

TARGET_SCRAPE_NS = 5e6
ROUNDS = 101
EVALUATIONS = 12  # one minute of 5 s evaluations before timing
RECORD_CALLS = 20_000
BATCH = 64

# vLLM v1 defaults (vllm/v1/metrics/buckets.py and loggers.py)
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
REQUEST_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0]


def _one_two_five(max_value: int) -> list[float]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max_value."""
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return out
            out.append(float(v))
        exp += 1


def vllm_sized_registry(rng: np.random.Generator) -> CollectorRegistry:
    """What vLLM's PrometheusStatLogger registers for one model (v1, default options)."""
    reg = CollectorRegistry()
    lab = ["model_name", "engine"]
    key = ("bench-model", "0")
    tokens = _one_two_five(4096)
    hists = {
        "vllm:time_to_first_token_seconds": TTFT_BUCKETS,
        "vllm:inter_token_latency_seconds": ITL_BUCKETS,
        "vllm:time_per_output_token_seconds": ITL_BUCKETS,
        "vllm:e2e_request_latency_seconds": REQUEST_LATENCY_BUCKETS,
        "vllm:request_queue_time_seconds": REQUEST_LATENCY_BUCKETS,
        "vllm:request_inference_time_seconds": REQUEST_LATENCY_BUCKETS,
        "vllm:request_prefill_time_seconds": REQUEST_LATENCY_BUCKETS,
        "vllm:request_decode_time_seconds": REQUEST_LATENCY_BUCKETS,
        "vllm:iteration_tokens_total": [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
        "vllm:request_prompt_tokens": tokens,
        "vllm:request_generation_tokens": tokens,
        "vllm:request_max_num_generation_tokens": tokens,
        "vllm:request_params_n": [1, 2, 5, 10, 20],
        "vllm:request_params_max_tokens": tokens,
    }
    for name, buckets in hists.items():
        h = Histogram(name, name, labelnames=lab, buckets=buckets, registry=reg)
        for v in rng.lognormal(0.0, 1.0, 200):
            h.labels(*key).observe(float(v))
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:engine_sleep_state"):
        Gauge(name, name, labelnames=lab, registry=reg).labels(*key).set(1.0)
    for name in ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:prefix_cache_queries", "vllm:prefix_cache_hits",
                 "vllm:num_preemptions"):
        Counter(name, name, labelnames=lab, registry=reg).labels(*key).inc(1000)
    success = Counter("vllm:request_success", "finished", labelnames=lab + ["finished_reason"], registry=reg)
    for reason in ("stop", "length", "abort", "error"):
        success.labels(*key, reason).inc(10)
    Gauge("vllm:cache_config_info", "cache config", labelnames=["block_size", "num_gpu_blocks"], registry=reg).labels("16", "8192").set(1)
    return reg


def build_runtime(rng: np.random.Generator) -> tuple[SLARuntime, ManualClock]:
    clock = ManualClock(T0)
    runtime = SLARuntime(SLAConfig(system_sampler=False), clock=clock)
    mgr = runtime.manager
    now = fill_full(mgr, clock, rng)
    for _ in range(EVALUATIONS):  # a minute of steady state: 5 s of samples, one evaluation
        clock.set(now + 5.0)
        for name in mgr.store.names():
            fill_series(mgr, name, rng, now, now + 5.0)
        now += 5.0
        mgr.evaluate(now)
    return runtime, clock


class _WithoutQuantiles(SLACollector):
    def _window_families(self, snap):  # type: ignore[override]
        return iter(())


def main() -> None:
    header("bench_scrape: one full /metrics scrape; allocations of the collector while recording")
    rng = np.random.default_rng(3)
    runtime, clock = build_runtime(rng)
    mgr = runtime.manager
    total_samples = sum(mgr.store.buffer(n).capacity for n in mgr.store.names())
    print(f"   default configuration: {len(mgr.thresholds)} SLAs, {len(mgr.store.names())} series, "
          f"windows full ({total_samples:,} samples held, {fmt_bytes(mgr.store.nbytes)})")

    ours = CollectorRegistry(auto_describe=False)
    ours.register(SLACollector(mgr.snapshot, model_name="bench-model"))
    no_q = CollectorRegistry(auto_describe=False)
    no_q.register(_WithoutQuantiles(mgr.snapshot, model_name="bench-model"))
    vllm = vllm_sized_registry(rng)

    body = generate_latest(ours)
    vbody = generate_latest(vllm)
    n_ours = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    n_vllm = sum(1 for line in vbody.splitlines() if line and not line.startswith(b"#"))
    print(f"   our exposition: {n_ours} samples, {len(body):,} bytes; vLLM-sized baseline: {n_vllm} samples, {len(vbody):,} bytes")

    med = interleaved_medians({
        "ours": (lambda: generate_latest(ours), 1),
        "ours_no_quantiles": (lambda: generate_latest(no_q), 1),
        "vllm": (lambda: generate_latest(vllm), 1),
    }, rounds=ROUNDS, warmup=5)
    print("\n   median of", ROUNDS, "scrapes (generate_latest, GC off, round-robin):")
    print(f"     ours, full scrape                      {fmt_ns(med['ours']):>10}   ({med['ours'] / med['vllm']:.2f}x the vLLM-sized baseline)")
    print(f"     ours without the exact-quantile family  {fmt_ns(med['ours_no_quantiles']):>10}")
    print(f"     exact quantiles (5 series x 3, 5 min)   {fmt_ns(med['ours'] - med['ours_no_quantiles']):>10}")
    print(f"     baseline: vLLM-sized registry           {fmt_ns(med['vllm']):>10}")
    print(f"   target: full scrape <= {fmt_ns(TARGET_SCRAPE_NS)}: {verdict(med['ours'] <= TARGET_SCRAPE_NS)}")

    # -- part 2: allocations while recording, collector registered -----------------------------
    series = ["request_latency_ms", "ttft_ms", "itl_ms", "request_error_percent"]
    batches = [rng.lognormal(3.0, 0.5, BATCH) for _ in range(64)]
    now = clock()
    times = [np.linspace(now + i * 0.01, now + i * 0.01 + 0.0099, BATCH) for i in range(RECORD_CALLS)]
    clock.set(now + RECORD_CALLS * 0.01 + 1.0)
    record = mgr.record_batch
    for i in range(200):  # warm-up (first-call caches)
        record(series[i % 4], batches[i % 64], times[i])
    collector_file = os.path.abspath(collector_mod.__file__)
    tracemalloc.start(25)
    before = tracemalloc.take_snapshot()
    for i in range(200, RECORD_CALLS):
        record(series[i % 4], batches[i % 64], times[i])
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    filt = [tracemalloc.Filter(True, collector_file)]
    diff = after.filter_traces(filt).compare_to(before.filter_traces(filt), "filename")
    col_bytes = sum(d.size_diff for d in diff)
    col_blocks = sum(d.count_diff for d in diff)
    pkg = [tracemalloc.Filter(True, os.path.join(os.path.dirname(os.path.dirname(collector_file)), "*"))]
    pkg_diff = after.filter_traces(pkg).compare_to(before.filter_traces(pkg), "filename")
    pkg_bytes = sum(d.size_diff for d in pkg_diff)
    # control: the same filter does see the collector's allocations when it runs (one collect(),
    # its families held while the snapshot is taken)
    coll = SLACollector(mgr.snapshot, model_name="bench-model")
    tracemalloc.start(25)
    before_c = tracemalloc.take_snapshot()
    held = list(coll.collect())
    after_c = tracemalloc.take_snapshot()
    tracemalloc.stop()
    ctrl = sum(d.size_diff for d in after_c.filter_traces(filt).compare_to(before_c.filter_traces(filt), "filename"))
    del held
    n = RECORD_CALLS - 200
    print(f"\n   {n:,} record_batch calls of {BATCH} samples ({n * BATCH:,} samples) with the collector registered:")
    print(f"     allocated in export/collector.py:  {col_bytes} B in {col_blocks} blocks")
    print(f"     net allocated anywhere in aphrodite_sla: {fmt_bytes(pkg_bytes)} (ring buffers are preallocated)")
    print(f"     control, one collect() with its families held: {fmt_bytes(ctrl)} in export/collector.py (the filter works)")
    print(f"   target: nothing allocated in the collector while recording: {verdict(col_bytes == 0 and col_blocks == 0)}")


    concurrent_scrapers(runtime)


SCRAPERS = 50
LOAD_S = 8.0
TARGET_P99_S = 0.050
TARGET_SLOWDOWN = 1.05


def _scrape_loop(url: str, until: float, pause_s: float, out) -> None:  # runs in the scraper process
    import time as _t
    import urllib.request as _u

    lat, errors = [], 0
    while _t.time() < until:
        t0 = _t.perf_counter()
        try:
            with _u.urlopen(url, timeout=10) as r:
                r.read()
                if r.status != 200:
                    errors += 1
        except Exception:
            errors += 1
        lat.append(_t.perf_counter() - t0)
        if pause_s:
            _t.sleep(max(0.0, pause_s - (_t.perf_counter() - t0)))
    out.put((lat, errors))


def _scrapers(url: str, until: float, pause_s: float, out) -> None:  # the scraper process
    import threading as _th

    threads = [_th.Thread(target=_scrape_loop, args=(url, until, pause_s, out)) for _ in range(SCRAPERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _engine_steps(runtime: SLARuntime, sim, seconds: float) -> float:
    """Steps per wall second of a simulated engine feeding our StatLogger path, with the stall
    detector every wall second and an evaluation every 5 (as the runtime's timers would; on this
    thread, so both runs pay for them alike). The engine runs faster than real time."""
    import time

    record = runtime.recorder.record
    start = time.perf_counter()
    next_check, next_eval, end = start + 1.0, start + 5.0, start + seconds
    steps = 0
    while (wall := time.perf_counter()) < end:
        out = sim.step()
        if out is not None:
            record(*out)
        steps += 1
        if wall >= next_check:
            next_check += 1.0
            runtime.stall.check(sim.clock())
        if wall >= next_eval:
            next_eval += 5.0
            runtime.manager.evaluate(sim.clock())
    return steps / seconds


def concurrent_scrapers(runtime: SLARuntime) -> None:
    import multiprocessing as mp
    import time

    from aphrodite_sla.export.server import start_exporter
    from aphrodite_sla.sim import EngineSimulator, get_scenario

    sim = EngineSimulator(get_scenario("steady").with_(duration_s=1e9), seed=1)
    rt = SLARuntime(SLAConfig(system_sampler=False), clock=sim.clock)  # a fresh runtime on the engine's clock
    server, port, _ = start_exporter(rt.manager, 0, model_name="bench-model")
    url = f"http://127.0.0.1:{port}/metrics"
    print(f"\n   {SCRAPERS} concurrent scrapers of {url} against a simulated engine in this process ({LOAD_S:.0f} s each):")
    ctx = mp.get_context("spawn")
    try:
        results = {}
        for label, pause in (("scrape every 1 s", 1.0), ("flood (no pause, info)", 0.0)):
            base = _engine_steps(rt, sim, LOAD_S)
            q = ctx.Queue()
            p = ctx.Process(target=_scrapers, args=(url, time.time() + LOAD_S + 2.0, pause, q))
            p.start()
            time.sleep(1.0)  # the scrapers are up
            loaded = _engine_steps(rt, sim, LOAD_S)
            lat, errors = [], 0
            for _ in range(SCRAPERS):
                got_lat, got_err = q.get(timeout=120)
                lat += got_lat
                errors += got_err
            p.join(60)
            lat_a = np.array(lat)
            slowdown = base / loaded
            results[label] = (lat_a, errors, slowdown)
            print(f"     {label:<24} {lat_a.size:6d} scrapes, p50 {np.percentile(lat_a, 50) * 1000:6.1f} ms, "
                  f"p99 {np.percentile(lat_a, 99) * 1000:7.1f} ms, errors {errors}; engine {base:,.0f} -> {loaded:,.0f} "
                  f"steps/s (slowed {100 * (slowdown - 1):+.1f}%)")
        lat_a, errors, slowdown = results["scrape every 1 s"]
        p99 = float(np.percentile(lat_a, 99))
        print(f"   target: scrape p99 <= {TARGET_P99_S * 1000:.0f} ms: {verdict(p99 <= TARGET_P99_S)}; "
              f"engine slowed <= {100 * (TARGET_SLOWDOWN - 1):.0f}%: {verdict(slowdown <= TARGET_SLOWDOWN)}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
