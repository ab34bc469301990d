"""RCA accuracy per fault kind on simulated incidents (aphrodite_sla.sim.incident_cases).

Prints, per cause and macro-averaged: AC@1, AC@3, Avg@5 of the cause, AC@3 of the root metric,
AC@1 of the category, AC@1 with the onset shifted by -60 and +120 s; the same AC@1/AC@3 for the
seed's Pearson ranking and for plain robust scoring without the graph (BARO), computed on the
same cases in the same run; the chance level; specificity on healthy windows (no confident cause
at the production confidence threshold); the expected calibration error on the held-out half (an
isotonic fit on the development half: even case indices develop, odd ones are held out) and the
held-out error of the table production ships (``rca/calibration_table.py``); the time spent
generating cases vs analysing them, p50/p99 analysis time, and p50/p99 of an analysis of 60
minutes x 40 series against plain robust scoring of the same frame in the same run.

Usage: python benchmarks/bench_rca.py [--per-cause 20] [--healthy 40] [--causes a,b] [--seed0 0]
       [--write-calibration]   (refit the shipped table on the development half and write it)
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from aphrodite_sla.rca.attribution import robust_ranking
from aphrodite_sla.rca.calibration import Calibration, expected_calibration_error, shipped_calibration, write_table
from aphrodite_sla.rca.causes import BY_ROOT_NODE, CAUSES, INSUFFICIENT_EVIDENCE
from aphrodite_sla.rca.correlation import pearson_ranking
from aphrodite_sla.rca.engine import MIN_CONFIDENCE, RCAEngine
from aphrodite_sla.rca.frame import Frame, build_frame, mapping_reader
from aphrodite_sla.rca.graph import SERIES_TO_NODE
from aphrodite_sla.sim.incident_cases import CAUSE_FAULTS, HEALTHY, case_grid, simulate_incident

DETECTION_DELAY_S = 60.0
BIN_S = 5.0
SHIFTS_S = (-60, 120)


@dataclass
class Row:
    cause: str
    root: str
    category: str
    causes: list[str]
    metrics: list[str]
    primary_category: str
    raw: float
    insufficient: bool
    shifted_ok: list[bool]
    pearson: list[str]
    robust: list[str]


def _causes_of(nodes: list[str]) -> list[str]:
    return [BY_ROOT_NODE[n].name for n in nodes if n in BY_ROOT_NODE]


def avg_at_5(ranked: list[str], truth: str) -> float:
    return float(np.mean([truth in ranked[:k] for k in range(1, 6)]))


def hour_of_forty(engine: RCAEngine, repeats: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per analysis of 60 minutes of every graph node plus series outside the graph (40
    in all), ``repeats`` times; and of plain robust scoring (BARO) of the same frame."""
    rng = np.random.default_rng(0)
    n = int(3600 / BIN_S)
    from aphrodite_sla.rca.graph import GRAPH

    values = {node.name: rng.normal(100.0, 5.0, n) for node in GRAPH}
    for i in range(40 - len(values)):  # series outside the graph (custom SLIs): correlated only
        values[f"extra_series_{i}"] = rng.normal(50.0, 5.0, n)
    values["arrival_rate"][-30:] *= 3.0
    frame = Frame(np.arange(1, n + 1) * BIN_S, BIN_S, values)
    full, plain = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.analyze_frame(frame, "ttft_ms", n - 2)
        t1 = time.perf_counter()
        robust_ranking(frame, n - 12, n - 1)
        full.append(t1 - t0)
        plain.append(time.perf_counter() - t1)
    return np.asarray(full), np.asarray(plain)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-cause", "--cases-per-cause", dest="per_cause", type=int, default=20)
    ap.add_argument("--healthy", type=int, default=40)
    ap.add_argument("--causes", default="", help="comma-separated causes to run (default: all; 'healthy' for the healthy windows)")
    ap.add_argument("--seed0", type=int, default=0, help="first seed of the case grid (another value: fresh cases)")
    ap.add_argument("--write-calibration", action="store_true",
                    help="fit the isotonic calibration on the development half and write rca/calibration_table.py")
    args = ap.parse_args()
    t_start = time.perf_counter()
    engine = RCAEngine(with_diagnostics=False, min_confidence=0.0, calibration=Calibration())
    hour_of_forty(engine, repeats=2)  # the first analysis imports scipy's distributions: not an analysis's time
    rows: list[Row] = []
    runtimes = []
    generation_s = 0.0
    wanted = {c for c in args.causes.split(",") if c}
    for case in case_grid(args.per_cause, args.healthy, seed0=args.seed0):
        if wanted and case.cause not in wanted:
            continue
        t_gen = time.perf_counter()
        data = simulate_incident(case)
        generation_s += time.perf_counter() - t_gen
        detect = data.onset_time + DETECTION_DELAY_S
        frame = build_frame(mapping_reader(data.series), data.window_start, detect + BIN_S, BIN_S)
        sli = SERIES_TO_NODE.get(data.sli, data.sli)
        t0 = time.perf_counter()
        a = engine.analyze_frame(frame, sli, len(frame) - 2)
        runtimes.append(time.perf_counter() - t0)
        onset_bin = int((data.onset_time - data.window_start) / BIN_S)
        shifted = [engine.analyze_frame(frame, sli, len(frame) - 2, onset_index=onset_bin + s // int(BIN_S)).ranked_causes()[:1]
                   == [case.cause] for s in SHIFTS_S]
        end = len(frame) - 1
        pearson = pearson_ranking(frame.values[sli][:end], {k: v[:end] for k, v in frame.values.items() if k != sli}) \
            if sli in frame.values else []
        robust = robust_ranking(frame, a_onset(a, frame), end)
        rows.append(Row(case.cause, data.root_node, data.category, a.ranked_causes(), a.ranked_metrics(),
                        a.primary_root_cause.category, float(a.diagnostics.get("raw_confidence", 0.0)),
                        a.insufficient_evidence, shifted, _causes_of(pearson), _causes_of(robust)))
    print(f"{'cause':29s} {'n':>3s} {'AC@1':>5s} {'AC@3':>5s} {'Avg@5':>5s} {'root@3':>6s} {'cat@1':>5s} {'shift@1':>7s} "
          f"{'pearson@1':>9s} {'@3':>4s} {'robust@1':>8s} {'@3':>4s}")
    macro = []
    for cause in CAUSE_FAULTS:
        sel = [r for r in rows if r.cause == cause]
        if not sel:
            continue
        vals = (
            np.mean([r.causes[:1] == [cause] for r in sel]), np.mean([cause in r.causes[:3] for r in sel]),
            np.mean([avg_at_5(r.causes, cause) for r in sel]), np.mean([r.root in r.metrics[:3] for r in sel]),
            np.mean([r.primary_category == r.category for r in sel]), np.mean([np.mean(r.shifted_ok) for r in sel]),
            np.mean([r.pearson[:1] == [cause] for r in sel]), np.mean([cause in r.pearson[:3] for r in sel]),
            np.mean([r.robust[:1] == [cause] for r in sel]), np.mean([cause in r.robust[:3] for r in sel]),
        )
        macro.append(vals)
        print(f"{cause:29s} {len(sel):3d} " + " ".join(f"{v:{w}.2f}" for v, w in zip(vals, (5, 5, 5, 6, 5, 7, 9, 4, 8, 4))))
    m = np.mean(macro, axis=0)
    print(f"{'MACRO':29s} {'':3s} " + " ".join(f"{v:{w}.2f}" for v, w in zip(m, (5, 5, 5, 6, 5, 7, 9, 4, 8, 4))))
    print(f"worst cause AC@1: {min(v[0] for v in macro):.2f}; chance: AC@1 {1 / len(CAUSES):.3f}, AC@3 {3 / len(CAUSES):.3f} "
          f"over {len(CAUSES)} causes")
    faults = [r for r in rows if r.cause != HEALTHY]
    dev, held = faults[0::2], faults[1::2]
    correct = [r.causes[:1] == [r.cause] for r in faults]
    cal = Calibration().fit([r.raw for r in dev], [r.causes[:1] == [r.cause] for r in dev])

    def ece(rs: list[Row]) -> float:
        return expected_calibration_error([cal(r.raw) for r in rs], [r.causes[:1] == [r.cause] for r in rs])

    shipped = shipped_calibration()
    shipped_ece = expected_calibration_error([shipped(r.raw) for r in held], correct[1::2]) if shipped.fitted else float("nan")
    print(f"AC@1 development half {np.mean(correct[0::2]):.2f}, held-out half {np.mean(correct[1::2]):.2f}; "
          f"calibration error (ECE, isotonic fit on the development half): dev {ece(dev):.3f}, held-out {ece(held):.3f} "
          f"(raw confidence, no fit: {expected_calibration_error([r.raw for r in held], correct[1::2]):.3f}); "
          f"held-out error of the shipped table: {shipped_ece:.3f}")
    if args.write_calibration:
        write_table(cal, f"Isotonic fit of raw confidence -> P(primary cause right) on the development half "
                         f"({len(dev)} cases, seed0={args.seed0}, {args.per_cause} per cause) of bench_rca.py's "
                         f"simulated incidents; held-out calibration error {ece(held):.3f}.")
        print("wrote aphrodite_sla/rca/calibration_table.py")
    healthy = [r for r in rows if r.cause == HEALTHY]
    if healthy:
        quiet = [r.insufficient or cal(r.raw) < MIN_CONFIDENCE or r.causes[:1] == [INSUFFICIENT_EVIDENCE] for r in healthy]
        print(f"specificity on {len(healthy)} healthy windows (incl. harmless changes): {np.mean(quiet):.2f}")
    full, plain = hour_of_forty(engine)
    print(f"analysis time per case: p50 {1000 * np.percentile(runtimes, 50):.1f} ms, p99 {1000 * np.percentile(runtimes, 99):.1f} ms; "
          f"generating the cases {generation_s:.0f} s, analysing them {sum(runtimes):.1f} s")
    print(f"60 min x 40 series ({len(full)} runs): p50 {1000 * np.median(full):.1f} ms, p99 {1000 * np.percentile(full, 99):.1f} ms; "
          f"plain robust scoring of the same frame p50 {1000 * np.median(plain):.2f} ms "
          f"(full analysis / plain: {np.median(full) / np.median(plain):.1f}x)")
    print(f"benchmark runtime {time.perf_counter() - t_start:.0f} s for {len(rows)} cases")


def a_onset(a: object, frame: Frame) -> int:
    """The onset bin the analysis used (the robust baseline uses the same one)."""
    at = getattr(a, "onset_at", float("nan"))
    if not np.isfinite(at):
        return max(1, len(frame) - 12)
    return int(round((at - (frame.times[0] - frame.bin_s)) / frame.bin_s))


if __name__ == "__main__":
    main()
