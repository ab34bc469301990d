"""The engine simulator's speed: microseconds per engine step and an hour of engine time in wall
seconds, against real time (the baseline: the engine itself takes 3600 s for that hour).

Why it matters: the simulator drives the demo, the tests and the benchmarks of detection, RCA and
recovery; an hour of engine time must take seconds, not minutes (target: <= 30 s on this 2-core
machine, ratio >= 120x real time).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import header, verdict

from aphrodite_sla.sim import SCENARIOS, EngineSimulator

TARGET_HOUR_WALL_S = 30.0


def main() -> None:
    header("bench_simulator: continuous-batching engine simulator")
    sim = EngineSimulator(SCENARIOS["steady"], seed=0)
    sim.run(120.0)  # a full batch
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        sim.step()
    per_step = (time.perf_counter() - t0) / n
    print(f"one step with ~{sim.num_running} running requests: {per_step * 1e6:.1f} us")
    hour = EngineSimulator(SCENARIOS["steady"].with_(duration_s=3600.0), seed=0)
    out = hour.run()
    ratio = out.engine_s / out.wall_s
    print(f"one hour of engine time ({out.steps:,} steps, {out.arrived:,} requests): {out.wall_s:.2f} s wall, "
          f"{ratio:,.0f}x real time; target <= {TARGET_HOUR_WALL_S:.0f} s: {verdict(out.wall_s <= TARGET_HOUR_WALL_S)}")


if __name__ == "__main__":
    main()
