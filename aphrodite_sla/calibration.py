"""SLA calibration: propose each SLA's target and tolerance from a healthy period, and say how often
a bound would have fired on that period.

The rule, and why: the bound is the level healthy windows pass once in 30 days — the upper 90%
confidence limit of a tail fit of the history's declustered peaks (``calibration_tail``) — and
never less than the worst healthy window's statistic × (1 + margin) (× (1 − margin) and mirrored
for a lower-bound SLA). The worst window of one day is a sample maximum: the next day beats it
about half the time, so "worst + 10%" alone is broken by ordinary traffic within days (the
benchmark's held-out day did); the tail fit says how far a month's worst reaches, and the margin
keeps the old guarantee that the same traffic replayed stays inside. A history too short for a fit
(fewer than 8 independent peaks) gets worst + margin, and the report says so. A run of windows
that the rest of the history's tail reaches less than once in 1,000 histories of its length (an
overload or an incident inside the "healthy" period) is left out of the fit and of the worst
window, and the report names it. The target is the
median window's statistic (what the SLA normally reads), and the tolerance is whatever makes
target × (1 ± tolerance) equal that bound. Windows are the SLA's own (its length, stepped by the
evaluation interval) and the fire count replays the evaluator's sustained rule, so "would have
fired" means what the monitor would have done.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from aphrodite_sla.calibration_tail import TailFit, TailSettings, fit_tail, incident_windows
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic

DEFAULT_MARGIN = 0.10
DEFAULT_TAIL = TailSettings()  # a bound at the level healthy windows pass once in 30 days (90% limit)
SECONDS_PER_DAY = 86_400.0
# a run of windows beyond what the rest of the history's tail reaches once in this many histories of
# its length is an overload or an incident, not healthy traffic's worst (``incident_windows``):
# "never below worst + margin" would carry it into the bound (a week holding one 4-second TTFT
# overload proposed a 4.3 s bound where the tail's own was 0.19 s)
OUTLIER_HISTORIES = 1000.0


class NotEnoughHistory(ValueError):
    """The history holds too few judged windows of an SLA to propose a bound from."""


@dataclass(frozen=True)
class WindowSeries:
    """An SLA's statistic over sliding windows of its length: ``values[i]`` over the window ending at
    ``ends[i]``, NaN where the window was not judged (fewer than ``min_samples`` samples, no data).
    ``step_s``: the spacing of the evaluation points."""

    ends: np.ndarray
    values: np.ndarray
    step_s: float

    @property
    def judged(self) -> np.ndarray:
        """The finite values (the windows the monitor would have judged)."""
        return self.values[np.isfinite(self.values)]

    @property
    def span_s(self) -> float:
        """Time the evaluation points cover (one step each), for rates per day."""
        return float(len(self.ends)) * self.step_s


@dataclass(frozen=True)
class History:
    """A healthy period as a source delivered it: window series per SLA name, and why the SLAs that
    have none are missing ("no source": nothing maps to it; "no data": the source had none)."""

    source: str
    series: dict[str, WindowSeries]
    missing: dict[str, str]


@dataclass(frozen=True)
class BoundReplay:
    """What one bound would have done on the history: windows beyond it, sustained-rule firings."""

    bound: float
    windows: int
    breaches: int
    fires: int
    span_s: float

    @property
    def breach_percent(self) -> float:
        return 100.0 * self.breaches / self.windows if self.windows else 0.0

    @property
    def fires_per_day(self) -> float:
        return self.fires * SECONDS_PER_DAY / self.span_s if self.span_s > 0 else 0.0


@dataclass(frozen=True)
class Calibration:
    """One SLA's calibration: the healthy figures, the proposal and both bounds replayed.
    ``proposed`` is None when nothing could be proposed; ``note`` says why (or qualifies it)."""

    current: SLAThreshold
    proposed: SLAThreshold | None
    median: float | None = None
    worst: float | None = None
    current_replay: BoundReplay | None = None
    proposed_replay: BoundReplay | None = None
    note: str = ""
    tail: TailFit | None = None  # the extreme-value fit behind the bound (None: worst + margin alone)

    @property
    def name(self) -> str:
        return self.current.metric_name


def window_series(times: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, threshold: SLAThreshold,
                  step_s: float) -> WindowSeries:
    """The threshold's statistic over windows of its length ending every ``step_s`` from the first
    full window to the last sample, from raw timestamped samples (a window holds the samples with
    end − length < t <= end, as the monitor's ring does)."""
    if not (step_s > 0 and math.isfinite(step_s)):
        raise ValueError(f"step must be a finite number of seconds > 0, got {step_s!r}")
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"times and values must be 1-D arrays of one length, got {t.shape} and {v.shape}")
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    width = threshold.window_seconds
    if len(t) == 0 or t[-1] - t[0] < width:
        return WindowSeries(np.empty(0), np.empty(0), step_s)
    ends = np.arange(t[0] + width, t[-1] + step_s * 1e-9, step_s)
    hi = np.searchsorted(t, ends, side="right")
    lo = np.searchsorted(t, ends - width, side="right")
    counts = hi - lo
    out = np.full(len(ends), np.nan)
    stat = threshold.statistic
    q = stat.quantile
    if q is None:  # mean or rate: prefix sums, no per-window pass
        cum = np.concatenate(([0.0], np.cumsum(v)))
        sums = cum[hi] - cum[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sums / width if stat is Statistic.RATE else sums / counts
    else:
        for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            if b > a:
                out[i] = float(np.quantile(v[a:b], q))
    out = np.where(counts >= threshold.min_samples, out, np.nan)
    return WindowSeries(ends, out, step_s)


def replay(series: WindowSeries, threshold: SLAThreshold) -> BoundReplay:
    """Replay the evaluator on the window series: a point is beyond when its (judged) statistic is
    beyond the bound; it fires when the sustained rule holds (at least ``min_evaluation_points``
    judged points in the last window, ``violation_threshold_percent`` of them beyond, the history's
    first window counted whole: ``SLAThreshold.is_sustained``); a firing
    episode ends once the statistic has been back inside the recovery bound for
    ``resolve_after_s``, and the next sustained point is a new firing."""
    upper = threshold.direction is Direction.UPPER
    bound, recovery = threshold.bound, threshold.recovery_bound
    width = threshold.window_seconds
    points: deque[tuple[float, bool]] = deque()
    beyond = breaches = fires = windows = 0
    firing = False
    recovered_since: float | None = None
    first = float(series.ends[0]) if len(series.ends) else 0.0
    for now, value in zip(series.ends.tolist(), series.values.tolist()):
        while points and points[0][0] <= now - width:
            beyond -= points.popleft()[1]
        judged = math.isfinite(value)
        breached = judged and (value > bound if upper else value < bound)
        if judged:
            windows += 1
            points.append((now, breached))
            beyond += breached
            breaches += breached
        n = len(points)
        sustained = breached and threshold.is_sustained(beyond, n, now - first + series.step_s, series.step_s)
        if not firing:
            if sustained:
                firing, fires, recovered_since = True, fires + 1, None
            continue
        if not judged or (value <= recovery if upper else value >= recovery):
            recovered_since = now if recovered_since is None else recovered_since
            if now - recovered_since >= threshold.resolve_after_s:
                firing = False
        else:
            recovered_since = None
    return BoundReplay(bound, windows, breaches, fires, series.span_s)


def min_windows(threshold: SLAThreshold) -> int:
    """Fewest judged windows a proposal needs: enough for the sustained rule to have been testable."""
    return max(3, threshold.min_evaluation_points)


def propose(threshold: SLAThreshold, series: WindowSeries, margin: float = DEFAULT_MARGIN,
            tail: TailSettings | None = DEFAULT_TAIL) -> Calibration:
    """The calibration of ``threshold`` on a healthy window series (see the module docstring for the
    rule). ``tail``: how the history's tail is fitted (None: the bound is the worst window plus the
    margin alone). Raises ``NotEnoughHistory`` when fewer than ``min_windows`` windows were judged."""
    if not (0.0 <= margin < 1.0):
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    judged = series.judged
    if len(judged) < min_windows(threshold):
        raise NotEnoughHistory(
            f"{threshold.metric_name}: not enough history: {len(judged)} judged {threshold.measurement_window_minutes:g}-minute "
            f"windows of {threshold.source} (need {min_windows(threshold)}; at least {threshold.min_samples} samples each)"
        )
    upper = threshold.direction is Direction.UPPER
    median = float(np.median(judged))
    current = replay(series, threshold)
    fit = None
    incident_note = ""
    values = series.values
    if tail is not None:  # larger is worse for the fit: a lower-bound SLA's values are negated
        worse = values if upper else -values
        incident = incident_windows(series.ends, worse, threshold.window_seconds, series.span_s, tail, OUTLIER_HISTORIES)
        if incident.any():
            first = float(series.ends[np.flatnonzero(incident)[0]])
            values = np.where(incident, np.nan, values)
            worse = np.where(incident, np.nan, worse)
            incident_note = (f"{int(incident.sum())} windows (the first ending at {first:.0f} s, the worst "
                             f"{float(np.nanmax(series.values[incident]) if upper else np.nanmin(series.values[incident])):.4g}) "
                             f"lie beyond what the rest of the history's tail reaches once in {OUTLIER_HISTORIES:g} histories "
                             "this long: an overload or incident in the healthy period? They are left out of the fit and "
                             "of the worst window")
        fit = fit_tail(series.ends, worse, threshold.window_seconds, series.span_s, tail)
    kept = values[np.isfinite(values)]
    worst = float(kept.max() if upper else kept.min())
    if upper:
        target = median if median > 0 else float(judged.mean())
        bound = worst * (1.0 + margin)
        if fit is not None:
            bound = max(bound, fit.limit)
    else:
        target, bound = median, worst * (1.0 - margin)
        if fit is not None and -fit.limit > 0:
            bound = min(bound, -fit.limit)
    if not (target > 0 and bound > 0):
        side = "above" if upper else "below"
        return Calibration(threshold, None, median, worst, current, None,
                           note=f"healthy {threshold.statistic.value} never {side} {worst:g}: no relative bound from it; kept the current one")
    target = _significant(target)
    ratio = bound / target - 1.0 if upper else 1.0 - bound / target
    # hundredths of a percent, rounded outward (after dropping float noise: 25% must not become 25.01%)
    tolerance = math.ceil(round(max(ratio, 0.0) * 10_000.0, 6)) / 100.0
    if not upper:
        tolerance = min(tolerance, 99.99)
    proposed = replace(threshold, target_value=target, tolerance_percent=tolerance)
    notes = [] if median > 0 or not upper else ["median is 0: target is the mean window"]
    if incident_note:
        notes.append(incident_note)
    if tail is not None:
        notes.append(_tail_note(fit, worst, margin, upper, tail))
    if upper and threshold.unit == "%" and proposed.bound >= 100.0:
        notes.append("a bound at or above 100% never fires: healthy peaks reach too high for this SLA to tell a fault")
    return Calibration(threshold, proposed, median, worst, current, replay(series, proposed), "; ".join(notes), fit)


def _tail_note(fit: TailFit | None, worst: float, margin: float, upper: bool, tail: TailSettings) -> str:
    """What decided the bound: the tail's confidence limit, or the worst window plus the margin (and why)."""
    floor = f"worst x {1 + margin if upper else 1 - margin:g}"
    if fit is None:
        return f"too few peaks for a tail fit (< {tail.min_peaks}): {floor}"
    if upper:
        return fit.describe() if fit.limit > worst * (1.0 + margin) else f"{floor} (beyond the tail's {fit.describe()})"
    own = fit.mirrored()
    if own.limit <= 0:
        return f"{floor}: the tail reaches 0 ({own.describe(upper=False)}), no lower bound keeps healthy traffic inside"
    return own.describe(upper=False) if own.limit < worst * (1.0 - margin) else f"{floor} (beyond the tail's {own.describe(upper=False)})"


def _significant(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (a config file people read)."""
    return float(f"{value:.{digits}g}")


def render_table(calibrations: Iterable[Calibration]) -> str:
    """The report: per SLA, current and proposed target and bound, and under each the share of
    windows beyond the bound and the sustained-rule firings per day on the history."""

    def replayed(r: BoundReplay | None) -> str:
        return "-" if r is None else f"{r.breach_percent:5.1f}% {r.fires_per_day:7.1f}"

    cals = list(calibrations)
    w = max([len(c.name) for c in cals] + [3])
    rows = [f"{'SLA':<{w}} {'stat':<5} {'target':>10} {'bound':>10} {'proposed':>10} {'bound':>10} "
            f"{'now: beyond fires/d':>20} {'proposed: beyond fires/d':>25}  note"]
    for c in cals:
        th, p = c.current, c.proposed
        rows.append(
            f"{th.metric_name:<{w}} {th.statistic.value:<5} {th.target_value:>10.5g} {th.bound:>10.5g} "
            f"{'-' if p is None else f'{p.target_value:.5g}':>10} {'-' if p is None else f'{p.bound:.5g}':>10} "
            f"{replayed(c.current_replay):>20} {replayed(c.proposed_replay):>25}  {c.note}"
        )
    return "\n".join(rows)


# -- the configuration file -------------------------------------------------------------------

_DEFAULTS = SLAThreshold("_", 1.0, 0.0)
_SKIP = {"labels"}


def render_toml(calibrations: Iterable[Calibration], *, sla_set: str | None = None, header: str = "") -> str:
    """The ``[[thresholds]]`` configuration (the file ``APHRODITE_SLA_CONFIG`` names) with every
    proposed SLA; an SLA without a proposal is written as it was, after a comment saying why (so a
    configured SLA that could not be calibrated is not lost with the new file). Written by hand:
    TOML writing is not a dependency."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if sla_set is not None:
        lines.append(f"sla_set = {_toml_value(sla_set)}")
    for cal in calibrations:
        lines.append("")
        if cal.proposed is None:
            lines.append(f"# not calibrated ({cal.note or 'no proposal'}): kept as it was")
        lines += ["[[thresholds]]", *_threshold_lines(cal.proposed or cal.current)]
    return "\n".join(lines).lstrip("\n") + "\n"


def _threshold_lines(th: SLAThreshold) -> list[str]:
    """``key = value`` for every field of ``th`` that is not its default (name, target and tolerance always)."""
    out = []
    for f in fields(SLAThreshold):
        value = getattr(th, f.name)
        if f.name in _SKIP or value is None:
            continue
        if f.name not in ("metric_name", "target_value", "tolerance_percent") and value == getattr(_DEFAULTS, f.name):
            continue
        out.append(f"{f.name} = {_toml_value(value)}")
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, (Direction, Statistic)):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def write_config(path: str | os.PathLike[str], calibrations: Iterable[Calibration], *, sla_set: str | None = None,
                 header: str = "") -> Path:
    """Write ``render_toml(...)`` to ``path`` atomically (a temporary file beside it, then a rename):
    a monitor reading the file never sees half of it."""
    target = Path(path)
    text = render_toml(calibrations, sla_set=sla_set, header=header)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = [
    "DEFAULT_MARGIN", "DEFAULT_TAIL", "BoundReplay", "Calibration", "History", "NotEnoughHistory", "TailFit", "TailSettings", "WindowSeries",
    "min_windows", "propose",
    "render_table", "render_toml", "replay", "window_series", "write_config",
]
