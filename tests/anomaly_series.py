"""Deterministic, labelled operational-metric series for the anomaly detector's tests and benchmark.

Each generator draws from its own seeded ``numpy`` RNG, so a series is the same on every run and
platform, and returns a ``LabelledSeries`` (a ``NamedTuple``, so it also unpacks as
``timestamps, values, windows``). Anomaly windows are ``(start_ts, end_ts)`` pairs, inclusive,
starting at the anomaly's onset; a detector is scored on how early in a window it first alerts.

The noise is deliberately not white: real engine metrics are autocorrelated (AR(1) noise),
latencies are lognormal, error rates are sparse counts and utilisation is clipped at 0/100 %,
because a detector tuned only on i.i.d. Gaussian noise false-alarms on real data.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

MINUTE = 60.0
DAY = 86_400.0
T0 = 1_700_000_000.0  # an arbitrary wall-clock start, not aligned to midnight


class LabelledSeries(NamedTuple):
    """A metric series with its ground-truth anomaly windows (empty for clean series)."""

    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[float, float]]


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal standard deviation ``sd`` (starts in equilibrium)."""
    eps = rng.standard_normal(n) * sd * np.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    prev = rng.standard_normal() * sd
    for i in range(n):
        prev = phi * prev + eps[i]
        out[i] = prev
    return out


def _times(days: float, step: float = MINUTE) -> np.ndarray:
    return T0 + step * np.arange(int(round(days * DAY / step)), dtype=np.float64)


def _diurnal(ts: np.ndarray, phase: float = 0.0) -> np.ndarray:
    """A smooth daily load curve in [-1, 1] with a sharper evening peak than a pure sine."""
    x = 2.0 * np.pi * (ts / DAY) + phase
    return (np.sin(x) + 0.3 * np.sin(2.0 * x + 0.7)) / 1.3


def _idx(ts: np.ndarray, t: float) -> int:
    return int(np.searchsorted(ts, t))


def _window(ts: np.ndarray, i0: int, n: int) -> tuple[float, float]:
    return (float(ts[i0]), float(ts[min(i0 + n, len(ts) - 1)]))


# ---------------------------------------------------------------- anomalous series


def latency_diurnal_spikes(seed: int = 11) -> LabelledSeries:
    """p99 latency (ms), lognormal with a daily cycle, 5 days at 1/min, four short spikes late on."""
    rng = np.random.default_rng(seed)
    ts = _times(5.0)
    log_v = np.log(120.0) + 0.35 * _diurnal(ts) + _ar1(rng, len(ts), 0.6, 0.12)
    windows = []
    for day, mult, width in ((3.3, 3.0, 1), (3.7, 2.5, 3), (4.2, 4.0, 2), (4.6, 2.8, 1)):
        i = _idx(ts, T0 + day * DAY)
        log_v[i:i + width] += np.log(mult)
        windows.append(_window(ts, i, 10))
    return LabelledSeries(ts, np.exp(log_v), windows)


def latency_level_shift(seed: int = 12) -> LabelledSeries:
    """Mean latency (ms) that steps up by 65 % (a slow deploy) on day 2 and stays there."""
    rng = np.random.default_rng(seed)
    ts = _times(3.0)
    log_v = np.log(45.0) + 0.25 * _diurnal(ts, 1.0) + _ar1(rng, len(ts), 0.5, 0.15)
    i = _idx(ts, T0 + 2.1 * DAY)
    log_v[i:] += 0.5
    return LabelledSeries(ts, np.exp(log_v), [_window(ts, i, 120)])


def latency_variance_increase(seed: int = 13) -> LabelledSeries:
    """TTFT (ms) whose log-noise triples for 4 hours (noisy neighbour) with an unchanged median."""
    rng = np.random.default_rng(seed)
    ts = _times(2.5)
    noise = _ar1(rng, len(ts), 0.4, 0.10)
    i = _idx(ts, T0 + 1.6 * DAY)
    n = 240
    noise[i:i + n] = _ar1(rng, n, 0.4, 0.30)
    log_v = np.log(300.0) + 0.2 * _diurnal(ts, 2.0) + noise
    return LabelledSeries(ts, np.exp(log_v), [_window(ts, i, n)])


def memory_drift(seed: int = 14) -> LabelledSeries:
    """KV/host memory usage (%) that leaks linearly for 8 hours, then drops back on a restart."""
    rng = np.random.default_rng(seed)
    ts = _times(2.0)
    v = 55.0 + _ar1(rng, len(ts), 0.8, 0.4)
    i = _idx(ts, T0 + 1.2 * DAY)
    n = 480
    v[i:i + n] += 0.01 * np.arange(n)  # +4.8 points over 8 h: 0.6 points (1.5 sd) after the first hour
    return LabelledSeries(ts, v, [_window(ts, i, n)])


