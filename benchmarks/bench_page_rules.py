"""What the fast page rules cost the evaluator: one ``evaluate()`` of the seed's SLAs over full
windows in steady state (clock +5 s and 5 s of new samples between evaluations, as in
``bench_evaluate.py``), page rules on (their 60 s windows in the plan, the burn-rate reads and the
per-rule lifecycles) against page rules off, timed round-robin in the same run on managers fed
the same samples.

    python benchmarks/bench_page_rules.py
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from _common import fill_full, fmt_ns, header, interleaved_medians, verdict

from aphrodite_sla import ManualClock
from aphrodite_sla.sla.defaults import default_thresholds
from aphrodite_sla.sla.manager import SLAManager
from aphrodite_sla.sla.page_rules import PageRulesConfig

STEP_S = 5.0
ROUNDS = 40
TARGET_ADDED_NS = 1e6  # the pages may add at most 1 ms to an evaluation (0.02% of the 5 s interval, off the event loop)


def build(pages: bool) -> tuple[SLAManager, ManualClock]:
    clock = ManualClock(0.0)
    mgr = SLAManager(default_thresholds(), clock=clock, anomaly_detection=False, regression_interval_s=math.inf,
                     page_rules=PageRulesConfig(enabled=pages))
    fill_full(mgr, clock, np.random.default_rng(7))
    for _ in range(5):  # warm: incremental window states, the kernel
        clock.advance(STEP_S)
        mgr.evaluate()
    return mgr, clock


def stepper(mgr: SLAManager, clock: ManualClock, seed: int):
    """One timed call = record 5 s of new samples (untimed share is small) and evaluate."""
    from _common import fill_all

    rng = np.random.default_rng(seed)

    def step() -> None:
        t0 = clock()
        clock.advance(STEP_S)
        fill_all(mgr, rng, t0, clock())
        mgr.evaluate()

    return step


def main() -> None:
    header("bench_page_rules: evaluate() with the fast page rules on vs off (same run, round-robin)")
    on, on_clock = build(True)
    off, off_clock = build(False)
    res = interleaved_medians({"pages on": (stepper(on, on_clock, 1), 1), "pages off": (stepper(off, off_clock, 1), 1)},
                              rounds=ROUNDS)
    ratio = res["pages on"] / res["pages off"]
    print(f"   record 5 s of samples + evaluate(), {len(on.thresholds)} SLAs, windows in the plan: "
          f"{on._evaluator.plan().windows} on vs {off._evaluator.plan().windows} off")
    print(f"   pages on:  {fmt_ns(res['pages on'])}")
    print(f"   pages off: {fmt_ns(res['pages off'])}")
    added = res["pages on"] - res["pages off"]
    print(f"   ratio {ratio:.2f}x; added {fmt_ns(added)} per evaluation (target <= {fmt_ns(TARGET_ADDED_NS)}): "
          f"{verdict(added <= TARGET_ADDED_NS)}")


if __name__ == "__main__":
    main()
