"""Small deterministic series for the anomaly detector's tests: healthy families (what must not
page) and one clear example of each kind of anomaly (what must).

Every generator takes a seed and returns plain numpy arrays, so a test failure can be replayed
exactly. Series are sampled every minute unless said otherwise; the noise is not white where real
metrics are not (AR(1) wander, lognormal latencies, Poisson counts, clipped utilisation), because a
detector tuned on i.i.d. Gaussian noise false-alarms on production data.
"""
from __future__ import annotations

import os
import sys
from typing import NamedTuple

import numpy as np

# The AR(1) noise and the operator's alert stream are the benchmark corpus's (one definition each).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from anomaly_corpus.model import ar1
from bench_anomaly import alert_stream  # noqa: F401  (the tests use it as S.alert_stream)

T0 = 1_700_000_000.0
MINUTE = 60.0
DAY = 86_400.0


class Example(NamedTuple):
    """A series with one anomaly starting at sample ``onset`` (-1: none) and lasting to ``end``."""

    timestamps: np.ndarray
    values: np.ndarray
    onset: int
    end: int


def times(n: int, step: float = MINUTE) -> np.ndarray:
    return T0 + step * np.arange(n, dtype=np.float64)


def diurnal(ts: np.ndarray, phase: float = 0.0) -> np.ndarray:
    """A smooth daily curve in [-1, 1] with a sharper evening peak than a sine."""
    x = 2.0 * np.pi * (ts / DAY) + phase
    return (np.sin(x) + 0.3 * np.sin(2.0 * x + 0.7)) / 1.3


# ----------------------------------------------------------------------------- healthy families


