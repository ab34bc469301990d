"""RCA accuracy per fault kind on simulated incidents (aphrodite_sla.sim.incident_cases).

Prints, per cause and macro-averaged: AC@1, AC@3, Avg@5 of the cause, AC@3 of the root metric,
AC@1 of the category; the chance level; specificity on healthy windows (no confident cause);
AC@1 with the onset shifted by -60..+120 s; the expected calibration error on the held-out half
(isotonic fit on the development half); p99 analysis time; the seed's Pearson ranking as a
baseline. Usage: python benchmarks/bench_rca.py [--per-cause 20] [--healthy 40]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from aphrodite_sla.rca.calibration import Calibration, expected_calibration_error
from aphrodite_sla.rca.causes import CAUSES
from aphrodite_sla.rca.correlation import pearson_ranking
from aphrodite_sla.rca.engine import RCAEngine
from aphrodite_sla.rca.frame import build_frame, mapping_reader
from aphrodite_sla.rca.graph import SERIES_TO_NODE
from aphrodite_sla.sim.incident_cases import CAUSE_FAULTS, HEALTHY, case_grid, simulate_case

DETECTION_DELAY_S = 60.0
BIN_S = 5.0


def avg_at_5(ranked: list[str], truth: str) -> float:
    return float(np.mean([truth in ranked[:k] for k in range(1, 6)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-cause", type=int, default=20)
    ap.add_argument("--healthy", type=int, default=40)
    args = ap.parse_args()
    t_start = time.perf_counter()
    engine = RCAEngine(with_diagnostics=False, min_confidence=0.0)
    rows = []
    runtimes = []
    for case in case_grid(args.per_cause, args.healthy):
        data = simulate_case(case)
        detect = data.onset_time + DETECTION_DELAY_S
        frame = build_frame(mapping_reader(data.series), data.window_start, detect + BIN_S, BIN_S)
        sli = SERIES_TO_NODE.get(data.sli, data.sli)
        t0 = time.perf_counter()
        a = engine.analyze_frame(frame, sli, len(frame) - 2)
        runtimes.append(time.perf_counter() - t0)
        onset_bin = int((data.onset_time - data.window_start) / BIN_S)
        shifted = []
        for shift in (-60, 120):
            b = engine.analyze_frame(frame, sli, len(frame) - 2, onset_index=onset_bin + shift // int(BIN_S))
            shifted.append(b.primary_root_cause.cause == case.cause)
        pearson = pearson_ranking(frame.values.get(sli, np.array([])), {k: v for k, v in frame.values.items() if k != sli}) \
            if sli in frame.values else []
        rows.append((case, data, a, shifted, pearson))
    causes = list(CAUSE_FAULTS)
    print(f"{'cause':30s} {'n':>3s} {'AC@1':>5s} {'AC@3':>5s} {'Avg@5':>5s} {'rootAC@3':>8s} {'catAC@1':>7s} {'shift':>5s} {'pearsonAC@3':>11s}")
    macro = []
    for cause in causes:
        sel = [r for r in rows if r[0].cause == cause]
        if not sel:
            continue
        ac1 = np.mean([r[2].ranked_causes()[:1] == [cause] for r in sel])
        ac3 = np.mean([cause in r[2].ranked_causes()[:3] for r in sel])
        av5 = np.mean([avg_at_5(r[2].ranked_causes(), cause) for r in sel])
        root = np.mean([r[1].root_node in r[2].ranked_metrics()[:3] for r in sel])
        cat = np.mean([r[2].primary_root_cause.category == r[1].category for r in sel])
        shift = np.mean([np.mean(r[3]) for r in sel])
        pear = np.mean([r[1].root_node in r[4][:3] for r in sel])
        macro.append((ac1, ac3, av5, root, cat, shift, pear))
        print(f"{cause:30s} {len(sel):3d} {ac1:5.2f} {ac3:5.2f} {av5:5.2f} {root:8.2f} {cat:7.2f} {shift:5.2f} {pear:11.2f}")
    m = np.mean(macro, axis=0)
    print(f"{'MACRO':30s} {'':3s} {m[0]:5.2f} {m[1]:5.2f} {m[2]:5.2f} {m[3]:8.2f} {m[4]:7.2f} {m[5]:5.2f} {m[6]:11.2f}")
    print(f"chance: AC@1 {1 / len(CAUSES):.3f}, AC@3 {3 / len(CAUSES):.3f} over {len(CAUSES)} causes")
    healthy = [r for r in rows if r[0].cause == HEALTHY]
    if healthy:
        spec = np.mean([r[2].insufficient_evidence for r in healthy])
        print(f"specificity on {len(healthy)} healthy windows (no confident cause): {spec:.2f}")
    faults = [r for r in rows if r[0].cause != HEALTHY]
    dev, held = faults[0::2], faults[1::2]
    raw = lambda rs: [float(r[2].diagnostics.get("raw_confidence", 0.0)) for r in rs]
    ok = lambda rs: [r[2].ranked_causes()[:1] == [r[0].cause] for r in rs]
    cal = Calibration().fit(raw(dev), ok(dev))
    print(f"calibration (isotonic on the dev half): ECE dev {expected_calibration_error([cal(x) for x in raw(dev)], ok(dev)):.3f}, "
          f"held-out {expected_calibration_error([cal(x) for x in raw(held)], ok(held)):.3f}; "
          f"AC@1 dev {np.mean(ok(dev)):.2f}, held-out {np.mean(ok(held)):.2f}")
    print(f"analysis time: p50 {1000 * np.percentile(runtimes, 50):.1f} ms, p99 {1000 * np.percentile(runtimes, 99):.1f} ms")
    print(f"benchmark runtime {time.perf_counter() - t_start:.0f} s for {len(rows)} cases")


if __name__ == "__main__":
    main()