def throughput_collapse(seed: int = 15) -> LabelledSeries:
    """Generation throughput (tokens/s) with a daily load curve that collapses to 30 % for 45 min."""
    rng = np.random.default_rng(seed)
    ts = _times(3.0)
    v = 2500.0 * (1.0 + 0.3 * _diurnal(ts, 0.5)) * np.exp(_ar1(rng, len(ts), 0.4, 0.06))
    i = _idx(ts, T0 + 2.6 * DAY)
    n = 45
    v[i:i + n] *= 0.3
    return LabelledSeries(ts, v, [_window(ts, i, n + 15)])


def error_rate_burst(seed: int = 16) -> LabelledSeries:
    """Error rate (%) per minute: mostly exactly 0 with Poisson blips, then a 20-minute burst."""
    rng = np.random.default_rng(seed)
    ts = _times(3.0)
    requests = rng.poisson(600.0 * (1.0 + 0.4 * _diurnal(ts))) + 1
    p = np.full(len(ts), 0.00012)  # ~0.07 errors/min: one or two blips an hour
    i = _idx(ts, T0 + 2.3 * DAY)
    n = 20
    p[i:i + n] = 0.03
    errors = rng.binomial(requests, p)
    return LabelledSeries(ts, 100.0 * errors / requests, [_window(ts, i, n + 10)])


def gpu_util_drop(seed: int = 17) -> LabelledSeries:
    """GPU utilisation (%) near saturation that drops to ~5 % for 30 minutes (a hung worker)."""
    rng = np.random.default_rng(seed)
    ts = _times(2.0)
    v = 86.0 + 5.0 * _diurnal(ts, 2.5) + _ar1(rng, len(ts), 0.7, 3.0)
    i = _idx(ts, T0 + 1.45 * DAY)
    n = 30
    v[i:i + n] = 5.0 + rng.normal(0.0, 2.0, n)
    return LabelledSeries(ts, np.clip(v, 0.0, 100.0), [_window(ts, i, n + 10)])


def queue_wait_missing_peak(seed: int = 18) -> LabelledSeries:
    """Queue wait (ms) with a strong daily peak that fails to appear on day 4 (traffic was rerouted).

    Every value stays inside the normal daily range, so only a seasonal (time-of-day) model can
    see it; it is in the benchmark, not the pass/fail tests.
    """
    rng = np.random.default_rng(seed)
    ts = _times(5.0)
    season = 0.8 * _diurnal(ts, -1.0)
    log_v = np.log(40.0) + season + _ar1(rng, len(ts), 0.6, 0.10)
    day4 = (ts >= T0 + 3.0 * DAY) & (ts < T0 + 4.0 * DAY)
    peak = day4 & (season > 0.2)
    log_v[peak] -= season[peak] - 0.2
    i = int(np.argmax(peak))
    n = int(peak.sum())
    return LabelledSeries(ts, np.exp(log_v), [_window(ts, i, n)])


# ---------------------------------------------------------------- clean series (no anomaly)


def clean_latency_diurnal(seed: int = 21) -> LabelledSeries:
    """Lognormal, autocorrelated latency with a daily cycle over 5 days; nothing anomalous."""
    rng = np.random.default_rng(seed)
    ts = _times(5.0)
    log_v = np.log(80.0) + 0.4 * _diurnal(ts, 0.3) + _ar1(rng, len(ts), 0.6, 0.15)
    return LabelledSeries(ts, np.exp(log_v), [])


def clean_gaussian(seed: int = 22) -> LabelledSeries:
    """I.i.d. Gaussian noise around a constant (the textbook case) for 2 days."""
    rng = np.random.default_rng(seed)
    ts = _times(2.0)
    return LabelledSeries(ts, 50.0 + rng.standard_normal(len(ts)), [])


def clean_error_rate(seed: int = 23) -> LabelledSeries:
    """Error rate (%) with only the ordinary Poisson blips (a few an hour) over 3 days."""
    rng = np.random.default_rng(seed)
    ts = _times(3.0)
    requests = rng.poisson(600.0 * (1.0 + 0.4 * _diurnal(ts))) + 1
    errors = rng.binomial(requests, 0.0003)
    return LabelledSeries(ts, 100.0 * errors / requests, [])


def clean_gpu_util(seed: int = 24) -> LabelledSeries:
    """Clipped, autocorrelated GPU utilisation around 90 % for 2 days."""
    rng = np.random.default_rng(seed)
    ts = _times(2.0)
    v = 90.0 + 4.0 * _diurnal(ts) + _ar1(rng, len(ts), 0.8, 3.5)
    return LabelledSeries(ts, np.clip(v, 0.0, 100.0), [])


def clean_throughput(seed: int = 25) -> LabelledSeries:
    """Throughput (tokens/s) with a strong daily load curve (x2.6 peak/trough) over 4 days."""
    rng = np.random.default_rng(seed)
    ts = _times(4.0)
    v = 1800.0 * np.exp(0.45 * _diurnal(ts, 1.2) + _ar1(rng, len(ts), 0.5, 0.07))
    return LabelledSeries(ts, v, [])


