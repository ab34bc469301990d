"""When does the anomaly detector see a ramp, and could any statistic see it sooner? (issue 14)

A diagnostic, not a benchmark with a target: for every ramp of the development half of the
anomaly corpus (the held-out half is never read), it prints

* the ramp's length and the part of it inside its labelled window (the NAB window is centred on
  the onset: ``half`` samples after it),
* when the alert stream first fires after the onset (samples; ``-`` never within 3 windows),
  whether that is inside the window, and the kind the explanation names,
* how far the ramp has moved the level by the window's end, in the detector's healthy residual
  scale just before the onset (model space: log units for a log-transformed metric), and
* the largest |level z| and |drift z| inside the window beside the 99th percentile of each on
  the series' first healthy stretch (from sample 600 to the first anomaly): a ramp whose window
  holds nothing above that percentile cannot be found inside its window without paging on the
  healthy stretch as often.

Then the medians per outcome (found inside the window, late, missed).

    PYTHONPATH=. python benchmarks/anomaly_ramp_onsets.py
"""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from anomaly_corpus import corpus
from anomaly_corpus.model import RAMP, LabelledSeries
from bench_anomaly import alert_stream, windows_of

from aphrodite_sla.sla.anomaly import AnomalyDetector

HEALTHY_FROM = 600  # samples: the level statistics have learned their spreads by then


@dataclass(frozen=True)
class RampOnset:
    """One ramp window's outcome."""

    name: str
    length: int
    half: int  # samples of the window after the onset
    fired: int | None  # samples after the onset of the first alert, None if none
    kind: str
    rise: float  # level moved by the window's end, in healthy residual scales
    level_in: float  # largest |level z| inside the window
    drift_in: float
    level_q99: float  # 99th percentile of |level z| on the healthy stretch (NaN if too short)
    drift_q99: float

    @property
    def outcome(self) -> str:
        if self.fired is None:
            return "missed"
        return "inside" if self.fired <= self.half else "late"


def ramp_onsets(series: LabelledSeries) -> list[RampOnset]:
    ramps = [a for a in series.anomalies if a.kind == RAMP]
    if not ramps:
        return []
    det = AnomalyDetector()
    n = len(series.values)
    scores = np.zeros(n)
    level_z = np.zeros(n)
    drift_z = np.zeros(n)
    scale = np.full(n, np.nan)
    model = np.full(n, np.nan)
    kinds: list[str] = []
    for i, (v, t) in enumerate(zip(series.values.tolist(), series.timestamps.tolist())):
        scores[i] = det.update(v, t)
        ex = det.last_explanation
        kinds.append(ex.kind)
        level_z[i], drift_z[i], scale[i] = ex.level_z, ex.drift_z, ex.scale
        transform = det.transform
        if transform is not None:  # the model exists: the value in model space, deseasonalised
            model[i] = transform.forward(v) - ex.seasonal_offset
    alerts = alert_stream(scores).tolist()
    wins = windows_of(series)
    first = min(a.onset for a in series.anomalies)
    healthy = slice(HEALTHY_FROM, first)
    long_enough = first - HEALTHY_FROM >= 200
    q_level = float(np.quantile(np.abs(level_z[healthy]), 0.99)) if long_enough else float("nan")
    q_drift = float(np.quantile(np.abs(drift_z[healthy]), 0.99)) if long_enough else float("nan")
    out = []
    for a in ramps:
        w0, w1 = next(w for w in wins if w[0] <= a.onset <= w[1])
        fired = next((j - a.onset for j in alerts if a.onset <= j <= a.onset + 3 * (w1 - w0)), None)
        before = model[max(0, a.onset - 50):a.onset]
        at_end = model[max(a.onset, w1 - 9):w1 + 1]
        s = scale[a.onset - 1] if a.onset > 0 else float("nan")
        rise = float((np.nanmedian(at_end) - np.nanmedian(before)) / s) if s and s == s else float("nan")
        out.append(RampOnset(series.name, a.end - a.onset, w1 - a.onset, fired,
                             kinds[a.onset + fired] if fired is not None else "-", rise,
                             float(np.abs(level_z[a.onset:w1 + 1]).max()),
                             float(np.abs(drift_z[a.onset:w1 + 1]).max()), q_level, q_drift))
    return out


def main() -> None:
    rows = [r for s in corpus("dev") for r in ramp_onsets(s)]
    order = {"inside": 0, "late": 1, "missed": 2}
    print(f"{'series':18s} {'length':>6s} {'half':>5s} {'fired':>6s} {'outcome':8s} {'kind':14s} {'rise':>6s} "
          f"{'|lz| in':>8s} {'q99':>5s} {'|dz| in':>8s} {'q99':>5s}")
    for r in sorted(rows, key=lambda r: (order[r.outcome], r.name)):
        fired = "-" if r.fired is None else str(r.fired)
        print(f"{r.name:18s} {r.length:6d} {r.half:5d} {fired:>6s} {r.outcome:8s} {r.kind:14s} {r.rise:6.1f} "
              f"{r.level_in:8.1f} {r.level_q99:5.1f} {r.drift_in:8.1f} {r.drift_q99:5.1f}")
    print("\nmedians by outcome: ramps, |rise| at the window's end (scales), |level z| in the window / its healthy q99")
    for outcome in order:
        group = [r for r in rows if r.outcome == outcome]
        if not group:
            continue
        rises = [abs(r.rise) for r in group if r.rise == r.rise]
        rise = statistics.median(rises) if rises else float("nan")
        ratio = [r.level_in / r.level_q99 for r in group if r.level_q99 == r.level_q99 and r.level_q99 > 0]
        print(f"  {outcome:8s} {len(group):3d}  rise {rise:6.1f}  level z / q99 "
              f"{statistics.median(ratio) if ratio else float('nan'):5.2f}")


if __name__ == "__main__":
    main()
