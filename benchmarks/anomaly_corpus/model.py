"""The generating model shared by every family, and the anomaly injectors.

A series is rendered from additive parts in a *model space* (log space for multiplicative metrics
such as latency or traffic, linear otherwise)::

    y = level + season_gain * season + noise_gain * noise + extra

and then mapped to the metric's units by its family (exp, clip to 0..100 %, Poisson counts,
rounding to the metric's resolution). Anomalies change those parts (a level shift changes
``level``, a flattened day sets ``season_gain`` to ~0, a variance change scales ``noise_gain``),
or, for faults of the exporter itself (a stuck value, an outage reading 0), the rendered output.
They are sized in units of the series' own noise (``noise_sd``, the marginal sd of ``noise``), so
"a 4 sd level shift" means the same thing on every family.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DAY = 86_400.0
HOUR = 3_600.0
WEEK = 7 * DAY
T_MIDNIGHT = 1_699_920_000.0  # 2023-11-14 00:00 UTC, a Tuesday

SPIKE = "spike"
LEVEL_SHIFT = "level_shift"
VARIANCE = "variance_change"
SEASON_FLAT = "season_flat"
SEASON_SHAPE = "season_shape"
SPIKE_DENSITY = "spike_density"
RAMP = "ramp"
SEASONAL_JUMP = "seasonal_jump"
FLATLINE = "flatline"
OUTAGE = "outage"
KINDS = (SPIKE, LEVEL_SHIFT, VARIANCE, SEASON_FLAT, SEASON_SHAPE, SPIKE_DENSITY, RAMP, SEASONAL_JUMP, FLATLINE,
         OUTAGE)


@dataclass(frozen=True)
class Anomaly:
    """One labelled anomaly: ``onset`` is the index of its first anomalous sample (the label, as a
    human would place it), ``end`` one past its last; ``kind`` is one of ``KINDS``."""

    onset: int
    end: int
    kind: str


@dataclass(frozen=True)
class LabelledSeries:
    """A metric series with its ground truth."""

    name: str
    family: str
    split: str
    timestamps: np.ndarray
    values: np.ndarray
    anomalies: tuple[Anomaly, ...]


@dataclass
class Model:
    """The additive parts of one series in model space (see the module docstring)."""

    ts: np.ndarray
    level: np.ndarray
    season: np.ndarray
    noise: np.ndarray
    noise_sd: float
    season_amp: float = 0.0  # half the seasonal peak-to-trough range (0: no seasonality)
    season_fn: Callable[[np.ndarray], np.ndarray] | None = None  # the season at other times
    season_gain: np.ndarray = field(init=False)
    noise_gain: np.ndarray = field(init=False)
    extra: np.ndarray = field(init=False)
    post: list[Callable[[np.ndarray], None]] = field(default_factory=list)  # output-level faults

    def __post_init__(self) -> None:
        n = len(self.ts)
        self.season_gain = np.ones(n)
        self.noise_gain = np.ones(n)
        self.extra = np.zeros(n)

    @property
    def n(self) -> int:
        return len(self.ts)

    def render(self) -> np.ndarray:
        return np.asarray(self.level + self.season_gain * self.season + self.noise_gain * self.noise + self.extra)

    def finish(self, out: np.ndarray) -> np.ndarray:
        """Apply the output-level faults (stuck values, outages) to the rendered metric."""
        for fault in self.post:
            fault(out)
        return out


# ------------------------------------------------------------------------------- primitives


def timestamps(rng: np.random.Generator, n: int, step: float, jitter: float = 0.0) -> np.ndarray:
    """``n`` timestamps ``step`` seconds apart from a random time of day; ``jitter`` > 0 makes the
    intervals irregular (each step times a uniform factor in 1 +- jitter)."""
    t0 = T_MIDNIGHT + float(rng.integers(0, 86_400 // 300)) * 300.0
    steps = np.full(n, step)
    if jitter > 0.0:
        steps = step * (1.0 + jitter * (2.0 * rng.random(n) - 1.0))
    steps[0] = 0.0
    return t0 + np.cumsum(steps)


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float, df: float | None = None) -> np.ndarray:
    """Stationary AR(1) with marginal sd ``sd``; Student-t innovations with ``df`` degrees of
    freedom (heavy-tailed, rescaled to unit variance) when given."""
    if df is None:
        eps = rng.standard_normal(n)
    else:
        eps = rng.standard_t(df, n) / np.sqrt(df / (df - 2.0))
    eps *= sd * np.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    prev = rng.standard_normal() * sd
    for i in range(n):
        prev = phi * prev + eps[i]
        out[i] = prev
    return out


def daily_curve(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """A random smooth daily load curve in about [-1, 1] (two or three harmonics, random phase)."""
    phase = rng.uniform(0.0, 2.0 * np.pi)
    a2 = rng.uniform(0.0, 0.5)
    p2 = rng.uniform(0.0, 2.0 * np.pi)
    a3 = rng.uniform(0.0, 0.25)
    p3 = rng.uniform(0.0, 2.0 * np.pi)
    grid = np.linspace(0.0, 2.0 * np.pi, 512, endpoint=False)
    ref = np.sin(grid + phase) + a2 * np.sin(2.0 * grid + p2) + a3 * np.sin(3.0 * grid + p3)
    norm = (ref.max() - ref.min()) / 2.0

    def curve(ts: np.ndarray) -> np.ndarray:
        x = 2.0 * np.pi * ((ts - T_MIDNIGHT) / DAY)
        return np.asarray((np.sin(x + phase) + a2 * np.sin(2.0 * x + p2) + a3 * np.sin(3.0 * x + p3)) / norm)

    return curve


def weekend_mask(ts: np.ndarray) -> np.ndarray:
    """True on Saturdays and Sundays (UTC)."""
    day = np.floor((ts - T_MIDNIGHT) / DAY).astype(np.int64)
    return ((day + 1) % 7) >= 5  # T_MIDNIGHT is a Tuesday: day 4 is Saturday, 5 Sunday


def benign_spikes(rng: np.random.Generator, n: int, rate: float, lo: float, hi: float,
                  sign: float = 1.0, max_width: int = 1) -> np.ndarray:
    """Occasional outliers that are part of normal behaviour (GC pauses, retries, batch jobs)."""
    out = np.zeros(n)
    for i in np.flatnonzero(rng.random(n) < rate):
        w = int(rng.integers(1, max_width + 1))
        out[i:i + w] += sign * rng.uniform(lo, hi)
    return out


# ------------------------------------------------------------------------------- injectors
# Each takes (model, rng, onset) and returns the anomaly's end index; it changes ``model``.


def spike(m: Model, rng: np.random.Generator, i: int, sign: float = 0.0) -> int:
    """One to three samples far out (5-12 sd): a latency spike, a burst, a failed scrape dip."""
    s = sign if sign else (1.0 if rng.random() < 0.75 else -1.0)
    w = int(rng.integers(1, 4))
    m.extra[i:i + w] += s * rng.uniform(5.0, 12.0) * m.noise_sd
    return i + w


def level_shift(m: Model, rng: np.random.Generator, i: int, sign: float = 0.0, lo: float = 3.0,
                hi: float = 7.0) -> int:
    """A persistent step of 3-7 sd (a deploy, a lost replica); it lasts to the end or ends after
    a long while (the fix), and the return is not labelled."""
    s = sign if sign else (1.0 if rng.random() < 0.6 else -1.0)
    end = m.n if rng.random() < 0.5 else min(m.n, i + int(rng.integers(300, 900)))
    m.level[i:end] += s * rng.uniform(lo, hi) * m.noise_sd
    return end


def variance_change(m: Model, rng: np.random.Generator, i: int) -> int:
    """The noise widens 3-5x for a while (a noisy neighbour, contention), median unchanged."""
    end = min(m.n, i + int(rng.integers(150, 500)))
    m.noise_gain[i:end] *= rng.uniform(3.0, 5.0)
    return end


def season_flat(m: Model, rng: np.random.Generator, i: int) -> int:
    """The daily pattern goes flat for about a day (a holiday, a stuck load balancer), no level
    change: only a model of the time of day can see it."""
    dt = float(np.median(np.diff(m.ts)))
    end = min(m.n, i + int(DAY / dt))
    m.season_gain[i:end] = rng.uniform(0.0, 0.2)
    return end


def season_shape(m: Model, rng: np.random.Generator, i: int) -> int:
    """The daily pattern changes shape for a day or more: it runs 4-10 hours early or late."""
    assert m.season_fn is not None
    dt = float(np.median(np.diff(m.ts)))
    end = min(m.n, i + int(rng.uniform(1.0, 2.0) * DAY / dt))
    shift = rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 10.0) * HOUR
    m.season[i:end] = m.season_amp * m.season_fn(m.ts[i:end] + shift)
    return end


def spike_density(m: Model, rng: np.random.Generator, i: int) -> int:
    """Moderate spikes (3-7 sd) whose rate rises from 0 to 10-30 % of samples within 60-200
    samples and stays there a while (a failing disk, retry storms building up)."""
    rise = int(rng.integers(60, 200))
    end = min(m.n, i + rise + int(rng.integers(100, 300)))
    p_max = rng.uniform(0.1, 0.3)
    k = np.arange(end - i)
    p = p_max * np.minimum(1.0, (k + 1) / rise)
    hit = rng.random(end - i) < p
    hit[0] = True  # the onset is the first extra spike
    m.extra[i:end] += hit * rng.uniform(3.0, 7.0, end - i) * m.noise_sd
    return end


def ramp(m: Model, rng: np.random.Generator, i: int, sign: float = 0.0) -> int:
    """A slow ramp: the level moves 6-15 sd over 100-500 samples, then stays (a leak, a filling
    disk, a slow degradation)."""
    s = sign if sign else (1.0 if rng.random() < 0.7 else -1.0)
    d = int(rng.integers(100, 500))
    total = s * rng.uniform(6.0, 15.0) * m.noise_sd
    k = np.arange(m.n - i)
    m.level[i:] += total * np.minimum(1.0, (k + 1) / d)
    return min(m.n, i + d)


def seasonal_jump(m: Model, rng: np.random.Generator, i: int) -> int:
    """A jump of 0.6-1.0x the seasonal half-range towards the daily mean, for 30-150 samples: it
    stays inside the normal daily range and is wrong only for the time of day."""
    s = -1.0 if m.season[i] > 0.0 else 1.0
    end = min(m.n, i + int(rng.integers(30, 150)))
    m.level[i:end] += s * rng.uniform(0.6, 1.0) * m.season_amp
    return end


def flatline(m: Model, rng: np.random.Generator, i: int) -> int:
    """The exporter or sensor freezes: the same value repeats for 30-300 samples."""
    end = min(m.n, i + int(rng.integers(30, 300)))

    def stuck(out: np.ndarray) -> None:
        out[i:end] = out[i - 1]

    m.post.append(stuck)
    return end


def outage(m: Model, rng: np.random.Generator, i: int) -> int:
    """The metric drops to zero for 5-100 samples (a crashed process, no traffic reaching it)."""
    end = min(m.n, i + int(rng.integers(5, 100)))

    def zero(out: np.ndarray) -> None:
        out[i:end] = 0.0

    m.post.append(zero)
    return end


INJECTORS: dict[str, Callable[..., int]] = {
    SPIKE: spike, LEVEL_SHIFT: level_shift, VARIANCE: variance_change, SEASON_FLAT: season_flat,
    SEASON_SHAPE: season_shape, SPIKE_DENSITY: spike_density, RAMP: ramp, SEASONAL_JUMP: seasonal_jump,
    FLATLINE: flatline, OUTAGE: outage,
}


def place(rng: np.random.Generator, m: Model, kinds: list[str], first: int, gap: int, until: int | None = None,
          **options: dict[str, float]) -> tuple[Anomaly, ...]:
    """Inject ``kinds`` in order at random onsets between ``first`` and ``until`` (default: the
    end), at least ``gap`` samples after the previous anomaly's end (so windows do not overlap and
    the previous recovery is over). ``options[kind]`` are extra keyword arguments for that kind's
    injector."""
    out = []
    slots = len(kinds)
    lo = first
    last = m.n if until is None else until
    for j, kind in enumerate(kinds):
        room = (last - lo) // (slots - j)
        hi = lo + max(1, room - gap)
        i = int(rng.integers(lo, max(lo + 1, hi)))
        end = INJECTORS[kind](m, rng, i, **options.get(kind, {}))
        out.append(Anomaly(i, end, kind))
        lo = min(m.n - 1, max(i + gap, min(end, i + 3 * gap)) + gap // 2)
    return tuple(out)