ANOMALOUS: dict[str, Callable[[], LabelledSeries]] = {
    "latency_diurnal_spikes": latency_diurnal_spikes,
    "latency_level_shift": latency_level_shift,
    "latency_variance_increase": latency_variance_increase,
    "memory_drift": memory_drift,
    "throughput_collapse": throughput_collapse,
    "error_rate_burst": error_rate_burst,
    "gpu_util_drop": gpu_util_drop,
}

EXTRA: dict[str, Callable[[], LabelledSeries]] = {
    "queue_wait_missing_peak": queue_wait_missing_peak,
}

CLEAN: dict[str, Callable[[], LabelledSeries]] = {
    "clean_latency_diurnal": clean_latency_diurnal,
    "clean_gaussian": clean_gaussian,
    "clean_error_rate": clean_error_rate,
    "clean_gpu_util": clean_gpu_util,
    "clean_throughput": clean_throughput,
}

ALL: dict[str, Callable[[], LabelledSeries]] = {**ANOMALOUS, **EXTRA, **CLEAN}


# ---------------------------------------------------------------- NAB-like evaluation

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0  # NAB "standard" application profile
PROBATION = 0.15  # NAB ignores detections in the first 15 % of a series (the learning period)


class SeriesResult(NamedTuple):
    """How one detector did on one labelled series (at score threshold 0.5 unless told)."""

    detected: list[bool]  # per window
    delays: list[int | None]  # samples from window start to the first alert, per window
    false_positives: int  # alerting samples outside windows, after probation
    fp_per_1000: float
    nab_raw: float  # NAB-style raw score: early detection rewarded, FPs and misses penalised
    nab_null: float  # what a detector that never alerts gets
    nab_perfect: float  # what a detector that alerts at each window start and nowhere else gets


def _scaled_sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: ~1 at a window's start (y = -1), 0 at its end, towards -1 after it."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + float(np.exp(5.0 * y))) - 1.0


def run_detector(detector, series: LabelledSeries) -> np.ndarray:
    """Feed a series through ``detector.update`` and return the scores."""
    update = detector.update
    return np.array([update(v, t) for t, v in zip(series.timestamps.tolist(), series.values.tolist())])


def evaluate(scores: np.ndarray, series: LabelledSeries, threshold: float = 0.5,
             probation: float = PROBATION) -> SeriesResult:
    """NAB-style scoring of one series: per window, the first alert earns A_TP * sigmoid(position)
    (or -A_FN if none); each alerting sample outside windows costs A_FP, discounted by the sigmoid
    for samples shortly after a window. Samples in the probationary period are ignored."""
    ts = series.timestamps
    alarms = np.asarray(scores) >= threshold
    n = len(ts)
    start = int(probation * n)
    in_window = np.zeros(n, dtype=bool)
    detected: list[bool] = []
    delays: list[int | None] = []
    raw = 0.0
    for w0, w1 in series.windows:
        i0 = int(np.searchsorted(ts, w0))
        i1 = int(np.searchsorted(ts, w1, side="right"))
        in_window[i0:i1] = True
        hits = np.flatnonzero(alarms[i0:i1])
        if hits.size:
            i = i0 + int(hits[0])
            detected.append(True)
            delays.append(int(hits[0]))
            raw += A_TP * _scaled_sigmoid((ts[i] - w1) / max(w1 - w0, 1e-9))
        else:
            detected.append(False)
            delays.append(None)
            raw -= A_FN
    fp_idx = np.flatnonzero(alarms & ~in_window)
    fp_idx = fp_idx[fp_idx >= start]
    ends = np.array([w1 for _, w1 in series.windows]) if series.windows else np.array([])
    lens = np.array([max(w1 - w0, 1e-9) for w0, w1 in series.windows]) if series.windows else np.array([])
    for i in fp_idx.tolist():
        k = int(np.searchsorted(ends, ts[i], side="left")) - 1 if ends.size else -1
        if k >= 0:
            raw += A_FP * _scaled_sigmoid((ts[i] - ends[k]) / lens[k])
        else:
            raw -= A_FP
    outside = int(np.count_nonzero(~in_window[start:]))
    nw = len(series.windows)
    return SeriesResult(
        detected=detected, delays=delays, false_positives=int(fp_idx.size),
        fp_per_1000=1000.0 * fp_idx.size / max(outside, 1), nab_raw=raw,
        nab_null=-A_FN * nw, nab_perfect=A_TP * _scaled_sigmoid(-1.0) * nw,
    )


def nab_normalised(results: list[SeriesResult]) -> float:
    """Corpus-level NAB score: 100 = perfect, 0 = never alerting, negative = worse than silence."""
    raw = sum(r.nab_raw for r in results)
    null = sum(r.nab_null for r in results)
    perfect = sum(r.nab_perfect for r in results)
    return 100.0 * (raw - null) / (perfect - null) if perfect > null else 0.0
