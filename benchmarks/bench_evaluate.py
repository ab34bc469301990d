"""One evaluation of all default SLAs over FULL windows, against numpy baselines in the same run.

Setup: ``create_production_sla_manager(clock=ManualClock(...))``; every series is filled at its
default sample rate for two windows + 60 s (its ring is full and has wrapped, as in a long-running
server), so every SLA's window is full. Steady state: between evaluations the clock advances 5 s
and 5 s of new samples are appended to every series; only ``evaluate()`` is timed, and it includes
the per-evaluation Python bookkeeping (evaluation points, z-score history, status objects).

``--cold``: every timed call starts with cold caches (a 64 MB buffer is written and read before
it), as an evaluation in a busy server does; the default is the historical round-robin only.

Baselines, timed on the same buffers in the same state (round-robin with ours, every step):
  (a) straightforward numpy: per SLA, copy its window (times and values, like
      ``RingBuffer.window()``, with numpy slicing) and ``np.percentile`` / ``np.mean`` it.
      Target: ours >= 10x faster.
  (b) one pass over the same bytes: ``np.sum`` of each distinct SLA window's values (views, no copy;
      the indices are found outside the timing), and of times + values.
      Target: ours <= 3x that.
Regression checks (every 60 s by default) are disabled for the core figure
(``regression_interval_s=inf``) and reported separately.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from _common import T0, evict_caches, fill_all, fill_full, fmt_ns, header, timed_ns, verdict, window_copy, window_views

from aphrodite_sla import ManualClock, create_production_sla_manager

TARGET_VS_NUMPY = 10.0  # ours at least this many times faster than (a)
TARGET_VS_SUM = 3.0  # ours at most this many times (b)
STEP_S = 5.0
WARM_STEPS = 5
STEADY_STEPS = 72  # a multiple of 12, so the default 60 s regression cadence is sampled evenly
SEED = 7
COLD = "--cold" in sys.argv[1:]


def ensure_numba_cache() -> None:
    """Compile (or load) the kernels once in a child process so this process starts with a warm
    on-disk numba cache, whatever happened to it before."""
    subprocess.run([sys.executable, "-c", "from aphrodite_sla.store import kernels; kernels.warm_up()"],
                   check=True)


def groups(mgr):
    """Distinct (source, window_seconds) pairs the evaluator reads, with their SLA names."""
    out: dict[tuple[str, float], list[str]] = {}
    for name, th in mgr.thresholds.items():
        if th.enabled:
            out.setdefault((th.source, th.window_seconds), []).append(name)
    return out


def numpy_straightforward(mgr, now: float) -> dict[str, float]:
    """Baseline (a): per SLA, copy its window and compute its statistic with numpy."""
    res = {}
    for name, th in mgr.thresholds.items():
        _, v = window_copy(mgr.store.buffer(th.source), now - th.window_seconds, now)
        q = th.statistic.quantile
        if q is not None:
            res[name] = float(np.percentile(v, q * 100.0))
        elif th.statistic.value == "rate":
            res[name] = float(np.sum(v)) / th.window_seconds
        else:
            res[name] = float(np.mean(v))
    return res


def numpy_grouped(mgr, now: float, grp) -> None:
    """Info: numpy with the same grouping as ours (one copy per distinct window, all quantiles of a
    series in one ``np.percentile`` call)."""
    for (source, window), names in grp.items():
        _, v = window_copy(mgr.store.buffer(source), now - window, now)
        qs = [mgr.thresholds[n].statistic.quantile for n in names]
        qs = [q * 100.0 for q in qs if q is not None]
        if qs:
            np.percentile(v, qs)
        if len(qs) < len(names):
            np.mean(v)


def make_sum_passes(mgr, now: float, grp):
    """Baseline (b): np.sum over each distinct window's values (and times), as views."""
    values, times = [], []
    for (source, window) in grp:
        for ts, vs in window_views(mgr.store.buffer(source), now - window, now):
            values.append(vs)
            times.append(ts)
    both = values + times
    n = sum(v.size for v in values)

    def sum_values() -> None:
        for v in values:
            np.sum(v)

    def sum_both() -> None:
        for v in both:
            np.sum(v)

    return sum_values, sum_both, n


