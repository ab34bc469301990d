"""An SLA statistic's recent healthy level, for the severe-breach page's relative line.

"Latency tripled" is relative: at night a latency SLA's p99 sits far below the bound the busy
hour set, so latency x3 lands at ~1.7x the bound -- a breach, not the 2x the absolute severe line
asks for -- and paged only through the burn rate, minutes later. The level the jump is measured
from is the SLA's own windowed statistic, averaged over time with exponential weights (an hour by default)
while the SLA is not breached, so a fault does not teach the level its own values, and a level is
used only once it has watched enough healthy time. O(1) per evaluation; no history kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class RecentLevel:
    """The time-weighted mean of one SLA's statistic over its healthy evaluations, older time
    weighing ``exp(-age / time_constant_s)``: a weighted sum over a weight, so the first minutes are
    a plain mean rather than the first value decaying slowly."""

    time_constant_s: float
    weighted_sum: float = 0.0
    weight_s: float = 0.0
    watched_s: float = 0.0  # healthy time folded in so far
    last_at: float = math.nan

    @property
    def value(self) -> float:
        return self.weighted_sum / self.weight_s if self.weight_s > 0.0 else math.nan

    def observe(self, now: float, value: float, healthy: bool) -> None:
        """Fold in the statistic at ``now`` for the time since the previous healthy evaluation, if
        the SLA is ``healthy`` (not breached) and the value finite; a breach or a gap restarts the
        clock, so neither a fault's values nor an idle stretch's time enter the level."""
        if not (healthy and math.isfinite(value)):
            self.last_at = math.nan
            return
        dt = now - self.last_at if math.isfinite(self.last_at) else 0.0
        self.last_at = now
        if dt <= 0.0:
            return
        keep = math.exp(-dt / self.time_constant_s)
        self.weighted_sum = self.weighted_sum * keep + value * dt
        self.weight_s = self.weight_s * keep + dt
        self.watched_s += dt

    def ready(self, min_watched_s: float) -> bool:
        value = self.value
        return self.watched_s >= min_watched_s and math.isfinite(value) and value > 0.0


__all__ = ["RecentLevel"]
