"""Exactness of our window quantiles vs ``numpy.percentile``, next to the error of Prometheus
``histogram_quantile`` over vLLM's default buckets, on the same lognormal latency samples.

Ours: ``SLAManager.window_statistic`` over a ring buffer that holds exactly the n samples of the
window and has wrapped (so the window is read in two segments), for n in 1k / 10k / 60k and
several seeds. Reference: ``np.percentile`` (default "linear" method) of the same n samples.
Histogram: per-bucket counts (``le`` semantics, +Inf bucket) checked against ``prometheus_client``,
then Prometheus's ``bucketQuantile`` (promql/quantile.go): rank = q * total, first bucket whose
cumulative count >= rank, linear interpolation inside it, lower bound 0 for the first bucket, the
highest finite bound when the rank falls in the +Inf bucket.
Target: ours equals np.percentile (max relative error <= 1e-12; expected 0).
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from _common import T0, header, verdict
from prometheus_client import CollectorRegistry, Histogram

from aphrodite_sla import ManualClock, SLAManager, Statistic

SIZES = (1_000, 10_000, 60_000)
SEEDS = (0, 1, 2, 3, 4)
QUANTILES = ((Statistic.P50, 0.50), (Statistic.P95, 0.95), (Statistic.P99, 0.99))
TARGET_REL = 1e-12
RATE = 1024.0  # a power of two: every timestamp T0 + k / RATE and every window edge is exact

E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0]
DISTRIBUTIONS = (
    # name, median (s), sigma, vLLM buckets
    ("e2e request latency", 1.5, 0.6, E2E_BUCKETS),
    ("TTFT", 0.08, 0.8, TTFT_BUCKETS),
)


def cumulative_bucket_counts(samples: np.ndarray, bounds: list[float]) -> np.ndarray:
    """Cumulative counts for le=bounds[0..] and +Inf: a sample v is in every bucket with v <= le."""
    idx = np.searchsorted(np.asarray(bounds), samples, side="left")  # first bound >= v
    return np.cumsum(np.bincount(idx, minlength=len(bounds) + 1)).astype(np.float64)


def prometheus_client_counts(samples: np.ndarray, bounds: list[float]) -> np.ndarray:
    """The same cumulative counts, as prometheus_client's Histogram exposes them."""
    h = Histogram("x_seconds", "x", buckets=bounds, registry=CollectorRegistry())
    for v in samples.tolist():
        h.observe(v)
    out = [s.value for m in h.collect() for s in m.samples if s.name.endswith("_bucket")]
    return np.asarray(out, dtype=np.float64)


def histogram_quantile(q: float, bounds: list[float], cumulative: np.ndarray) -> float:
    """Prometheus's bucketQuantile over buckets (upper bounds ``bounds`` + +Inf) whose cumulative
    counts are ``cumulative`` (already sorted, coalesced and monotonic)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    upper = list(bounds) + [math.inf]
    counts = cumulative
    if len(upper) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # sort.Search(len(buckets)-1, counts[i] >= rank)
    b = len(upper) - 1
    for i in range(len(upper) - 1):
        if counts[i] >= rank:
            b = i
            break
    if b == len(upper) - 1:
        return upper[-2]
    if b == 0 and upper[0] <= 0:
        return upper[0]
    bucket_start = 0.0
    bucket_end = upper[b]
    count = counts[b]
    if b > 0:
        bucket_start = upper[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def ours_quantiles(samples: np.ndarray, seed: int) -> tuple[dict[float, float], float, int]:
    """p50/p95/p99 and mean of ``samples`` through SLAManager.window_statistic, from a ring that
    holds exactly the window and has wrapped."""
    n = samples.size
    window = n / RATE
    clock = ManualClock(T0)
    mgr = SLAManager(clock=clock, anomaly_detection=False)
    mgr.register_metric("latency_s", window, RATE)
    pre = np.random.default_rng(10_000 + seed).lognormal(0.0, 1.0, n // 2 + 7)  # wraps the ring
    allv = np.concatenate((pre, samples))
    times = T0 + np.arange(1, allv.size + 1, dtype=np.float64) / RATE
    now = float(times[-1])
    clock.set(now)
    stored = mgr.record_batch("latency_s", allv, times)
    assert stored == allv.size, (stored, allv.size)
    out = {}
    count = -1
    for stat, q in QUANTILES:
        value, count = mgr.window_statistic("latency_s", stat, window, now)
        out[q] = value
    mean, _ = mgr.window_statistic("latency_s", Statistic.MEAN, window, now)
    return out, mean, count


def main() -> None:
    header("bench_quantile_error: exact window quantiles vs np.percentile vs histogram_quantile")
    overall_ok = True
    for dist_name, median, sigma, bounds in DISTRIBUTIONS:
        print(f"{dist_name}: lognormal median {median} s, sigma {sigma}; {len(bounds)} vLLM buckets + Inf; "
              f"seeds {list(SEEDS)}")
        print(f"  {'n':>6}  {'ours max abs err':>16}  {'ours max rel err':>16}  {'mean rel err':>12}  "
              f"histogram_quantile rel err (max / mean over seeds)")
        for n in SIZES:
            ours_abs = ours_rel = mean_rel = 0.0
            hist_err: dict[float, list[float]] = {q: [] for _, q in QUANTILES}
            counts_match = True
            for seed in SEEDS:
                x = np.random.default_rng(seed).lognormal(math.log(median), sigma, n)
                ours, mean, count = ours_quantiles(x, seed)
                if count != n:
                    print(f"   WARNING: window held {count} samples, expected {n}")
                ref = {q: float(np.percentile(x, q * 100.0)) for _, q in QUANTILES}
                for q, r in ref.items():
                    ours_abs = max(ours_abs, abs(ours[q] - r))
                    ours_rel = max(ours_rel, abs(ours[q] - r) / abs(r))
                mean_rel = max(mean_rel, abs(mean - float(np.mean(x))) / float(np.mean(x)))
                cum = cumulative_bucket_counts(x, bounds)
                if seed == SEEDS[0]:
                    counts_match &= bool(np.array_equal(cum, prometheus_client_counts(x, bounds)))
                for q, r in ref.items():
                    hist_err[q].append(abs(histogram_quantile(q, bounds, cum) - r) / r)
            ok = ours_rel <= TARGET_REL
            overall_ok &= ok
            hist = "  ".join(f"p{round(q * 100)} {100 * max(e):6.2f}% / {100 * float(np.mean(e)):6.2f}%"
                             for q, e in hist_err.items())
            print(f"  {n:>6}  {ours_abs:>16.3g}  {ours_rel:>16.3g}  {mean_rel:>12.2g}  {hist}"
                  f"{'' if counts_match else '  (bucket counts differ from prometheus_client!)'}")
            worst_hist = max(max(e) for e in hist_err.values())
            vs = "ours is exact" if ours_rel == 0 else f"{worst_hist / ours_rel:.3g}x ours"
            print(f"          target ours rel err <= {TARGET_REL:g}: {verdict(ok)};  worst histogram_quantile "
                  f"error {100 * worst_hist:.2f}% ({vs})")
    print(f"bucket counting cross-checked against prometheus_client.Histogram (first seed of each size); "
          f"overall exactness target: {verdict(overall_ok)}")


if __name__ == "__main__":
    main()
