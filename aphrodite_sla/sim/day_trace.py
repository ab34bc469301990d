"""A generated day of LLM serving traffic, in the shape of the public traces: a daily load curve
(quiet night, a morning ramp, a lunch dip, an afternoon peak), traffic bursts on top, bursty
(gamma) inter-arrival gaps, heavy-tailed prompt and output lengths and conversational prefix
reuse (``synthetic_trace`` draws those). For the false-page benchmark: hours of healthy traffic
whose shape, not a flat rate, is what the page rules must not mistake for a fault.

How: ``synthetic_trace`` draws a unit-rate trace (gaps, lengths, block hashes) over Λ(end), the
integral of the rate curve, and each arrival u is moved to Λ⁻¹(u) (time rescaling), so the
arrival rate follows the curve while the gaps keep their burstiness and the requests their mix.
No data is shipped or fetched: everything is drawn from ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aphrodite_sla.sim.traces import synthetic_trace
from aphrodite_sla.sim.workload import TraceArrivals

DAY_S = 86_400.0


@dataclass(frozen=True)
class DayShape:
    """The rate curve: ``peak_rate`` x (``night`` + humps at ``morning_h`` and ``afternoon_h``),
    normalised so the busiest minute of the smooth curve is ``peak_rate``; bursts arrive about
    ``bursts_per_hour`` times an hour, last ``burst_mean_s`` on average (exponential, 20 s .. 10
    min) and multiply the rate by a factor drawn from [``burst_low``, ``burst_high``] (where bursts
    overlap, by the largest of their factors: the rate never exceeds ``burst_high`` x the curve)."""

    peak_rate: float = 8.0
    night: float = 0.15
    morning_h: float = 10.5
    afternoon_h: float = 15.5
    lunch_dip: float = 0.15
    bursts_per_hour: float = 1.0
    burst_mean_s: float = 90.0
    burst_low: float = 1.3
    burst_high: float = 2.0
    burstiness: float = 1.5  # coefficient of variation of the gaps (1: Poisson)

    def __post_init__(self) -> None:
        if not (self.peak_rate > 0 and math.isfinite(self.peak_rate)):
            raise ValueError(f"DayShape.peak_rate must be > 0, got {self.peak_rate!r}")
        if not 0 <= self.night < 1 or not 0 <= self.lunch_dip < 1:
            raise ValueError("DayShape: night and lunch_dip are shares of the peak, in [0, 1)")
        if not 1 <= self.burst_low <= self.burst_high or self.bursts_per_hour < 0 or self.burst_mean_s <= 0:
            raise ValueError("DayShape: need 1 <= burst_low <= burst_high, bursts_per_hour >= 0, burst_mean_s > 0")
        if self.burstiness <= 0:
            raise ValueError(f"DayShape.burstiness must be > 0, got {self.burstiness!r}")

    def smooth(self, t_s: np.ndarray) -> np.ndarray:
        """The curve without bursts (requests per second) at times of day ``t_s``."""
        h = (np.asarray(t_s, dtype=float) % DAY_S) / 3600.0
        day = np.exp(-0.5 * ((h - self.morning_h) / 2.0) ** 2) + np.exp(-0.5 * ((h - self.afternoon_h) / 2.5) ** 2)
        day -= self.lunch_dip * np.exp(-0.5 * ((h - 12.75) / 0.6) ** 2)
        grid = np.linspace(0.0, 24.0, 24 * 60, endpoint=False)
        top = (np.exp(-0.5 * ((grid - self.morning_h) / 2.0) ** 2) + np.exp(-0.5 * ((grid - self.afternoon_h) / 2.5) ** 2)
               - self.lunch_dip * np.exp(-0.5 * ((grid - 12.75) / 0.6) ** 2)).max()
        return self.peak_rate * (self.night + (1.0 - self.night) * np.clip(day / top, 0.0, None))


@dataclass(frozen=True)
class Burst:
    start_s: float
    duration_s: float
    factor: float


def burst_factors(grid: np.ndarray, bursts: list[Burst]) -> np.ndarray:
    """The factor the rate is multiplied by at each time of ``grid``: 1, or the largest factor
    of the bursts running then. Overlapping bursts do not multiply: the rate stays within
    ``burst_high`` x the curve, as the shape promises (two stacked bursts once reached 3.2x,
    past the simulated engine's capacity at the peak: an overload, not a healthy day)."""
    out = np.ones_like(grid, dtype=float)
    for b in bursts:
        during = (grid >= b.start_s) & (grid < b.start_s + b.duration_s)
        out[during] = np.maximum(out[during], b.factor)
    return out


def day_trace(duration_s: float = DAY_S, shape: DayShape | None = None, *, seed: int = 0, start_s: float = 0.0,
              prompt_median: float = 1024.0, output_median: float = 200.0) -> tuple[TraceArrivals, list[Burst]]:
    """``duration_s`` of the day from ``start_s`` (seconds after midnight) as a trace, and the
    bursts drawn into it. Arrival times start at 0."""
    shape = shape or DayShape()
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"day_trace: duration_s must be > 0, got {duration_s!r}")
    rng = np.random.default_rng([seed, 1])
    grid = np.arange(0.0, duration_s + 1.0, 1.0)
    rate = shape.smooth(grid + start_s)
    bursts: list[Burst] = []
    n_bursts = rng.poisson(shape.bursts_per_hour * duration_s / 3600.0)
    for start in np.sort(rng.uniform(0.0, duration_s, n_bursts)):
        length = float(np.clip(rng.exponential(shape.burst_mean_s), 20.0, 600.0))
        factor = float(rng.uniform(shape.burst_low, shape.burst_high))
        bursts.append(Burst(float(start), length, factor))
    rate = rate * burst_factors(grid, bursts)
    cum = np.concatenate(([0.0], np.cumsum((rate[1:] + rate[:-1]) / 2.0)))  # Λ on the 1-s grid
    unit = synthetic_trace(float(cum[-1]), 1.0, seed=seed, burstiness=shape.burstiness, prompt_median=prompt_median,
                           output_median=output_median)
    times = np.interp(np.asarray(unit.arrival_s), cum, grid)
    trace = TraceArrivals(
        tuple(times.tolist()), unit.prompt_tokens, unit.output_tokens,
        source=f"day_trace(peak={shape.peak_rate:g}/s, seed={seed}, from {start_s / 3600:g}h)",
        block_hashes=unit.block_hashes, hash_block_size=unit.hash_block_size,
    )
    return trace, bursts


def trace_slice(trace: TraceArrivals, start_s: float, end_s: float) -> TraceArrivals:
    """The requests arriving in [start_s, end_s), shifted to start at 0 (a stretch of a day to
    replay on its own, e.g. with a fault injected)."""
    times = np.asarray(trace.arrival_s)
    lo, hi = int(np.searchsorted(times, start_s, "left")), int(np.searchsorted(times, end_s, "left"))
    if hi <= lo:
        raise ValueError(f"trace_slice: no request in [{start_s:g}, {end_s:g})")
    return TraceArrivals(
        tuple((times[lo:hi] - start_s).tolist()), trace.prompt_tokens[lo:hi], trace.output_tokens[lo:hi],
        source=f"{trace.source}[{start_s:g}s:{end_s:g}s]",
        block_hashes=trace.block_hashes[lo:hi] if trace.block_hashes else (), hash_block_size=trace.hash_block_size,
    )


__all__ = ["DAY_S", "Burst", "DayShape", "burst_factors", "day_trace", "trace_slice"]
