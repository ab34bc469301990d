"""Cost of recording samples (the engine's hot path) vs ``prometheus_client.Histogram.observe``.

Measures, per call and per sample:
  * ``SLAManager.record_measurement(sla_name, v)``  (one sample, routed SLA name -> series)
  * ``MetricStore.record(series, v)``                (one sample, no routing)
  * ``SLAManager.record_batch(series, 64 values)``   (numpy array and Python list inputs)
against ``Histogram.observe(v)`` on a fresh ``CollectorRegistry`` (vLLM's e2e-latency buckets),
all in this process. Target (issue): a batched sample costs <= 0.25x one observe.
Times include the Python ``for`` loop that drives the calls (the same loop for every variant).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from _common import T0, fmt_ns, header, interleaved_medians, verdict
from prometheus_client import CollectorRegistry, Histogram

from aphrodite_sla import ManualClock, create_production_sla_manager, system_clock

TARGET_BATCH = 0.25
N_SINGLE = 5_000  # calls per timed loop
BATCH = 64
N_BATCHES = 250  # batches per timed loop
REPEATS = 31
VLLM_E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]


def main() -> None:
    header("bench_record: cost of recording one sample / a batch of 64")
    rng = np.random.default_rng(1)
    lat_s = rng.lognormal(np.log(1.5), 0.6, N_SINGLE)  # e2e latency in seconds (for Prometheus)
    lat_ms_list = (lat_s * 1000.0).tolist()  # Python floats, as an engine has them
    lat_s_list = lat_s.tolist()
    batches_np = [rng.lognormal(np.log(1500.0), 0.6, BATCH) for _ in range(N_BATCHES)]
    batches_list = [b.tolist() for b in batches_np]

    # -- baseline: prometheus_client Histogram.observe ------------------------------------------
    hist = Histogram("bench_e2e_request_latency_seconds", "e2e latency", buckets=VLLM_E2E_BUCKETS,
                     registry=CollectorRegistry())
    observe = hist.observe

    def loop_observe() -> None:
        for v in lat_s_list:
            observe(v)

    hist_default = Histogram("bench_default_buckets_seconds", "default buckets", registry=CollectorRegistry())
    observe_default = hist_default.observe

    def loop_observe_default() -> None:
        for v in lat_s_list:
            observe_default(v)

    # -- ours -------------------------------------------------------------------------------------
    managers = {
        "system_clock": create_production_sla_manager(clock=system_clock, anomaly_detection=False),
        "ManualClock": create_production_sla_manager(clock=ManualClock(T0), anomaly_detection=False),
    }

    def loops_for(mgr):
        rec = mgr.record_measurement
        store_rec = mgr.store.record
        rec_batch = mgr.record_batch

        def loop_record_measurement() -> None:
            for v in lat_ms_list:
                rec("request_latency_p95", v)

        def loop_store_record() -> None:
            for v in lat_ms_list:
                store_rec("request_latency_ms", v)

        def loop_batch_np() -> None:
            for b in batches_np:
                rec_batch("request_latency_ms", b)

        def loop_batch_list() -> None:
            for b in batches_list:
                rec_batch("request_latency_ms", b)

        return loop_record_measurement, loop_store_record, loop_batch_np, loop_batch_list

    # Every variant, baseline included, is timed round-robin (one loop of each per round) and the
    # median per variant is reported, so drift in machine speed affects all of them alike.
    loops = {"observe": (loop_observe, N_SINGLE), "observe_default": (loop_observe_default, N_SINGLE)}
    for clock_name, mgr in managers.items():
        rm, sr, bn, bl = loops_for(mgr)
        loops[f"{clock_name}/record_measurement"] = (rm, N_SINGLE)
        loops[f"{clock_name}/store.record"] = (sr, N_SINGLE)
        loops[f"{clock_name}/batch_np"] = (bn, N_BATCHES)
        loops[f"{clock_name}/batch_list"] = (bl, N_BATCHES)
    med = interleaved_medians(loops, rounds=REPEATS)
    for clock_name, mgr in managers.items():
        dropped = mgr.store.dropped_total()
        if dropped:
            print(f"   WARNING: {dropped} samples dropped with {clock_name}: {mgr.store.dropped()}")
    obs = med["observe"]
    obs_default = med["observe_default"]
    results = {c: {k: med[f"{c}/{k}"] for k in ("record_measurement", "store.record", "batch_np", "batch_list")}
               for c in managers}

    print(f"baseline  Histogram.observe (21 vLLM e2e buckets)  {fmt_ns(obs)} per sample")
    print(f"          Histogram.observe (default 15 buckets)  {fmt_ns(obs_default)} per sample (info)")
    for clock_name, r in results.items():
        print(f"ours, clock={clock_name}:")
        print(f"  record_measurement (1 sample)         {fmt_ns(r['record_measurement']):>10}   "
              f"ratio vs observe {r['record_measurement'] / obs:5.2f}x  (info: no target for single samples)")
        print(f"  MetricStore.record (1 sample)         {fmt_ns(r['store.record']):>10}   "
              f"ratio vs observe {r['store.record'] / obs:5.2f}x  (info)")
        for key, label in (("batch_np", "numpy array"), ("batch_list", "Python list")):
            per_batch = r[key]
            per_sample = per_batch / BATCH
            ratio = per_sample / obs
            print(f"  record_batch x{BATCH} ({label:<11})  per batch {fmt_ns(per_batch):>10}, per sample "
                  f"{fmt_ns(per_sample):>8}   ratio vs observe {ratio:5.3f}x  target <= {TARGET_BATCH}x: "
                  f"{verdict(ratio <= TARGET_BATCH)}")


if __name__ == "__main__":
    main()
