"""Detection quality and cost of ``AnomalyDetector`` on a labelled corpus, against baselines.

Run: ``python benchmarks/bench_anomaly.py`` (about 40 s; ``--dev`` scores only the development
half, which is what tuning may read; ``--set NAME=VALUE``, repeatable, runs the detector with a
config field changed, e.g. ``--dev --set spike_z=4.75``).

Corpus (``benchmarks/anomaly_corpus``): 312 deterministic series of 13 families of operational
behaviour (latency, per-interval LLM p95, regime-switching CPU, bursty event counts, sparse error
counts, sawtooth memory, seasonal throughput, drifting sensors, weekly+daily network traffic,
small integers, near-constant gauges, irregularly sampled road traffic, hourly business KPIs) with
743 labelled anomalies of 10 kinds (spike, level shift, variance change, daily pattern gone flat,
daily pattern shifted, rising spike density, slow ramp, jump inside the seasonal range, stuck
value, outage); about a third of the series miss stretches of samples. Series are split by a fixed
rule (even / odd number within the family) into a development half (tuning reads only this) and
a held-out half.

Scoring (the Numenta Anomaly Benchmark's window rules, standard profile):

* Each labelled anomaly gets a window of ``0.1 * len(series) / n_anomalies`` samples centred on
  its onset (overlapping windows merge). A causal detector can at best fire at the onset, the
  middle of its window.
* Per window, only the earliest detection counts: it earns ``A_TP * sigmoid(y)``, with ``y`` its
  position relative to the window's end in window lengths (-1 at the start, 0 at the end) and
  NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1`` (0.99 at the start, 0.85 at the centre, 0 at the
  end). A window without a detection costs ``A_FN``.
* Each detection outside every window costs ``A_FP``, weighted by the same sigmoid of its distance
  after the preceding window (a detection just after a window costs little, one far away the full
  ``A_FP``; one before any window the full ``A_FP``). Detections in the first 15 % of a series
  (the learning period, where no anomaly is placed) are ignored.
* Standard profile: ``A_TP = 1``, ``A_FP = 0.11``, ``A_FN = 1``. Raw scores are summed over the
  series of a half and normalised: ``100 * (raw - null) / (perfect - null)``, where the null
  detector never fires (every window missed) and the perfect one fires at each window's first
  sample and nowhere else. So 0 = silence, 100 = perfect, negative = worse than silence.

Detections are counted two ways: the **alert stream** (what an operator is paged with: an alert
when the score reaches 0.5, re-armed once it has fallen below 0.25, exactly the SLA manager's
hysteresis) and **raw samples** (every sample scoring >= 0.5 is a detection, as NAB counts).
Also printed: windows detected, alerting samples (raw) or alerts (stream) per 1,000 samples
outside windows, median delay from the onset to the first detection in a window (samples), a 90 %
interval of the detector's score over resamplings of each half's series (how far apart the halves
may be by chance), microseconds per ``update`` (median over the series of each series' mean, gc
off, in CPU time of the measuring thread: on a shared machine wall time would also count the
time slices of other processes), and false alarms per hour (alert stream) on 24-hour healthy series sampled every 5 s after
their first hour.

Baselines in the same run: the windowed z-score (``|z| > 2.5`` against the last 100 values) and a
windowed Gaussian (tail probability of each value under a Gaussian fitted to the last 6,400
values, as in NAB), both at their defaults and at the alert level that scores best on the
development half (a hindsight choice the detector does not get).

Targets: held-out alert-stream score >= 70, development and held-out within 10 points, <= 5 us per
update, well under one false alarm per 8 hours on healthy series.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import numpy as np
from anomaly_corpus import LabelledSeries, corpus, healthy_long

from aphrodite_sla.sla.anomaly import (
    AnomalyDetector,
    AnomalyDetectorConfig,
    WindowedGaussianDetector,
    WindowedZScoreDetector,
)

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0  # NAB standard profile
PROBATION = 0.15  # share of each series treated as the learning period
WINDOW_SHARE = 0.1  # share of each series covered by its anomaly windows
ALERT, REARM = 0.5, 0.25
TARGET_SCORE, TARGET_GAP, TARGET_US, TARGET_PER_HOUR = 70.0, 10.0, 5.0, 1.0 / 8.0


# ----------------------------------------------------------------------------- scoring


def scaled_sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: ~0.99 at y = -1 (a window's start), 0 at y = 0 (its end), towards -1
    after it."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def windows_of(series: LabelledSeries) -> list[tuple[int, int]]:
    """NAB windows (inclusive sample ranges) centred on each onset; overlapping ones merge."""
    n = len(series.values)
    k = len(series.anomalies)
    if not k:
        return []
    width = max(1, int(WINDOW_SHARE * n / k))
    out: list[tuple[int, int]] = []
    for a in sorted(series.anomalies, key=lambda a: a.onset):
        w0 = max(0, a.onset - width // 2)
        w1 = min(n - 1, w0 + width - 1)
        if out and w0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], w1))
        else:
            out.append((w0, w1))
    return out


def alert_stream(scores: np.ndarray) -> np.ndarray:
    """Indices where an alert is raised: score >= 0.5 while armed; re-armed below 0.25."""
    out = []
    armed = True
    for i, s in enumerate(scores.tolist()):
        if armed and s >= ALERT:
            out.append(i)
            armed = False
        elif not armed and s < REARM:
            armed = True
    return np.asarray(out, dtype=np.int64)


def raw_detections(scores: np.ndarray) -> np.ndarray:
    return np.flatnonzero(scores >= ALERT)


@dataclass
class Outcome:
    """One detector's result on one series (or a sum over series)."""

    raw: float = 0.0
    null: float = 0.0
    perfect: float = 0.0
    windows: int = 0
    detected: int = 0
    false_pos: int = 0
    outside: int = 0
    delays: list[int] = field(default_factory=list)

    def add(self, o: Outcome) -> None:
        """Sum another outcome into this one."""
        self.raw += o.raw
        self.null += o.null
        self.perfect += o.perfect
        self.windows += o.windows
        self.detected += o.detected
        self.false_pos += o.false_pos
        self.outside += o.outside
        self.delays += o.delays

    @property
    def score(self) -> float:
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span > 0 else 0.0

    @property
    def fp_per_1000(self) -> float:
        return 1000.0 * self.false_pos / max(self.outside, 1)

    @property
    def median_delay(self) -> float:
        return float(statistics.median(self.delays)) if self.delays else math.nan