class KernelTimer:
    """Info: times the one kernel call inside our evaluate() (wraps the plan's kernel module)."""

    def __init__(self, mgr) -> None:
        from aphrodite_sla.store import kernels

        self.last_ns = 0.0
        timer = self

        class Proxy:
            def __getattr__(self, name):
                return getattr(kernels, name)

            @staticmethod
            def evaluate_windows(*args):
                t0 = time.perf_counter_ns()
                kernels.evaluate_windows(*args)
                timer.last_ns = float(time.perf_counter_ns() - t0)

        self.proxy = Proxy()
        self.mgr = mgr

    def attach(self) -> None:
        self.mgr._evaluator.plan()._kernels = self.proxy


def main() -> None:
    header("bench_evaluate: one evaluation of the default SLAs over full windows" + (" (cold caches)" if COLD else ""))
    ensure_numba_cache()
    print(f"   numba loaded before first evaluate: {'numba' in sys.modules}")

    configs = {
        "core": dict(anomaly_detection=False, regression_interval_s=math.inf),
        "anomaly": dict(anomaly_detection=True, regression_interval_s=math.inf),
        "regression_every_eval": dict(anomaly_detection=False, regression_interval_s=0.0),
        "regression_default_60s": dict(anomaly_detection=False),
        "second_core": dict(anomaly_detection=False, regression_interval_s=math.inf),
    }
    mgrs, clocks, rngs = {}, {}, {}
    for key, kw in configs.items():
        clocks[key] = ManualClock(T0)
        mgrs[key] = create_production_sla_manager(clock=clocks[key], **kw)
        rngs[key] = np.random.default_rng(SEED)  # same seed: every manager holds the same samples
        fill_full(mgrs[key], clocks[key], rngs[key])

    core, clock = mgrs["core"], clocks["core"]
    grp = groups(core)
    now = clock()
    print("series / window / capacity / samples in window / SLAs:")
    total_distinct = total_per_sla = 0
    for (source, window), names in grp.items():
        buf = core.store.buffer(source)
        _, v = window_copy(buf, now - window, now)
        total_distinct += v.size
        total_per_sla += v.size * len(names)
        print(f"   {source:<28} {window:>5.0f} s  cap {buf.capacity:>7}  {v.size:>7}  {', '.join(names)}")
    print(f"total samples in the evaluated windows: {total_distinct} distinct "
          f"({total_per_sla} counting each SLA's window separately)")

    # -- cold evaluations ---------------------------------------------------------------------
    scipy_before = "scipy" in sys.modules
    cold_ns, _ = timed_ns(core.evaluate)
    print(f"cold: first evaluate() in this process (imports numba, loads cached kernels): {fmt_ns(cold_ns)}")
    if not scipy_before and "scipy" in sys.modules:
        ran = any(st.regression is not None for st in core.get_status().values())
        print("   note: scipy was imported during that evaluate() (numba loads scipy's BLAS/LAPACK bindings "
              f"when scipy is installed); regression checks ran: {ran}")
    scipy_before = "scipy" in sys.modules
    first_default_ns, _ = timed_ns(mgrs["regression_default_60s"].evaluate)
    print(f"first evaluate() of a manager with default settings (regression checks run; scipy "
          f"{'already imported' if scipy_before else 'imported here'}): {fmt_ns(first_default_ns)}")
    second_ns, _ = timed_ns(mgrs["second_core"].evaluate)
    print(f"first evaluate() of another manager (kernels loaded, scipy imported; regression checks run "
          f"here too): {fmt_ns(second_ns)}")
    for key in ("anomaly", "regression_every_eval"):
        mgrs[key].evaluate()
    del mgrs["second_core"]

    # -- steady state ---------------------------------------------------------------------------
    samples: dict[str, list[float]] = {k: [] for k in
                                       ("core", "anomaly", "regression_every_eval", "regression_default_60s",
                                        "numpy", "numpy_grouped", "sum_values", "sum_both", "kernel")}
    timer = KernelTimer(core)
    timer.attach()
    max_rel_diff = 0.0
    for step in range(WARM_STEPS + STEADY_STEPS):
        for key, mgr in mgrs.items():
            c = clocks[key]
            t_prev = c()
            c.advance(STEP_S)
            fill_all(mgr, rngs[key], t_prev, c())
        now = clock()
        sum_values, sum_both, _n = make_sum_passes(core, now, grp)
        numpy_res: dict[str, float] = {}
        tasks = [
            ("core", core.evaluate),
            ("anomaly", mgrs["anomaly"].evaluate),
            ("regression_every_eval", mgrs["regression_every_eval"].evaluate),
            ("regression_default_60s", mgrs["regression_default_60s"].evaluate),
            ("numpy", lambda: numpy_res.update(numpy_straightforward(core, now))),
            ("numpy_grouped", lambda: numpy_grouped(core, now, grp)),
            ("sum_values", sum_values),
            ("sum_both", sum_both),
        ]
        # rotate the order every step so no variant always runs first (cold caches) or last
        r = step % len(tasks)
        for key, fn in tasks[r:] + tasks[:r]:
            if COLD:
                evict_caches()
            ns, _ = timed_ns(fn)
            if step >= WARM_STEPS:
                samples[key].append(ns)
                if key == "core":
                    samples["kernel"].append(timer.last_ns)
        if step >= WARM_STEPS:
            status = core.get_status()
            for name, value in numpy_res.items():
                ours = status[name].value
                if ours is not None and value != 0.0:
                    max_rel_diff = max(max_rel_diff, abs(ours - value) / abs(value))

    med = {k: float(np.median(v)) for k, v in samples.items() if v}
    ours = med["core"]
    print(f"steady state: median of {STEADY_STEPS} evaluations (5 s of new samples between them):")
    print(f"  ours  evaluate(), anomaly off, regression off  {fmt_ns(ours):>10}   (includes Python bookkeeping)")
    print(f"        of which the one kernel call (info)     {fmt_ns(med['kernel']):>10}   "
          f"(incremental windows; the rest is Python per SLA and the snapshot)")
    print(f"  ours  evaluate(), anomaly detection on         {fmt_ns(med['anomaly']):>10}")
    print(f"  (a) numpy: copy each SLA's window + percentile/mean  {fmt_ns(med['numpy']):>10}   "
          f"speed-up {med['numpy'] / ours:6.1f}x  target >= {TARGET_VS_NUMPY:.0f}x: "
          f"{verdict(med['numpy'] / ours >= TARGET_VS_NUMPY)}")
    print(f"      same, anomaly on                               "
          f"             speed-up {med['numpy'] / med['anomaly']:6.1f}x  target >= {TARGET_VS_NUMPY:.0f}x: "
          f"{verdict(med['numpy'] / med['anomaly'] >= TARGET_VS_NUMPY)}")
    print(f"      numpy grouped like ours (info)                 {fmt_ns(med['numpy_grouped']):>10}   "
          f"speed-up {med['numpy_grouped'] / ours:6.1f}x")
    print(f"  (b) np.sum over each distinct window, values  {fmt_ns(med['sum_values']):>10}   "
          f"ours/sum {ours / med['sum_values']:6.2f}x  target <= {TARGET_VS_SUM:.0f}x: "
          f"{verdict(ours / med['sum_values'] <= TARGET_VS_SUM)}")
    print(f"      np.sum, times + values                    {fmt_ns(med['sum_both']):>10}   "
          f"ours/sum {ours / med['sum_both']:6.2f}x  target <= {TARGET_VS_SUM:.0f}x: "
          f"{verdict(ours / med['sum_both'] <= TARGET_VS_SUM)}")
    print(f"      anomaly on, vs values / times+values      "
          f"             ours/sum {med['anomaly'] / med['sum_values']:6.2f}x / "
          f"{med['anomaly'] / med['sum_both']:.2f}x  target <= {TARGET_VS_SUM:.0f}x: "
          f"{verdict(med['anomaly'] / med['sum_values'] <= TARGET_VS_SUM)} / "
          f"{verdict(med['anomaly'] / med['sum_both'] <= TARGET_VS_SUM)}")
    reg_every = med["regression_every_eval"]
    reg_default = float(np.mean(samples["regression_default_60s"]))
    print("regression checks (reported separately, not in the core figure):")
    print(f"  evaluate() that runs the regression checks of all SLAs: {fmt_ns(reg_every)} median "
          f"(checks ~ {fmt_ns(reg_every - ours)})")
    print(f"  default 60 s cadence: mean per evaluation {fmt_ns(reg_default)} over {STEADY_STEPS} evaluations "
          f"(max {fmt_ns(max(samples['regression_default_60s']))})")
    print(f"check: max relative difference ours vs numpy statistics over the run: {max_rel_diff:.3g}")


if __name__ == "__main__":
    main()