def healthy(family: str, n: int = 4000, seed: int = 0) -> Example:
    """A series with nothing anomalous in it."""
    rng = np.random.default_rng(seed)
    ts = times(n)
    v: np.ndarray
    if family == "gaussian":
        v = 50.0 + rng.standard_normal(n)
    elif family == "ar1":
        v = 200.0 + ar1(rng, n, 0.9, 5.0)
    elif family == "latency_daily":  # lognormal, autocorrelated, daily cycle
        v = np.exp(np.log(80.0) + 0.4 * diurnal(ts, 0.3) + ar1(rng, n, 0.6, 0.15))
    elif family == "poisson":
        v = rng.poisson(4.0, n).astype(float)
    elif family == "sparse_errors":  # mostly 0 with ordinary blips
        v = rng.poisson(0.05, n).astype(float)
    elif family == "gpu_util":  # clipped, autocorrelated, reported to 0.1 %
        v = np.asarray(np.round(np.clip(90.0 + ar1(rng, n, 0.8, 3.5), 0.0, 100.0), 1), dtype=np.float64)
    elif family == "regimes":  # switches between two operating levels every few hundred samples
        level = np.where((np.arange(n) // 300) % 2 == 0, 20.0, 45.0)
        v = np.round(level + ar1(rng, n, 0.5, 1.0), 2)
    elif family == "sawtooth":  # garbage-collected heap
        heap = np.zeros(n)
        h = 0.0
        for i in range(n):
            h += 2.0 * rng.uniform(0.5, 1.5)
            if h > 150.0:
                h = 0.0
            heap[i] = h
        v = np.round(4000.0 + heap + rng.normal(0.0, 2.0, n), 1)
    elif family == "near_constant":  # an exact value with rare one-quantum steps
        v = 3072.0 + np.cumsum(np.where(rng.random(n) < 0.003, rng.choice([-1.0, 1.0], n), 0.0))
    else:
        raise ValueError(family)
    return Example(ts, np.asarray(v, dtype=np.float64), -1, -1)


HEALTHY = ("gaussian", "ar1", "latency_daily", "poisson", "sparse_errors", "gpu_util", "regimes", "sawtooth",
           "near_constant")


# ----------------------------------------------------------------------------- anomalies


def anomalous(kind: str, seed: int = 0) -> Example:
    """One clear example of an anomaly ``kind`` on an otherwise healthy series."""
    rng = np.random.default_rng(seed)
    n = 3000
    ts = times(n)
    onset = 2000
    if kind == "spike":
        v = 100.0 + ar1(rng, n, 0.5, 2.0)
        v[onset] += 30.0
        return Example(ts, v, onset, onset + 1)
    if kind == "dip":
        v = np.exp(np.log(120.0) + ar1(rng, n, 0.5, 0.1))
        v[onset:onset + 2] *= 0.3
        return Example(ts, v, onset, onset + 2)
    if kind == "level_shift_up":
        v = 50.0 + ar1(rng, n, 0.5, 1.0)
        v[onset:] += 6.0
        return Example(ts, v, onset, n)
    if kind == "level_shift_down":  # a throughput drop to 60 %
        v = 2500.0 * np.exp(ar1(rng, n, 0.4, 0.05))
        v[onset:] *= 0.6
        return Example(ts, v, onset, n)
    if kind == "variance_change":
        noise = ar1(rng, n, 0.3, 1.0)
        noise[onset:onset + 300] *= 4.0
        return Example(ts, 300.0 + noise, onset, onset + 300)
    if kind == "ramp":  # a leak: +12 sd over 200 samples, then it stays
        v = 55.0 + ar1(rng, n, 0.5, 0.4)
        v[onset:] += 4.8 * np.minimum(1.0, (np.arange(n - onset) + 1) / 200.0)
        return Example(ts, v, onset, onset + 200)
    if kind == "spike_density":  # 3-5 sd spikes in 25 % of the samples
        v = 20.0 + ar1(rng, n, 0.3, 1.0)
        hit = rng.random(n - onset) < 0.25
        v[onset:] += hit * rng.uniform(3.0, 5.0, n - onset)
        v[onset] += 4.0
        return Example(ts, v, onset, n)
    if kind == "flatline":  # the exporter freezes on its last value
        v = np.round(40.0 + ar1(rng, n, 0.7, 3.0), 2)
        v[onset:onset + 100] = v[onset - 1]
        return Example(ts, v, onset, onset + 100)
    if kind == "outage":  # the metric reads 0
        v = 1500.0 * np.exp(ar1(rng, n, 0.5, 0.05))
        v[onset:onset + 30] = 0.0
        return Example(ts, v, onset, onset + 30)
    if kind == "error_burst":  # on a mostly-zero error count
        v = rng.poisson(0.05, n).astype(float)
        v[onset:onset + 10] = rng.poisson(6.0, 10)
        return Example(ts, v, onset, onset + 10)
    if kind == "seasonal_jump":  # at night the value jumps to a daytime level: inside the daily range
        n = 5 * 1440
        ts = times(n)
        season = diurnal(ts)
        v = np.exp(np.log(1000.0) + 0.5 * season + ar1(rng, n, 0.5, 0.04))
        night = np.flatnonzero((np.arange(n) > 4 * 1440) & (season < -0.8))
        onset = int(night[0])
        v[onset:onset + 120] *= np.exp(0.8)
        return Example(ts, v, onset, onset + 120)
    if kind == "season_flat":  # the daily pattern goes flat for a day
        n = 6 * 1440
        ts = times(n)
        season = diurnal(ts)
        onset = 4 * 1440 + int(np.argmax(season[4 * 1440:5 * 1440] > 0.5))  # where it would rise
        v = np.exp(np.log(1000.0) + 0.5 * season + ar1(rng, n, 0.5, 0.04))
        v[onset:onset + 1440] = np.exp(np.log(1000.0) + ar1(rng, 1440, 0.5, 0.04))
        return Example(ts, v, onset, onset + 1440)
    raise ValueError(kind)


KINDS = ("spike", "dip", "level_shift_up", "level_shift_down", "variance_change", "ramp", "spike_density",
         "flatline", "outage", "error_burst", "seasonal_jump", "season_flat")


def run(detector: object, ex: Example) -> np.ndarray:
    """The detector's scores over the example."""
    update = detector.update  # type: ignore[attr-defined]
    return np.array([update(v, t) for t, v in zip(ex.timestamps.tolist(), ex.values.tolist())])