def score_series(series: LabelledSeries, detections: np.ndarray) -> Outcome:
    """NAB-style score of one series' detections (see the module docstring)."""
    n = len(series.values)
    wins = windows_of(series)
    start = int(PROBATION * n)
    out = Outcome(windows=len(wins))
    in_window = np.zeros(n, dtype=bool)
    onsets = sorted(a.onset for a in series.anomalies)
    for w0, w1 in wins:
        in_window[w0:w1 + 1] = True
        length = w1 - w0 + 1
        out.perfect += A_TP * scaled_sigmoid(-(w1 - w0) / length)
        out.null -= A_FN
        hits = detections[(detections >= w0) & (detections <= w1)]
        if hits.size:
            j = int(hits[0])
            out.raw += A_TP * scaled_sigmoid((j - w1) / length)
            out.detected += 1
            onset = max(o for o in onsets if o <= w1) if any(o <= w1 for o in onsets) else w0
            inside = [o for o in onsets if w0 <= o <= w1]
            onset = inside[0] if inside else onset
            out.delays.append(j - onset)
        else:
            out.raw -= A_FN
    ends = [w1 for _, w1 in wins]
    lengths = [w1 - w0 + 1 for w0, w1 in wins]
    for j in detections.tolist():
        if j < start or in_window[j]:
            continue
        out.false_pos += 1
        k = int(np.searchsorted(ends, j)) - 1
        out.raw += A_FP * (scaled_sigmoid((j - ends[k]) / lengths[k]) if k >= 0 else -1.0)
    out.outside = int(np.count_nonzero(~in_window[start:]))
    return out


