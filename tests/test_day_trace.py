"""The generated day of traffic (``sim.day_trace``) the false-page benchmark replays: the rate
follows the daily curve with bursts on top, overlapping bursts do not multiply, and the draws are
deterministic by seed."""
from __future__ import annotations

import numpy as np
import pytest

from aphrodite_sla.sim.day_trace import DAY_S, Burst, DayShape, burst_factors, day_trace, trace_slice


def test_overlapping_bursts_take_the_largest_factor_not_the_product():
    grid = np.arange(0.0, 100.0, 1.0)
    f = burst_factors(grid, [Burst(10.0, 30.0, 1.5), Burst(20.0, 40.0, 1.8), Burst(70.0, 5.0, 1.2)])
    assert f[5] == 1.0 and f[65] == 1.0 and f[80] == 1.0  # outside every burst
    assert f[15] == pytest.approx(1.5)  # the first alone
    assert f[25] == pytest.approx(1.8)  # both: the larger, not 2.7
    assert f[45] == pytest.approx(1.8)  # the second alone
    assert f[72] == pytest.approx(1.2)
    assert f.max() <= 1.8


def test_the_rate_stays_within_the_shapes_largest_burst():
    """With bursts so frequent that they overlap all the time, the arrivals of any minute still
    stay near at most ``burst_high`` x the busiest smooth rate (stacked, they would reach 1.8^3)."""
    shape = DayShape(peak_rate=4.5, burst_low=1.7, burst_high=1.8, bursts_per_hour=30.0)
    overlaps = 0
    for seed in range(3):
        trace, bursts = day_trace(6 * 3600.0, shape, seed=seed, start_s=9 * 3600.0)
        ends = [b.start_s + b.duration_s for b in bursts]
        overlaps += sum(bursts[i + 1].start_s < max(ends[: i + 1]) for i in range(len(bursts) - 1))
        per_minute = np.bincount((np.asarray(trace.arrival_s) // 60.0).astype(int))
        # the busiest minute: Poisson-ish with bursty gaps around <= 4.5 * 1.8 * 60 = 486
        assert per_minute.max() < 486 * 1.35
    assert overlaps > 0  # the property was exercised


def test_arrivals_follow_the_daily_curve_and_the_seed():
    shape = DayShape(peak_rate=4.0, bursts_per_hour=0.0)
    trace, bursts = day_trace(DAY_S, shape, seed=3)
    assert bursts == []
    t = np.asarray(trace.arrival_s)
    assert np.all(np.diff(t) >= 0) and 0.0 <= t[0] and t[-1] <= DAY_S
    hours = np.bincount((t // 3600.0).astype(int), minlength=24)[:24]
    expected = np.array([shape.smooth(np.arange(h * 3600.0, (h + 1) * 3600.0, 10.0)).mean() * 3600.0 for h in range(24)])
    assert np.all(np.abs(hours - expected) < 0.15 * expected + 60)  # the night is quiet, the afternoon busy
    assert hours[3] < 0.3 * hours[15]
    again, _ = day_trace(DAY_S, shape, seed=3)
    assert again.arrival_s == trace.arrival_s and again.prompt_tokens == trace.prompt_tokens
    other, _ = day_trace(DAY_S, shape, seed=4)
    assert other.arrival_s != trace.arrival_s


def test_slices_and_bad_arguments():
    trace, _ = day_trace(3600.0, DayShape(peak_rate=2.0), seed=1, start_s=12 * 3600.0)
    piece = trace_slice(trace, 600.0, 1200.0)
    assert piece.arrival_s and min(piece.arrival_s) >= 0.0 and max(piece.arrival_s) < 600.0
    assert len(piece.arrival_s) == sum(600.0 <= a < 1200.0 for a in trace.arrival_s)
    with pytest.raises(ValueError, match="no request"):
        trace_slice(trace, 5000.0, 6000.0)
    with pytest.raises(ValueError, match="duration_s"):
        day_trace(0.0)
    with pytest.raises(ValueError, match="burst_low"):
        DayShape(burst_low=2.0, burst_high=1.5)
    with pytest.raises(ValueError, match="peak_rate"):
        DayShape(peak_rate=float("nan"))
