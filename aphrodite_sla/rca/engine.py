"""``RCAEngine``: onset, scores, graph attribution, evidence, confidence, recommendations.

The onset is the strongest change of the SLI or the error series in the 15 minutes before the
detection, or a later clear change after the series had recovered from it; the incident window runs from it to the SLI's last bad bin (a
violation a sustained rule raised minutes after a short incident, or one analysed after recovery
ended it, is judged where the SLI was bad). Confidence is calibrated by the table shipped in
``calibration_table.py`` unless the caller passes its own.

Why one pass over one frame: every step reads the same aligned bins (``frame``), so an analysis of
an hour of forty series is a few numpy operations per node (bench_rca.py measures it). Nothing
here raises on bad data: gaps, constant series, NaN runs and short histories end in
"insufficient evidence" with the reasons.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.rca import diagnostics as diag
from aphrodite_sla.rca.attribution import ANOMALY_THRESHOLD, NodeScore, attribute
from aphrodite_sla.rca.calibration import Calibration, raw_confidence, shipped_calibration
from aphrodite_sla.rca.causes import BY_ROOT_NODE, CAUSES, INSUFFICIENT_EVIDENCE, Cause
from aphrodite_sla.rca.correlation import correlations
from aphrodite_sla.rca.frame import Frame, SeriesReader, build_frame
from aphrodite_sla.rca.graph import NODES, SERIES_TO_NODE, Node
from aphrodite_sla.rca.history import NodeHistory
from aphrodite_sla.rca.model import LeadingIndicator, RCAAnalysis, Recommendation, RootCause
from aphrodite_sla.rca.onset import MIN_SEGMENT_BINS, find_onset
from aphrodite_sla.rca.scoring import deviation

BIN_S = 5.0
LOOKBACK_S = 3600.0  # the seed's 60-minute window (as far as the rings reach)
LEAD_LOOKBACK_S = 1800.0  # the seed's 30-minute lookback for leading indicators
MIN_BASELINE_BINS = 6
# How far before the detection the onset may lie: the sustained rule needs ~5 minutes of a
# 5-minute window, a slow ramp a few more; twice that bounds it.
ONSET_SCAN_S = 900.0
ONSET_MIN_SHIFT = 3.0  # a later change: 3 pooled standard deviations between the two levels
RECOVERED_BINS = 6  # the bins before a later change in which the series must be back to normal
MIN_CONFIDENCE = 0.35
TAIL_BINS = 2  # bins kept after the SLI's last bad one
ERROR_NODES = ("engine_error_percent", "client_error_percent")
# The SLA already confirmed the violation (on its own statistic, often a tail quantile); the
# binned mean only has to show that the SLI moved at all in the incident window.
SLI_THRESHOLD = 1.5


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e5 else f"{x:.4g}"


def _onset(scan: dict[str, tuple[np.ndarray, int]], detect: int, fallback: int, bin_s: float) -> int:
    """The strongest change of the scanned series in the ONSET_SCAN_S before the detection, or a
    later clear change after that series had recovered from it (a new incident minutes after an
    older one ended, e.g. a traffic surge after a stall). A later wiggle while the series is still
    bad (shedding easing during a latency spike) is not a new onset."""
    floors = {k: NODES[k].floor for k in scan}
    first = max(0, detect + 1 - int(round(ONSET_SCAN_S / bin_s)))
    found = find_onset({k: (v[first:], bad) for k, (v, bad) in scan.items()}, detect - first, fallback - first, floors)
    onset = first + found.index
    if not found.series:
        return onset
    values, bad = scan[found.series]
    base = deviation(NODES[found.series], values[:onset], values[onset:detect + 1])
    if base is None:
        return onset
    # where the series was back to normal for RECOVERED_BINS bins in a row (the older incident over)
    z = np.nan_to_num(bad * (values[onset:detect + 1] - base.baseline) / base.scale, nan=0.0) < ANOMALY_THRESHOLD
    run = np.convolve(z.astype(float), np.ones(RECOVERED_BINS), mode="valid")
    calm = np.nonzero(run >= RECOVERED_BINS)[0]
    if len(calm) == 0:
        return onset
    later = onset + int(calm[0])
    if later >= detect - 2 * MIN_SEGMENT_BINS:
        return onset
    again = find_onset({k: (v[later:], b) for k, (v, b) in scan.items()}, detect - later, -1, floors)
    if again.statistic < ONSET_MIN_SHIFT or again.index < 0:
        return onset
    return later + again.index


def _incident_end(y: np.ndarray, node: Node, onset: int, end: int) -> int:
    """One past the SLI's last bad bin (plus TAIL_BINS), at most ``end``: a violation detected late
    (a sustained rule fills its window minutes after a short incident) or analysed after recovery
    ended the incident is judged on the bins where the SLI was bad, not diluted by recovered ones."""
    dev = deviation(node, y[:onset], y[onset:end])
    if dev is None:
        return end
    z = node.bad * (y[onset:end] - dev.baseline) / dev.scale
    bad = np.nonzero(np.nan_to_num(z, nan=-np.inf) > ANOMALY_THRESHOLD)[0]
    if len(bad) == 0:
        return end
    return int(min(end, max(onset + 2, onset + int(bad[-1]) + 1 + TAIL_BINS)))


class RCAEngine:
    """Analyses a violation over series read by ``reader`` (store name, t0, t1) -> (t, v)."""

    def __init__(self, reader: SeriesReader | None = None, *, clock: Clock = system_clock, bin_s: float = BIN_S,
                 lookback_s: float = LOOKBACK_S, calibration: Calibration | None = None,
                 min_confidence: float = MIN_CONFIDENCE, engine_state: Callable[[], dict[str, Any]] | None = None,
                 with_diagnostics: bool = True, keep_history: bool = False) -> None:
        self.reader = reader
        self.clock = clock
        self.bin_s = float(bin_s)
        self.lookback_s = float(lookback_s)
        # the table fitted on the benchmark's development half unless told otherwise
        self.calibration = calibration if calibration is not None else shipped_calibration()
        self.min_confidence = float(min_confidence)
        self.engine_state = engine_state
        self.with_diagnostics = with_diagnostics
        # an hour of binned nodes kept after each evaluation (``RCAService`` updates it)
        self.history = NodeHistory(reader, self.bin_s, self.lookback_s) if (reader is not None and keep_history) else None

    # -- the seed's API ---------------------------------------------------------------------------
    async def analyze_incident(self, violation: Any, recovery_execution: Any = None) -> RCAAnalysis:
        """Off the caller's loop (a worker thread): the analysis reads rings and runs numpy."""
        sla = str(getattr(violation, "source_metric", "") or getattr(violation, "metric_name", "") or "")
        at = float(getattr(violation, "detected_at", 0.0) or self.clock())
        analysis = await asyncio.to_thread(self.analyze, sla, at)
        if recovery_execution is not None:
            analysis.diagnostics["recovery_execution"] = {
                "procedure": str(getattr(recovery_execution, "procedure_id", "")),
                "status": str(getattr(recovery_execution, "status", "")),
            }
        return analysis

    def analyze(self, sla_series: str, detected_at: float, *, fingerprint: str = "", episode: str = "") -> RCAAnalysis:
        t0 = time.perf_counter()
        sli = SERIES_TO_NODE.get(sla_series, sla_series)
        if self.reader is None:
            analysis = self._insufficient(sli, detected_at, ["no series reader: the RCA engine is not attached to a monitor"])
        else:
            try:
                # everything up to now: an analysis made after the detection (the service waits a
                # little) sees the incident's first bins as well
                until = max(detected_at, float(self.clock()))
                end = until + self.bin_s
                if self.history is not None:
                    frame = self.history.frame(end)
                else:
                    frame = build_frame(self.reader, end - self.lookback_s, end, self.bin_s)
                # the last complete bin (one that ends at or before ``until``)
                detect = int(np.searchsorted(frame.times, until, side="right")) - 1
                analysis = self.analyze_frame(frame, sli, detect if detect >= 0 else len(frame) - 1)
            except Exception as exc:  # never an exception to the caller: a reason in the report
                analysis = self._insufficient(sli, detected_at, [f"analysis failed: {type(exc).__name__}: {exc}"])
        if math.isfinite(detected_at):  # the violation's detection (the frame ends at the analysis)
            analysis.detected_at = float(detected_at)
        if self.with_diagnostics:
            analysis.diagnostics.update(diag.collect(self.engine_state))
        analysis.fingerprint, analysis.episode = fingerprint, episode
        analysis.duration_s = time.perf_counter() - t0
        return analysis

    # -- the method ---------------------------------------------------------------------------------
    def analyze_frame(self, frame: Frame, sli: str, detect_index: int, onset_index: int | None = None) -> RCAAnalysis:
        """The analysis of ``frame`` for the SLI node ``sli`` detected at bin ``detect_index``;
        ``onset_index`` overrides the change-point scan (the benchmark's onset-shift test)."""
        t_start = time.perf_counter()
        n = len(frame)
        detected_at = float(frame.times[detect_index]) if 0 <= detect_index < n else math.nan
        reasons: list[str] = []
        if sli not in NODES:
            reasons.append(f"the violated series {sli!r} is not in the causal graph")
        elif sli not in frame.values:
            reasons.append(f"no samples of the violated SLI {sli!r} in the window")
        if n < 2 * MIN_BASELINE_BINS or not 0 <= detect_index < n:
            reasons.append(f"too little history: {n} bins of {self.bin_s:g}s")
        if reasons:
            return self._insufficient(sli, detected_at, reasons)
        y = frame.values[sli]
        end = detect_index + 1
        if onset_index is None:
            scan = {sli: (y, NODES[sli].bad)}
            for e in ERROR_NODES:
                if e in frame.values and e != sli:
                    scan[e] = (frame.values[e], NODES[e].bad)
            onset_index = _onset(scan, detect_index, max(MIN_BASELINE_BINS, end - 12), frame.bin_s)
        onset_index = int(min(max(onset_index, MIN_BASELINE_BINS), max(end - 2, MIN_BASELINE_BINS)))
        if end - onset_index < 2:
            end = min(n, onset_index + 2)
        base = y[:onset_index]
        if np.isfinite(base).sum() < MIN_BASELINE_BINS:
            return self._insufficient(sli, detected_at, [f"the SLI has fewer than {MIN_BASELINE_BINS} finite baseline bins (gaps or NaN runs)"])
        end = _incident_end(y, NODES[sli], onset_index, end)
        scores = attribute(frame, sli, onset_index, end)
        # the SLI's own change is measured from the onset on (no guard: a short incident must not be diluted)
        sli_dev = deviation(NODES[sli], y[:onset_index], y[onset_index:end]) if sli in scores else None
        if sli_dev is None or sli_dev.total < SLI_THRESHOLD:
            reasons.append(f"the SLI {sli} did not change between the baseline and the incident window")
        ranked = sorted(scores.values(), key=lambda s: -s.score)
        cands = [s for s in ranked if s.candidate and s.name in BY_ROOT_NODE]
        if not cands and not reasons:
            reasons.append("no anomalous metric with a path to the SLI can be a cause (only symptoms moved)")
        roots = [s for s in cands if not s.dominated]
        top = roots[0].score if roots else 0.0
        second = roots[1].score if len(roots) > 1 else 0.0
        raw = raw_confidence(top, second) if cands and not reasons else 0.0
        confidence = self.calibration(raw) if self.calibration.fitted else raw
        if cands and not reasons and confidence < self.min_confidence:
            reasons.append(f"confidence {confidence:.2f} below {self.min_confidence:.2f}: the evidence does not single out a cause")
        causes = [self._root_cause(s, scores, confidence if i == 0 else 0.0) for i, s in enumerate(
            [s for s in ranked if s.name in BY_ROOT_NODE])]
        onset_at = float(frame.times[onset_index] - frame.bin_s)
        if reasons:
            primary = self._insufficient_cause(reasons)
            alternatives = causes
        else:
            primary, alternatives = causes[0], causes[1:]
        others = {k: v for k, v in frame.values.items() if k != sli}
        analysis = RCAAnalysis(
            sla=sli, analyzed_at=float(self.clock()), onset_at=onset_at, detected_at=detected_at,
            primary_root_cause=primary, alternatives=alternatives,
            correlations=correlations(y[:end], {k: v[:end] for k, v in others.items()}),
            leading_indicators=self._leaders(frame, scores, sli, onset_index, end),
            recommendations=self._recommend(primary, alternatives),
            insufficient_reasons=reasons,
            scores={s.name: round(s.score, 4) for s in ranked},
        )
        analysis.diagnostics["raw_confidence"] = raw
        analysis.duration_s = time.perf_counter() - t_start
        return analysis

    # -- parts ----------------------------------------------------------------------------------------
    def _root_cause(self, s: NodeScore, scores: dict[str, NodeScore], confidence: float) -> RootCause:
        cause = BY_ROOT_NODE[s.name]
        dev = s.deviation
        base, inc = (dev.baseline, dev.incident) if dev is not None else (0.0, 1.0)
        text = cause.description.format(baseline=_fmt(base), incident=_fmt(inc))
        ev_for, ev_against = [], []
        if dev is not None:
            ev_for.append(f"{s.name}: robust deviation {dev.score:.1f} IQRs in its bad direction"
                          + (f", trend {dev.slope_score:.1f}" if dev.slope_score else "")
                          + (f", saturation {dev.saturation:.2f}" if dev.saturation else ""))
        for child in sorted(scores):
            c = scores[child]
            if s.name in NODES[child].parents and c.anomalous:
                ev_for.append(f"its effect {child} moved too (deviation {c.deviation.total if c.deviation else c.score:.1f})")
        for p in NODES[s.name].parents:
            ps = scores.get(p)
            if ps is not None and ps.anomalous:
                ev_against.append(f"its parent {p} also moved: it may explain part of it")
        if not s.candidate:
            ev_against.append("not anomalous enough, or no anomalous path to the SLI")
        return RootCause(cause.name, cause.category.value, s.name, text, round(confidence, 4), round(s.score, 4),
                         tuple(ev_for), tuple(ev_against))

    @staticmethod
    def _insufficient_cause(reasons: list[str]) -> RootCause:
        return RootCause(INSUFFICIENT_EVIDENCE, "unknown", "", "Insufficient evidence: " + "; ".join(reasons), 0.0, 0.0,
                         (), tuple(reasons))

    def _insufficient(self, sli: str, at: float, reasons: list[str]) -> RCAAnalysis:
        return RCAAnalysis(sla=sli, analyzed_at=float(self.clock()), onset_at=at, detected_at=at,
                           primary_root_cause=self._insufficient_cause(reasons), insufficient_reasons=reasons,
                           recommendations=self._recommend(self._insufficient_cause(reasons), []))

    @staticmethod
    def _leaders(frame: Frame, scores: dict[str, NodeScore], sli: str, onset: int, end: int) -> list[LeadingIndicator]:
        """Which anomalous metric first crossed 3 robust scales in its bad direction, and how long
        before the SLI did (within the seed's 30-minute lookback)."""
        lo = max(0, onset - int(LEAD_LOOKBACK_S / frame.bin_s))

        def first(name: str) -> int | None:
            sc = scores.get(name)
            if sc is None or sc.deviation is None:
                return None
            d = sc.deviation
            z = NODES[name].bad * (frame.values[name][lo:end] - d.baseline) / d.scale
            hit = np.nonzero(np.nan_to_num(z, nan=-np.inf) > ANOMALY_THRESHOLD)[0]
            return int(lo + hit[0]) if len(hit) else None

        t_sli = first(sli)
        if t_sli is None:
            return []
        out = []
        for name, sc in scores.items():
            if name == sli or not sc.anomalous:
                continue
            i = first(name)
            if i is not None:
                out.append(LeadingIndicator(name, (t_sli - i) * frame.bin_s, float(frame.times[i] - frame.bin_s)))
        return sorted(out, key=lambda li: -li.lead_s)

    @staticmethod
    def _recommend(primary: RootCause, alternatives: list[RootCause]) -> list[Recommendation]:
        table: dict[str, Cause] = {c.name: c for c in CAUSES}
        cause = table.get(primary.cause)
        if cause is None:
            return [Recommendation("investigate", "no cause singled out: see the alternatives, correlations and diagnostics",
                                   INSUFFICIENT_EVIDENCE)]
        recs = [Recommendation(a.value, f"{cause.recommendation} ({primary.description})", cause.name) for a in cause.actions]
        if not recs:
            recs.append(Recommendation("none", cause.recommendation, cause.name))
        return recs


def create_production_rca_engine(context: Any = None, **kwargs: Any) -> RCAEngine:
    """The seed's factory: attached to a ``MonitorContext`` (its store's rings and clock) when
    given one; without one it reports insufficient evidence (it has nothing to read)."""
    from aphrodite_sla.rca.frame import store_reader

    if context is None:
        return RCAEngine(**kwargs)
    kwargs.setdefault("keep_history", True)
    return RCAEngine(store_reader(context.manager.store), clock=context.manager.clock, **kwargs)
