"""Memory held by the default configuration: ring buffers (``store.nbytes``) + evaluator scratch,
and the process RSS / tracemalloc growth for creating the manager, filling every window and
evaluating. Target (issue): <= 10 MB.

Libraries are imported (numba kernels loaded, scipy imported) and a throw-away manager evaluated
once *before* the baseline is taken, so the growth measured is our data, not library code.
Baseline for the ratio: the bytes of the samples inside the SLA windows themselves (times + values,
float64), measured on the same data: the rings hold two windows (the regression baseline too).
"""
from __future__ import annotations

import gc
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import psutil
from _common import T0, fill_all, fill_full, header, verdict, window_copy

from aphrodite_sla import ManualClock, create_production_sla_manager

TARGET_MB = 10.0
MB = 1e6
STEPS = 24  # evaluations after filling (5 s apart; includes two default regression-check rounds)


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def main() -> None:
    header("bench_memory: bytes held by the default configuration")
    # -- load everything lazily loaded, so the growth below is data only ------------------------
    from aphrodite_sla.store import kernels

    kernels.warm_up()
    import scipy.stats  # noqa: F401  (imported by the first regression check)

    c = ManualClock(T0)
    throwaway = create_production_sla_manager(clock=c)
    for name in throwaway.store.names():
        throwaway.record_batch(name, np.ones(64), T0)
    throwaway.evaluate()
    del throwaway
    rss_libs = rss()

    # pass 1: RSS (tracemalloc off: its own bookkeeping would count as growth)
    rss0 = rss()
    clock = ManualClock(T0)
    mgr = create_production_sla_manager(clock=clock)
    rss_created = rss()
    rng = np.random.default_rng(5)
    fill_full(mgr, clock, rng)
    rss_filled = rss()
    for _ in range(STEPS):
        t_prev = clock()
        clock.advance(5.0)
        fill_all(mgr, rng, t_prev, clock())
        mgr.evaluate()
    rss_eval = rss()

    # pass 2: tracemalloc (exact bytes allocated and still held), same work on a second manager
    tracemalloc.start()
    clock2 = ManualClock(T0)
    mgr2 = create_production_sla_manager(clock=clock2)
    rng2 = np.random.default_rng(5)
    fill_full(mgr2, clock2, rng2)
    tm_filled, _ = tracemalloc.get_traced_memory()
    for _ in range(STEPS):
        t_prev = clock2()
        clock2.advance(5.0)
        fill_all(mgr2, rng2, t_prev, clock2())
        mgr2.evaluate()
    gc.collect()
    tm_eval, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del mgr2

    store = mgr.store
    now = clock()
    print("series capacity (samples) / bytes (times + values):")
    for name in store.names():
        spec, buf = store.spec(name), store.buffer(name)
        print(f"   {name:<28} {buf.capacity:>8} samples  {buf.nbytes:>9} B   "
              f"({spec.window_seconds:.0f} s x {spec.sample_rate_hz:g} Hz)")
    scratch = getattr(mgr, "_scratch", None)
    if isinstance(scratch, np.ndarray):
        scratch_bytes, how = int(scratch.nbytes), "the manager's scratch array"
    else:  # estimate: one float64 per sample of the largest ring read by a quantile SLA
        caps = [store.buffer(th.source).capacity for th in mgr.thresholds.values() if th.statistic.quantile is not None]
        scratch_bytes, how = 8 * max(caps, default=0), "estimated: largest quantile ring x 8 B"
    held = store.nbytes + scratch_bytes
    window_bytes = 0
    seen = set()
    for th in mgr.thresholds.values():
        key = (th.source, th.window_seconds)
        if key not in seen:
            seen.add(key)
            t, v = window_copy(store.buffer(th.source), now - th.window_seconds, now)
            window_bytes += t.nbytes + v.nbytes
    print(f"store.nbytes                 {store.nbytes / MB:8.3f} MB")
    print(f"evaluator scratch            {scratch_bytes / MB:8.3f} MB  ({how})")
    print(f"held by the buffers          {held / MB:8.3f} MB   target <= {TARGET_MB:g} MB: {verdict(held <= TARGET_MB * MB)}")
    print(f"baseline: samples in the SLA windows (times+values) {window_bytes / MB:.3f} MB -> ratio "
          f"{held / window_bytes:.2f}x (rings keep 2 windows for the regression baseline)")
    grow_fill = rss_filled - rss0
    grow_eval = rss_eval - rss0
    print(f"RSS after importing and loading libraries (numpy, numba kernels, scipy.stats): {rss_libs / MB:.1f} MB "
          f"(not counted)")
    print(f"RSS growth: create manager {(rss_created - rss0) / MB:+.3f} MB, + fill all windows "
          f"{grow_fill / MB:+.3f} MB   target <= {TARGET_MB:g} MB: {verdict(grow_fill <= TARGET_MB * MB)}")
    print(f"RSS growth after {STEPS} steady-state evaluations (default settings, regression checks included): "
          f"{grow_eval / MB:+.3f} MB   target <= {TARGET_MB:g} MB: {verdict(grow_eval <= TARGET_MB * MB)}")
    print(f"tracemalloc (second manager, same work): held after fill {tm_filled / MB:.3f} MB, after evaluations {tm_eval / MB:.3f} MB, "
          f"peak {tm_peak / MB:.3f} MB   target (held) <= {TARGET_MB:g} MB: {verdict(tm_eval <= TARGET_MB * MB)}")


if __name__ == "__main__":
    main()
