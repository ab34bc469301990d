"""The families of operational behaviour (see the package docstring).

Each ``_family(rng, k, n, dt, inject)`` returns ``(timestamps, values, anomalies)``: ``k`` is the
series' number inside its family (it rotates which anomaly kinds are injected, so the family's
series cover all its kinds), ``n`` and ``dt`` override the length and sampling interval, and
``inject=False`` gives the healthy series (for false alarms per hour). Sizes, rates and shapes are
drawn from ranges, not fixed, so a detector cannot be tuned to one number.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from anomaly_corpus.model import (
    DAY,
    FLATLINE,
    HOUR,
    LEVEL_SHIFT,
    OUTAGE,
    RAMP,
    SEASON_FLAT,
    SEASON_SHAPE,
    SEASONAL_JUMP,
    SPIKE,
    SPIKE_DENSITY,
    VARIANCE,
    Anomaly,
    LabelledSeries,
    Model,
    ar1,
    benign_spikes,
    daily_curve,
    place,
    timestamps,
    weekend_mask,
)

Result = tuple[np.ndarray, np.ndarray, tuple[Anomaly, ...]]


def _kinds(kinds: tuple[str, ...], k: int, count: int) -> list[str]:
    """``count`` kinds from the family's list, rotated by the series number."""
    return [kinds[(k + j) % len(kinds)] for j in range(count)]