# ----------------------------------------------------------------------------- running


def run(make: Callable[[], object], series: LabelledSeries) -> tuple[np.ndarray, float]:
    """Scores of a fresh detector over the series, and its mean microseconds per update (gc off;
    the thread's CPU time, which other processes on the machine do not inflate)."""
    det = make()
    update = det.update  # type: ignore[attr-defined]
    ts = series.timestamps.tolist()
    vs = series.values.tolist()
    out = [0.0] * len(vs)
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.thread_time_ns()
        for i in range(len(vs)):
            out[i] = update(vs[i], ts[i])
        dt = time.thread_time_ns() - t0
    finally:
        if enabled:
            gc.enable()
    return np.asarray(out), dt / 1e3 / max(len(vs), 1)


_RUNS: dict[tuple[object, str], tuple[np.ndarray, float]] = {}


def run_cached(make: Callable[[], object], series: LabelledSeries) -> tuple[np.ndarray, float]:
    """``run``, once per detector and series in a process (the baselines' alert levels are
    rescalings of the same scores, and the per-kind table reads the same scores again)."""
    key = (make, series.name)
    if key not in _RUNS:
        _RUNS[key] = run(make, series)
    return _RUNS[key]


@dataclass
class HalfResult:
    stream: Outcome
    raw: Outcome
    us: list[float]
    per_series: list[tuple[str, Outcome]]


def evaluate(make: Callable[[], object], series_list: Sequence[LabelledSeries],
             alert: float = ALERT) -> HalfResult:
    stream, raw = Outcome(), Outcome()
    us: list[float] = []
    per: list[tuple[str, Outcome]] = []
    for s in series_list:
        scores, t = run_cached(make, s)
        if alert != ALERT:  # a baseline at another alert level: rescale so that level maps to 0.5
            scores = np.minimum(1.0, scores * (ALERT / alert))
        o = score_series(s, alert_stream(scores))
        stream.add(o)
        raw.add(score_series(s, raw_detections(scores)))
        us.append(t)
        per.append((s.name, o))
    return HalfResult(stream, raw, us, per)


def alarms_per_hour(make: Callable[[], object], series_list: Sequence[LabelledSeries],
                    skip_s: float = 3600.0) -> tuple[float, list[tuple[str, float]]]:
    total_alerts = 0
    total_hours = 0.0
    per = []
    for s in series_list:
        scores, _ = run(make, s)
        ts = s.timestamps
        keep = ts >= ts[0] + skip_s
        alerts = alert_stream(scores)
        k = int(np.count_nonzero(keep[alerts])) if alerts.size else 0
        hours = float(ts[-1] - ts[0] - skip_s) / 3600.0
        per.append((s.name, k / hours))
        total_alerts += k
        total_hours += hours
    return total_alerts / total_hours, per


