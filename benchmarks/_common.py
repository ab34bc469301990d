"""Shared helpers for the benchmark scripts (timing, formatting, synthetic data, window filling).

Not a benchmark itself. Scripts import it with ``sys.path`` pointing at this folder, so every
script stays runnable as ``python benchmarks/NAME.py`` from anywhere.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

T0 = 1_700_000_000.0  # ManualClock start used by every benchmark
FILL_CHUNK = 16_384  # samples per record_batch call while filling (bounds temporary memory)


# ----------------------------------------------------------------------------------- timing
def median_ns(loop: Callable[[], object], inner: int = 1, repeats: int = 15, warmup: int = 2) -> float:
    """Median over ``repeats`` of (time of one ``loop()`` call) / ``inner``, in ns, after
    ``warmup`` untimed calls; the garbage collector is off while timing (as ``timeit`` does)."""
    for _ in range(warmup):
        loop()
    samples = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            loop()
            samples.append((time.perf_counter_ns() - t0) / inner)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(samples)


def timed_ns(fn: Callable[[], object]) -> tuple[float, object]:
    """One timed call (gc off): (ns, result)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        result = fn()
        return float(time.perf_counter_ns() - t0), result
    finally:
        if enabled:
            gc.enable()


def fmt_ns(ns: float) -> str:
    if ns != ns:
        return "nan"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.3f} ms"
    return f"{ns / 1e9:.3f} s"


def fmt_bytes(n: float) -> str:
    if abs(n) < 1024:
        return f"{n:.0f} B"
    if abs(n) < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.2f} MiB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def header(title: str) -> None:
    print(f"== {title}")
    print(
        f"   python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.system()}"
    )


def flush() -> None:
    sys.stdout.flush()


_EVICT = np.zeros(0)


def evict_caches(nbytes: int = 64 * 2**20) -> None:
    """Write and read a buffer larger than the CPU caches, so the next timed call starts cold, as
    an evaluation does in a server (the engine's work runs in between, every few seconds)."""
    global _EVICT
    if _EVICT.nbytes < nbytes:
        _EVICT = np.zeros(nbytes // 8)
    _EVICT += 1.0
    float(_EVICT.sum())


# ------------------------------------------------------------------------- synthetic data
def lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return rng.lognormal(math.log(median), sigma, n)


def synthetic_values(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Plausible healthy-engine values for each default series (lognormal latencies)."""
    if name == "request_latency_ms":
        return lognormal(rng, 80.0, 0.5, n)  # p95 ~ 182 ms, p99 ~ 256 ms
    if name == "request_error_percent":
        return np.where(rng.random(n) < 0.0005, 100.0, 0.0)
    if name == "tokens_per_second":
        return lognormal(rng, 150.0, 0.25, n)
    if name == "gpu_utilization_percent":
        return np.clip(rng.normal(70.0, 8.0, n), 0.0, 100.0)
    if name == "kv_cache_usage_percent":
        return np.clip(rng.normal(60.0, 10.0, n), 0.0, 100.0)
    if name == "echo_evolution_convergence":
        return np.clip(rng.normal(92.0, 3.0, n), 0.0, 100.0)
    return lognormal(rng, 1.0, 0.5, n)


def fill_series(manager, name: str, rng: np.random.Generator, t_from: float, t_to: float) -> int:
    """Record ``name`` at its spec's sample rate over (t_from, t_to], evenly spaced, in batches.
    Returns the number of samples recorded. The caller's ManualClock must already read >= t_to."""
    spec = manager.store.spec(name)
    rate = spec.sample_rate_hz
    k0 = int(math.floor(t_from * rate + 1e-9)) + 1
    k1 = int(math.floor(t_to * rate + 1e-9)) + 1
    stored = 0
    for a in range(k0, k1, FILL_CHUNK):
        b = min(a + FILL_CHUNK, k1)
        times = np.arange(a, b, dtype=np.float64) / rate
        stored += manager.record_batch(name, synthetic_values(name, rng, b - a), times)
    return stored


def fill_all(manager, rng: np.random.Generator, t_from: float, t_to: float) -> int:
    return sum(fill_series(manager, name, rng, t_from, t_to) for name in manager.store.names())


def fill_full(manager, clock, rng: np.random.Generator, extra_s: float = 60.0) -> float:
    """Fill every series so its ring is full and has wrapped (2 windows + ``extra_s``, the steady
    state of a long-running server; each SLA's window is then full). Sets the clock; returns now."""
    longest = max(manager.store.spec(n).window_seconds for n in manager.store.names())
    now = T0 + longest + extra_s
    clock.set(now)
    for name in manager.store.names():
        span = manager.store.spec(name).window_seconds + extra_s
        fill_series(manager, name, rng, now - span, now)
    return now


# ------------------------------------------------------------------------ ring reading (numpy)
def ring_segments(buf):
    """The ring's live (times, values) as up to two logically ordered views (no copy)."""
    cap, count = buf.capacity, buf.count
    if count <= cap:
        return [(buf.times[:count], buf.values[:count])]
    i0 = count % cap
    segs = [(buf.times[i0:], buf.values[i0:])]
    if i0:
        segs.append((buf.times[:i0], buf.values[:i0]))
    return segs


def window_views(buf, t_start: float, t_end: float):
    """Views (times, values) of the samples with t_start < time <= t_end: what
    ``RingBuffer.window`` copies, found with ``np.searchsorted`` per contiguous segment."""
    out = []
    for ts, vs in ring_segments(buf):
        a = int(np.searchsorted(ts, t_start, side="right"))
        b = int(np.searchsorted(ts, t_end, side="right"))
        if b > a:
            out.append((ts[a:b], vs[a:b]))
    return out


def window_copy(buf, t_start: float, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """Copies (times, values) of the window, like ``RingBuffer.window``, with numpy slicing."""
    views = window_views(buf, t_start, t_end)
    if not views:
        return np.empty(0), np.empty(0)
    if len(views) == 1:
        return views[0][0].copy(), views[0][1].copy()
    return np.concatenate([v[0] for v in views]), np.concatenate([v[1] for v in views])


def interleaved_medians(loops: dict[str, tuple[Callable[[], object], int]], rounds: int = 15,
                        warmup: int = 2) -> dict[str, float]:
    """Median ns per inner call of each named ``(loop, inner)``, timed round-robin (one of each per
    round) so machine-speed drift hits every variant, baseline included, alike."""
    for _ in range(warmup):
        for fn, _inner in loops.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in loops}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, (fn, inner) in loops.items():
                t0 = time.perf_counter_ns()
                fn()
                samples[name].append((time.perf_counter_ns() - t0) / inner)
    finally:
        if enabled:
            gc.enable()
    return {k: statistics.median(v) for k, v in samples.items()}