def _variant(k: int) -> int:
    """Which of a family's two variants series ``k`` is: by pairs (0, 1 | 2, 3 | ...), so each
    variant has series in both halves of the split (even / odd ``k``). Choosing by ``k % 2``, the
    split rule itself, put a whole variant in one half: queue lengths only in development, replica
    counts and a collector that stops only held out."""
    return (k // 2) % 2


def _count(n: int) -> int:
    return 3 if n >= 4000 else 2


def _quantise(x: np.ndarray, q: float) -> np.ndarray:
    return np.round(x / q) * q


# ------------------------------------------------------------------------------- families


def latency(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Request latency (ms): lognormal, autocorrelated, heavy-tailed, a weak-to-moderate daily
    cycle and benign one-sample spikes (GC pauses, cold caches)."""
    n = n or int(rng.integers(3000, 5000))
    dt = dt or float(rng.choice([60.0, 300.0]))
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    amp = float(rng.uniform(0.0, 0.35))
    sd = float(rng.uniform(0.06, 0.2))
    m = Model(ts, np.full(n, np.log(rng.uniform(20.0, 400.0))), amp * curve(ts),
              ar1(rng, n, rng.uniform(0.2, 0.7), sd, df=4.0), sd, amp, curve)
    m.extra += benign_spikes(rng, n, rng.uniform(0.001, 0.004), 2.5 * sd, 5.0 * sd)
    kinds = (SPIKE, LEVEL_SHIFT, VARIANCE, SPIKE_DENSITY, RAMP)
    an = place(rng, m, _kinds(kinds, k, _count(n)), int(0.2 * n), 150) if inject else ()
    return ts, m.finish(_quantise(np.exp(m.render()), 0.1)), an


def llm_p95(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """p95 of an LLM server's request latencies over each evaluation interval (10 s): a few to a
    few dozen requests per interval, so the statistic itself is noisy and right-skewed, on top of
    a slowly varying load."""
    n = n or int(rng.integers(3000, 5000))
    dt = dt or 10.0
    ts = timestamps(rng, n, dt)
    rate = float(rng.uniform(5.0, 50.0))
    sigma_r = float(rng.uniform(0.3, 0.6))
    load = 0.3 * np.sin(2.0 * np.pi * (ts - ts[0]) / rng.uniform(2.0, 8.0) / HOUR + rng.uniform(0, 6.3))
    lam = rate * (1.0 + load)
    counts = np.maximum(1, rng.poisson(lam))
    # the interval's p95 moves with load (queueing) and with the request mix (slow AR)
    mu = np.log(rng.uniform(800.0, 4000.0)) + 0.15 * load + ar1(rng, n, 0.98, 0.04)
    probe = np.array([np.percentile(rng.lognormal(0.0, sigma_r, c), 95) for c in counts])
    noise_sd = float(np.std(np.log(probe)))
    m = Model(ts, mu, np.zeros(n), np.zeros(n), noise_sd)
    spread = np.full(n, sigma_r)
    an: tuple[Anomaly, ...] = ()
    if inject:
        kinds = _kinds((LEVEL_SHIFT, SPIKE, RAMP, VARIANCE), k, _count(n))
        if VARIANCE in kinds:  # the request mix widens (long prompts arrive): spread, not level
            kinds.remove(VARIANCE)
            an = place(rng, m, kinds, int(0.2 * n), 200)
            lo = max(a.end for a in an) + 200 if an else int(0.2 * n)
            i = int(rng.integers(min(lo, n - 400), n - 300))
            end = min(n, i + int(rng.integers(150, 400)))
            spread[i:end] *= rng.uniform(1.6, 2.2)
            an = tuple(sorted(an + (Anomaly(i, end, VARIANCE),), key=lambda a: a.onset))
        else:
            an = place(rng, m, kinds, int(0.2 * n), 200)
    mu = m.render()
    z = rng.standard_normal(int(counts.sum()))
    out = np.empty(n)
    pos = 0
    for i, c in enumerate(counts.tolist()):
        out[i] = np.exp(mu[i] + spread[i] * np.percentile(z[pos:pos + c], 95))
        pos += c
    return ts, m.finish(_quantise(out, 0.1)), an


def cpu_regime(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """CPU utilisation (%) of an autoscaled group that switches between two or three operating
    regimes (batch jobs, failover) every few hundred samples; clipped to 0..100 and reported to
    0.01."""
    n = n or int(rng.integers(3000, 4500))
    dt = dt or 300.0
    ts = timestamps(rng, n, dt)
    n_reg = int(rng.integers(2, 4))
    levels = np.sort(rng.uniform(5.0, 15.0) + np.cumsum(rng.uniform(10.0, 25.0, n_reg)) - 10.0)
    dwell = rng.uniform(150.0, 500.0)
    level = np.empty(n)
    r = 0
    for i in range(n):
        if rng.random() < 1.0 / dwell:
            r = (r + int(rng.integers(1, n_reg))) % n_reg
        level[i] = levels[r]
    sd = float(rng.uniform(0.5, 2.5))
    m = Model(ts, level, np.zeros(n), ar1(rng, n, 0.5, sd), sd)
    m.extra += benign_spikes(rng, n, 0.003, 3.0 * sd, 6.0 * sd)
    an: tuple[Anomaly, ...] = ()
    if inject:
        # a level shift goes to a regime never seen: above the highest by 4-10 sd
        top = float(levels[-1])
        an = place(rng, m, _kinds((LEVEL_SHIFT, FLATLINE, SPIKE, RAMP), k, _count(n)), int(0.2 * n), 150)
        for a in an:
            if a.kind == LEVEL_SHIFT:
                m.level[a.onset:a.end] = top + rng.uniform(4.0, 10.0) * sd
    return ts, m.finish(_quantise(np.clip(m.render(), 0.0, 100.0), 0.01)), an


def event_volume(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Event counts per 5 minutes (mentions, sign-ups, jobs submitted): Poisson around a
    log-rate with a strong daily cycle, slow autocorrelated swings and heavy-tailed benign bursts
    that decay over a few samples."""
    n = n or int(rng.integers(4000, 6000))
    dt = dt or 300.0
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    base = float(np.log(rng.uniform(5.0, 300.0)))
    amp = float(rng.uniform(0.3, 0.9))
    sd_ar = float(rng.uniform(0.1, 0.3))
    noise_sd = float(np.sqrt(sd_ar**2 + np.exp(-base)))
    m = Model(ts, np.full(n, base), amp * curve(ts), ar1(rng, n, rng.uniform(0.5, 0.9), sd_ar), noise_sd, amp, curve)
    bursts = np.zeros(n)
    for i in np.flatnonzero(rng.random(n) < 0.004):
        size = rng.uniform(0.7, 2.0)
        w = int(rng.integers(1, 6))
        bursts[i:i + w] += size * 0.5 ** np.arange(min(w, n - i))
    m.extra += bursts
    an: tuple[Anomaly, ...] = ()
    if inject:
        an = place(rng, m, _kinds((SPIKE, LEVEL_SHIFT, SPIKE_DENSITY, OUTAGE, SEASON_FLAT), k, _count(n)),
                   max(int(0.2 * n), int(3 * DAY / dt)), 200)
    return ts, m.finish(rng.poisson(np.exp(m.render())).astype(float)), an


def error_count(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Errors per minute: sparse Poisson counts (mostly 0) with a mild daily modulation. A burst
    or a sustained rise of the rate is the anomaly."""
    n = n or int(rng.integers(3000, 5000))
    dt = dt or 60.0
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    lam0 = float(rng.uniform(0.02, 0.5))
    m = Model(ts, np.full(n, np.log(lam0)), 0.3 * curve(ts), np.zeros(n), 1.0, 0.3, curve)
    an: list[Anomaly] = []
    if inject:
        kinds = _kinds((SPIKE, LEVEL_SHIFT), k, _count(n))
        lo = int(0.2 * n)
        for j, kind in enumerate(kinds):
            room = (n - lo) // (len(kinds) - j)
            i = int(rng.integers(lo, lo + max(1, room - 300)))
            if kind == SPIKE:  # a burst of errors
                end = min(n, i + int(rng.integers(3, 20)))
                m.level[i:end] = np.log(max(lam0 * rng.uniform(15.0, 40.0), rng.uniform(3.0, 8.0)))
            else:  # the error rate rises 5-10x (at least to 1 a minute) and stays
                end = min(n, i + int(rng.integers(300, 900)))
                m.level[i:end] = np.log(max(lam0 * rng.uniform(5.0, 10.0), 1.0))
            an.append(Anomaly(i, end, kind))
            lo = min(end, i + 600) + 300
    return ts, m.finish(rng.poisson(np.exp(m.render())).astype(float)), tuple(an)


def memory(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Process memory (MB): a garbage-collected sawtooth (or a flat plateau) on a stable base,
    reported to 0.1 MB. Leaks, steps, a collector that stops, a frozen exporter are anomalies."""
    n = n or int(rng.integers(3000, 5000))
    dt = dt or float(rng.choice([60.0, 300.0]))
    ts = timestamps(rng, n, dt)
    base = float(rng.uniform(500.0, 8000.0))
    saw = np.zeros(n)
    has_saw = bool(rng.random() < 0.6)
    period = rng.uniform(30.0, 200.0)
    amp = base * rng.uniform(0.01, 0.05)
    noise_abs = base * rng.uniform(0.0005, 0.003)
    stop = n
    kinds = _kinds((RAMP, LEVEL_SHIFT, FLATLINE, SPIKE), k, _count(n)) if inject else []
    if has_saw and inject and _variant(k) == 1:  # on some series the collector stops (its own kind)
        kinds[-1] = "gc_stop"
    m = Model(ts, np.full(n, base), np.zeros(n), ar1(rng, n, 0.3, noise_abs), 1.0)
    an: list[Anomaly] = []
    if kinds:
        m.noise_sd = float(np.sqrt(noise_abs**2 + (amp**2 / 12.0 if has_saw else 0.0)))
        plain = [kd for kd in kinds if kd != "gc_stop"]
        if "gc_stop" in kinds:
            stop = int(rng.integers(int(0.75 * n), int(0.9 * n)))
            an.append(Anomaly(stop, n, RAMP))
        an += place(rng, m, plain, int(0.2 * n), 200, until=stop - 300)
    if has_saw:
        heap = 0.0
        for i in range(n):
            heap += amp / period * rng.uniform(0.5, 1.5)
            if heap > amp and i < stop:
                heap = amp * rng.uniform(0.0, 0.1)
            saw[i] = heap
    m.extra += saw
    return ts, m.finish(_quantise(m.render(), 0.1)), tuple(sorted(an, key=lambda a: a.onset))


def throughput(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Throughput (requests/s) with a strong daily load curve (x1.8 to x3 peak to trough),
    multiplicative noise. Collapses, and days whose pattern goes flat, shifts or jumps."""
    n = n or int(rng.integers(3500, 5000))
    dt = dt or 300.0
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    amp = float(rng.uniform(0.3, 0.55))
    sd = float(rng.uniform(0.03, 0.1))
    m = Model(ts, np.full(n, np.log(rng.uniform(50.0, 5000.0))), amp * curve(ts), ar1(rng, n, 0.5, sd), sd, amp, curve)
    an: tuple[Anomaly, ...] = ()
    if inject:
        kinds = _kinds((OUTAGE, SEASON_FLAT, SEASON_SHAPE, SEASONAL_JUMP, SPIKE), k, _count(n))
        an = place(rng, m, kinds, max(int(0.2 * n), int(4 * DAY / dt)), 150, spike={"sign": -1.0})
    return ts, m.finish(_quantise(np.exp(m.render()), 0.01)), an


def sensor(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """A machine temperature sensor: a slowly wandering AR(1) process (near a random walk), a
    small daily cycle and measurement noise. Drifts, failures (a sudden drop), oscillation and a
    stuck sensor are anomalies."""
    n = n or int(rng.integers(3000, 5000))
    dt = dt or 300.0
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    sd = float(rng.uniform(0.5, 2.0))
    amp = float(rng.uniform(0.0, 2.0))
    noise = ar1(rng, n, rng.uniform(0.95, 0.99), sd) + rng.normal(0.0, 0.1, n)
    m = Model(ts, np.full(n, rng.uniform(20.0, 90.0)), amp * curve(ts), noise, sd, amp, curve)
    an: tuple[Anomaly, ...] = ()
    if inject:
        kinds = _kinds((RAMP, LEVEL_SHIFT, VARIANCE, FLATLINE), k, _count(n))
        an = place(rng, m, kinds, int(0.2 * n), 200, level_shift={"sign": -1.0, "lo": 5.0, "hi": 10.0})
    return ts, m.finish(_quantise(m.render(), 0.01)), an


def network(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Network traffic (bytes/s) with weekly and daily seasonality: a strong weekday curve,
    quieter and flatter weekends, multiplicative noise, 10-minute samples over 3-4 weeks."""
    dt = dt or 600.0
    n = n or int(rng.integers(3 * 144 * 7, 4 * 144 * 7))
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    amp = float(rng.uniform(0.4, 0.9))
    weekend = weekend_mask(ts)
    level = np.full(n, np.log(rng.uniform(1e5, 1e8)))
    level[weekend] -= rng.uniform(0.2, 0.5)
    sd = float(rng.uniform(0.05, 0.15))
    m = Model(ts, level, amp * curve(ts), ar1(rng, n, 0.6, sd), sd, amp, curve)
    m.season_gain[weekend] = rng.uniform(0.3, 0.7)
    m.extra += benign_spikes(rng, n, 0.002, 3.0 * sd, 6.0 * sd)
    an: tuple[Anomaly, ...] = ()
    if inject:
        kinds = _kinds((SEASON_FLAT, SEASON_SHAPE, SEASONAL_JUMP, LEVEL_SHIFT, SPIKE), k, _count(n))
        an = place(rng, m, kinds, int(15 * DAY / dt), 150)
    return ts, m.finish(np.round(np.exp(m.render()))), an


def integer_steps(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Small integers: a queue length (Poisson around a wandering mean) or a replica count that
    follows the daily load in steps. Jumps to a new level, rising bursts, a crash are anomalies."""
    n = n or int(rng.integers(3000, 5000))
    dt = dt or float(rng.choice([60.0, 300.0]))
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    an: tuple[Anomaly, ...] = ()
    if _variant(k) == 0:  # queue length
        lam = float(rng.uniform(0.5, 6.0))
        m = Model(ts, np.full(n, lam), np.zeros(n), ar1(rng, n, 0.9, 0.15 * lam), float(np.sqrt(lam)))
        if inject:
            an = place(rng, m, _kinds((LEVEL_SHIFT, SPIKE_DENSITY, SPIKE), k // 2, _count(n)), int(0.2 * n), 150,
                       level_shift={"sign": 1.0})
        return ts, m.finish(rng.poisson(np.maximum(m.render(), 0.0)).astype(float)), an
    amp = float(rng.uniform(1.0, 3.0))
    m = Model(ts, np.full(n, rng.uniform(3.0, 6.0) + amp), amp * curve(ts), ar1(rng, n, 0.95, 0.3), 0.5, amp, curve)
    if inject:
        an = place(rng, m, _kinds((LEVEL_SHIFT, SPIKE, FLATLINE), k // 2, _count(n)), int(0.2 * n), 150,
                   level_shift={"lo": 4.0, "hi": 8.0}, spike={"sign": -1.0})
    return ts, m.finish(np.maximum(np.round(m.render()), 1.0)), an


def near_constant(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """A near-constant gauge (configured memory, disk used, connection-pool size): an exact value
    with rare one-quantum steps. Anomalies are sized relative to the value (a flat series has no
    noise to size them by): steps of 2-20 %, ramps, spikes."""
    n = n or int(rng.integers(2500, 4000))
    dt = dt or float(rng.choice([60.0, 300.0]))
    ts = timestamps(rng, n, dt)
    value = float(rng.choice([256.0, 1024.0, 3072.0, 8192.0, 120.0, 40.0]))
    q = 10.0 ** (np.floor(np.log10(value)) - 2.0)
    steps = np.cumsum(np.where(rng.random(n) < 0.003, rng.choice([-q, q], n), 0.0))
    m = Model(ts, np.full(n, value) + steps, np.zeros(n), np.zeros(n), 0.01 * value)
    an: tuple[Anomaly, ...] = ()
    if inject:
        an = place(rng, m, _kinds((LEVEL_SHIFT, RAMP, SPIKE), k, _count(n)), int(0.2 * n), 150,
                   level_shift={"lo": 2.0, "hi": 20.0}, ramp={"sign": 1.0})
    return ts, m.finish(_quantise(m.render(), q)), an


def traffic(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """Road traffic speed (mph) from a sensor with irregular reporting (intervals vary +-50 %):
    rush-hour dips on weekdays, heavy-tailed noise, integer readings. Incidents (a drop for a
    while), glitches and erratic readings are anomalies."""
    n = n or int(rng.integers(2500, 4000))
    dt = dt or 300.0
    ts = timestamps(rng, n, dt, jitter=0.5)
    hours = ((ts - ts[0]) / HOUR + rng.uniform(0, 24)) % 24.0
    depth = rng.uniform(8.0, 20.0)
    rush = depth * (np.exp(-0.5 * ((hours - 8.0) / 1.0) ** 2) + np.exp(-0.5 * ((hours - 17.5) / 1.2) ** 2))
    rush[weekend_mask(ts)] *= 0.2
    sd = float(rng.uniform(2.0, 5.0))
    m = Model(ts, np.full(n, rng.uniform(45.0, 65.0)), -rush, ar1(rng, n, 0.5, sd, df=3.0), sd)
    an: tuple[Anomaly, ...] = ()
    if inject:
        an = place(rng, m, _kinds((LEVEL_SHIFT, SPIKE, VARIANCE), k, _count(n)), int(0.2 * n), 150,
                   level_shift={"sign": -1.0, "lo": 4.0, "hi": 8.0}, spike={"sign": -1.0})
    return ts, m.finish(np.maximum(np.round(m.render()), 0.0)), an


def hourly_kpi(rng: np.random.Generator, k: int, n: int | None, dt: float | None, inject: bool) -> Result:
    """A business KPI sampled hourly (requests served, jobs completed, revenue per hour) over 7-15
    weeks: few samples per day, a strong daily curve that is flatter and lower at weekends,
    multiplicative noise and count rounding. Holidays (a flat day), a shifted day, drops, spikes,
    slow declines and level shifts are anomalies."""
    dt = dt or 3600.0
    n = n or int(rng.integers(7 * 24 * 7, 15 * 24 * 7))
    ts = timestamps(rng, n, dt)
    curve = daily_curve(rng)
    amp = float(rng.uniform(0.3, 0.9))
    weekend = weekend_mask(ts)
    level = np.full(n, np.log(rng.uniform(50.0, 5e4)))
    level[weekend] -= rng.uniform(0.1, 0.5)
    sd = float(rng.uniform(0.05, 0.15))
    m = Model(ts, level, amp * curve(ts), ar1(rng, n, rng.uniform(0.3, 0.7), sd), sd, amp, curve)
    m.season_gain[weekend] = rng.uniform(0.4, 0.9)
    an: tuple[Anomaly, ...] = ()
    if inject:
        kinds = _kinds((SEASON_FLAT, SPIKE, LEVEL_SHIFT, OUTAGE, SEASON_SHAPE, RAMP), k, _count(n))
        an = place(rng, m, kinds, max(int(0.2 * n), int(15 * DAY / dt)), 72)
    return ts, m.finish(np.round(np.exp(m.render()))), an


Family = Callable[[np.random.Generator, int, "int | None", "float | None", bool], Result]
_FAMILIES: dict[str, Family] = {
    "latency": latency,
    "llm_p95": llm_p95,
    "cpu_regime": cpu_regime,
    "event_volume": event_volume,
    "error_count": error_count,
    "memory": memory,
    "throughput": throughput,
    "sensor": sensor,
    "network": network,
    "integer_steps": integer_steps,
    "near_constant": near_constant,
    "traffic": traffic,
    "hourly_kpi": hourly_kpi,
}


GAP_SHARE = 0.35  # share of labelled series with missing data (the same rule for both halves)


def with_gaps(rng: np.random.Generator, ts: np.ndarray, values: np.ndarray,
              anomalies: tuple[Anomaly, ...]) -> Result:
    """Missing data: 1-4 stretches of 3-60 samples that never arrived (a scraper restart, a
    network partition), after the learning period and clear of every anomaly's onset. The
    timestamps keep their gap; anomaly indices are remapped onto the samples that remain."""
    n = len(values)
    keep = np.ones(n, dtype=bool)
    onsets = [a.onset for a in anomalies]
    for _ in range(int(rng.integers(1, 5))):
        w = int(rng.integers(3, 61))
        i = int(rng.integers(int(0.2 * n), max(int(0.2 * n) + 1, n - w)))
        if all(i + w < o - 10 or i > o + 10 for o in onsets):
            keep[i:i + w] = False
    before = np.concatenate(([0], np.cumsum(keep)))  # kept samples before each index
    an = tuple(Anomaly(int(before[a.onset]), max(int(before[a.onset]) + 1, int(before[a.end])), a.kind)
               for a in anomalies)
    return ts[keep], values[keep], an


def _maker(family: str, fn: Family) -> Callable[[str, tuple[int, ...], str], LabelledSeries]:
    def make(name: str, seed: tuple[int, ...], split: str) -> LabelledSeries:
        ts, values, an = fn(np.random.default_rng(seed), seed[-1], None, None, True)
        gaps = np.random.default_rng((*seed, 1))  # a stream of its own: the series itself is unchanged
        if gaps.random() < GAP_SHARE:
            ts, values, an = with_gaps(gaps, ts, values, an)
        return LabelledSeries(name, family, split, ts, values.astype(np.float64), an)

    return make


FAMILIES: dict[str, Callable[[str, tuple[int, ...], str], LabelledSeries]] = {
    name: _maker(name, fn) for name, fn in _FAMILIES.items()
}

HEALTHY_FAMILIES = ("latency", "llm_p95", "cpu_regime", "memory", "throughput", "integer_steps")


def healthy_long(hours: float = 24.0, step: float = 5.0, seed: int = 7) -> list[LabelledSeries]:
    """Long healthy series at a ``step``-second interval (what the SLA manager feeds the detector),
    one per family in ``HEALTHY_FAMILIES``: for false alarms per hour."""
    n = int(hours * HOUR / step)
    out = []
    for j, family in enumerate(HEALTHY_FAMILIES):
        rng = np.random.default_rng((seed, j))
        ts, values, _ = _FAMILIES[family](rng, 0, n, step, False)
        out.append(LabelledSeries(f"healthy_{family}", family, "healthy", ts, values.astype(np.float64), ()))
    return out