def bootstrap_interval(per_series: Sequence[tuple[str, Outcome]], draws: int = 2000,
                       level: float = 0.9) -> tuple[float, float]:
    """A ``level`` interval of a half's score over resamplings of its series (with replacement,
    fixed seed): how far the score of a corpus this size moves with which series it happens to
    hold, so how far apart two halves may be by chance. (Two detectors scored on the same series
    differ by less by chance: their errors are on the same windows.)"""
    raw = np.array([o.raw for _, o in per_series])
    null = np.array([o.null for _, o in per_series])
    perfect = np.array([o.perfect for _, o in per_series])
    idx = np.random.default_rng(0).integers(0, raw.size, (draws, raw.size))
    n = null[idx].sum(axis=1)
    span = perfect[idx].sum(axis=1) - n
    scores = 100.0 * (raw[idx].sum(axis=1) - n) / np.where(span > 0.0, span, 1.0)
    lo, hi = np.quantile(scores, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def first_series(per_series: Sequence[tuple[str, Outcome]], first: int) -> Outcome:
    """The outcomes of the series numbered below ``first`` in their family, added up."""
    out = Outcome()
    for name, o in per_series:
        if int(name.rsplit("_", 1)[1]) < first:
            out.add(o)
    return out


def fmt(o: Outcome) -> str:
    rate = 100.0 * o.detected / max(o.windows, 1)
    return (f"{o.score:7.1f} {o.detected:3d}/{o.windows:<3d} {rate:4.0f}% {o.fp_per_1000:8.2f} "
            f"{o.median_delay:6.0f}")


def per_kind(make: Callable[[], object], series_list: Sequence[LabelledSeries]) -> dict[str, list[int]]:
    """Windows detected by the alert stream, per anomaly kind: kind -> [detected, total]."""
    out: dict[str, list[int]] = {}
    for s in series_list:
        scores, _ = run_cached(make, s)
        alerts = alert_stream(scores)
        for a in s.anomalies:
            w0, w1 = next(w for w in windows_of(s) if w[0] <= a.onset <= w[1])
            hit = bool(np.any((alerts >= w0) & (alerts <= w1)))
            row = out.setdefault(a.kind, [0, 0])
            row[0] += hit
            row[1] += 1
    return out


def detector_config(settings: Sequence[str]) -> AnomalyDetectorConfig:
    """The config ``--set NAME=VALUE`` settings describe: each value is read as JSON (``5.5``,
    ``true``, ``null``); an unknown field, a value that is not JSON or one the config refuses
    raises ``ValueError`` with the reason."""
    names = {f.name for f in dataclasses.fields(AnomalyDetectorConfig)}
    fields: dict[str, object] = {}
    for item in settings:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of AnomalyDetectorConfig's fields")
        try:
            fields[name] = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"--set {item!r}: the value must be JSON (a number, true/false or null)") from None
    try:
        return AnomalyDetectorConfig(**fields)  # type: ignore[arg-type]
    except TypeError as e:  # a value of the wrong type (a string for a number) fails a comparison
        raise ValueError(f"--set: {e}") from None


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--dev", action="store_true", help="development half only (what tuning may read)")
    ap.add_argument("--per-series", action="store_true", help="also print the detector's score per series")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="an AnomalyDetectorConfig field for this run (repeatable): measure a variant, with --dev, "
                         "before changing a default")
    args = ap.parse_args(argv)
    try:
        config = detector_config(args.set)
    except ValueError as e:
        ap.error(str(e))
    ours: Callable[[], object] = functools.partial(AnomalyDetector, config)
    if args.set:
        print("AnomalyDetector with " + ", ".join(args.set))
    dev = corpus("dev")
    halves = {"dev": dev} if args.dev else {"dev": dev, "heldout": corpus("heldout")}
    print("bench_anomaly: " + ", ".join(
        f"{h}: {len(ss)} series, {sum(len(s.anomalies) for s in ss)} anomalies, "
        f"{len({s.family for s in ss})} families" for h, ss in halves.items()))

    # the baselines' best alert level on the development half (a hindsight choice ours does not get)
    levels = (0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
    tuned: dict[str, float] = {}
    for tag, baseline in (("z", WindowedZScoreDetector), ("g", WindowedGaussianDetector)):
        tuned[tag] = max(levels, key=lambda a, m=baseline: evaluate(m, dev, a).stream.score)  # type: ignore[misc]
    rows: list[tuple[str, Callable[[], object], float]] = [
        ("AnomalyDetector", ours, ALERT),
        ("windowed z-score (|z|>2.5)", WindowedZScoreDetector, ALERT),
        (f"windowed z-score, dev-best {tuned['z']}", WindowedZScoreDetector, tuned["z"]),
        ("windowed Gaussian (p<1e-4)", WindowedGaussianDetector, ALERT),
        (f"windowed Gaussian, dev-best {tuned['g']}", WindowedGaussianDetector, tuned["g"]),
    ]
    head = f"{'score':>7s} {'found':>7s} {'rate':>5s} {'FP/1000':>8s} {'delay':>6s}"
    print(f"\n{'':32s} {'':7s} {'alert stream (one per episode)':^37s}   {'raw samples (each >= 0.5)':^37s}")
    print(f"{'':32s} {'half':7s} {head}   {head}")
    results: dict[tuple[str, str], HalfResult] = {}
    for label, make, alert in rows:
        for half, ss in halves.items():
            r = evaluate(make, ss, alert)
            results[(label, half)] = r
            print(f"{label:32s} {half:7s} {fmt(r.stream)}   {fmt(r.raw)}")
    print("  score: NAB standard profile, 0 = never alerting, 100 = perfect; found: windows with a detection;")
    print("  FP/1000: alerts (stream) or alerting samples (raw) per 1,000 samples outside windows;")
    print("  delay: median samples from the onset to the first detection in its window.")
    print("  AnomalyDetector alert-stream score, 90% interval over resamplings of the series: " + ", ".join(
        "{} {:.1f}-{:.1f}".format(h, *bootstrap_interval(results[("AnomalyDetector", h)].per_series))
        for h in halves))
    print("  AnomalyDetector alert-stream score on the corpus before it grew (its first 8 series a family): " + ", ".join(
        f"{h} {first_series(results[('AnomalyDetector', h)].per_series, 8).score:.1f}" for h in halves))

    us = statistics.median(t for h in halves for t in results[("AnomalyDetector", h)].us)
    zus = statistics.median(t for h in halves for t in results[("windowed z-score (|z|>2.5)", h)].us)
    gus = statistics.median(t for h in halves for t in results[("windowed Gaussian (p<1e-4)", h)].us)
    print(f"\nus per update (median over series, thread CPU time, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}): "
          f"AnomalyDetector {us:.2f}, windowed z-score {zus:.2f}, windowed Gaussian {gus:.2f}")

    print("\nAnomalyDetector, windows found by kind (alert stream):")
    kinds = {h: per_kind(ours, ss) for h, ss in halves.items()}
    for kind in sorted({k for d in kinds.values() for k in d}):
        print(f"  {kind:16s} " + "  ".join(f"{h} {kinds[h].get(kind, [0, 0])[0]:2d}/{kinds[h].get(kind, [0, 0])[1]:<2d}"
                                             for h in halves))
    if args.per_series:
        for h in halves:
            print(f"\nAnomalyDetector per series ({h}), alert stream:")
            for name, o in results[("AnomalyDetector", h)].per_series:
                print(f"  {name:22s} {fmt(o)}  raw {o.raw:+.2f}")

    healthy = healthy_long()
    rate, per = alarms_per_hour(ours, healthy)
    hours = sum(float(s.timestamps[-1] - s.timestamps[0]) / 3600.0 - 1.0 for s in healthy)
    print(f"\nhealthy series at 5 s ({len(healthy)} x 24 h, the first hour skipped: {hours:.0f} h): "
          f"{rate:.3f} false alarms per hour, {8.0 * rate:.2f} per 8 h")
    print("  " + ", ".join(f"{n.removeprefix('healthy_')} {r:.2f}/h" for n, r in per))

    if not args.dev:
        sd = results[("AnomalyDetector", "dev")].stream.score
        sh = results[("AnomalyDetector", "heldout")].stream.score
        print("\ntargets:")
        print(f"  held-out alert-stream score >= {TARGET_SCORE:.0f}: {sh:.1f} {verdict(sh >= TARGET_SCORE)}")
        print(f"  |dev - held-out| <= {TARGET_GAP:.0f}: {abs(sd - sh):.1f} {verdict(abs(sd - sh) <= TARGET_GAP)}")
        print(f"  <= {TARGET_US:.0f} us per update: {us:.2f} {verdict(us <= TARGET_US)}")
        print(f"  < 1 false alarm per 8 h on healthy series: {8.0 * rate:.2f} {verdict(rate < TARGET_PER_HOUR)}")


if __name__ == "__main__":
    main()
