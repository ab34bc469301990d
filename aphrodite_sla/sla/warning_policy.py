"""The anomaly warning policy of one SLA: onset, confirmation, one warning per story (the settings
and the reasons for each are in ``sla.warning_rules``).

States: **idle** (nothing going on) -> **pending** (an onset toward the bound: the detector's score
crossed the alert level and the change closes ``headroom_share`` of the headroom) -> a warning as
soon as the change has held in more than ``hold_share`` of the evaluations ``confirm_s`` allows,
or **dropped** when the period ends without that (a burst that drained). After either, the
detector's episode must end (its score falls below the re-arm level) before another onset counts,
and a warned SLA stays quiet for ``min_interval_s``.

"Held" compares the newest interval's statistic with the line the onset drew: the level before
the change plus ``headroom_share`` of the way to the bound. The level before the change is the
detector's expectation at its last calm evaluation (score below the re-arm level), not at the
onset: the detector adapts its expectation while a change goes on (that is how its score decays),
so by the time a slow rise (KV usage in a traffic surge) crosses the alert level the expectation
has followed it half way, and a line drawn from there asks the change to rise again. For a change
without a direction (a variance change, a flatline) or a detector that gives no expectation, it
holds while the score stays at or above the re-arm level *and* the SLA's own window statistic
stands beyond where it stood at the onset: a noisier series is news when the SLA is moving toward
its bound meanwhile (a leak's memory), not when KV usage gets bursty at night far below its bound.
Owned by the evaluator (one per SLA, under its lock).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from aphrodite_sla.sla.warning_rules import WarningRulesConfig

# An anomaly episode ends (and may warn again) once the score falls below this share of the level.
ANOMALY_REARM_FRACTION = 0.5
# Changes without a direction: a noisier or a stuck series is news whichever way the SLA points.
UNSIGNED_CHANGES = frozenset({"variance_change", "flatline"})
# The default share of the headroom a signed change must close (``WarningRulesConfig.headroom_share``).
ANOMALY_HEADROOM_SHARE = WarningRulesConfig().headroom_share


def onset_line(explanation: object, *, upper: bool, bound: float, share: float, before: float = math.nan) -> float:
    """The line a signed change must hold beyond to threaten the bound: the detector's expectation
    plus ``share`` of the headroom toward the bound, or the bound itself where the expectation is
    already beyond it (the newest interval is noisier than the SLA's window, so its expectation
    can sit past a bound the window keeps); NaN when the explanation cannot say (unsigned kind,
    no expectation, no finite bound). ``before``: the expectation before the change, when known
    (it replaces the onset's)."""
    if getattr(explanation, "kind", "") in UNSIGNED_CHANGES:
        return math.nan
    expected = before if math.isfinite(before) else getattr(explanation, "expected", math.nan)
    if not (isinstance(expected, float) and math.isfinite(expected) and isinstance(bound, float) and math.isfinite(bound)):
        return math.nan
    headroom = bound - expected if upper else expected - bound
    if headroom <= 0.0:
        return bound
    return expected + share * headroom if upper else expected - share * headroom


def toward_bound(explanation: object, *, upper: bool, bound: float = math.nan, share: float = ANOMALY_HEADROOM_SHARE) -> bool:
    """Whether an anomaly threatens the SLA: it moves the statistic toward its bound (up for a
    maximum, down for a minimum) by at least ``share`` of the headroom the detector's expectation
    had. Latency falling at night, goodput rising, or a small rise far below the bound are
    changes, not early warnings (their score stays exported either way)."""
    kind = getattr(explanation, "kind", "")
    if kind in UNSIGNED_CHANGES:
        return True
    z = getattr(explanation, "z", 0.0)
    if not isinstance(z, float) or not math.isfinite(z) or z == 0.0:
        return True  # a detector that does not say: warn, as before
    if (z < 0.0) if upper else (z > 0.0):
        return False
    value, expected = getattr(explanation, "value", math.nan), getattr(explanation, "expected", math.nan)
    if not all(isinstance(x, float) and math.isfinite(x) for x in (value, expected, bound)):
        return True
    headroom = bound - expected if upper else expected - bound
    moved = value - expected if upper else expected - value
    return headroom <= 0.0 or moved >= share * headroom


class WarningPhase(enum.Enum):
    IDLE = "idle"
    PENDING = "pending"
    EPISODE = "episode"  # warned or dropped: waiting for the detector's score to re-arm


@dataclass
class WarningPolicy:
    """One SLA's warning state (see the module docstring). ``observe`` once per evaluation with
    a score; it returns the kind of change to warn about now, or None."""

    config: WarningRulesConfig
    alert_score: float
    evaluation_interval_s: float
    upper: bool
    bound: float
    phase: WarningPhase = WarningPhase.IDLE
    onset_at: float = math.nan
    line: float = math.nan
    kind: str = ""
    held: int = 0
    peak_score: float = 0.0  # the highest score since the onset (what the warning reports)
    onset_window: float = math.nan  # the SLA's window statistic at the onset
    unsigned: bool = False  # the onset's change has no direction (UNSIGNED_CHANGES)
    calm_expected: float = math.nan  # the detector's expectation at its last calm evaluation
    last_warning_at: float = -math.inf
    dropped: int = 0  # onsets that did not hold (bursts): counted for tests and benchmarks
    suppressed: int = 0  # confirmed changes inside ``min_interval_s`` of the SLA's previous warning
    _needed: int = field(init=False)

    def __post_init__(self) -> None:
        points = int(math.floor(self.config.confirm_s / self.evaluation_interval_s + 1e-9)) + 1
        self._needed = int(math.floor(self.config.hold_share * points)) + 1  # more than hold_share of them

    def observe(self, now: float, score: float, explanation: object, value: float, window_value: float = math.nan) -> str | None:
        """One evaluation: the detector's ``score`` and explanation, the newest interval's statistic
        ``value`` and the SLA's statistic over its window ``window_value``."""
        cfg = self.config
        if self.phase is WarningPhase.EPISODE:
            if score < ANOMALY_REARM_FRACTION * self.alert_score:
                self.phase = WarningPhase.IDLE
            else:
                return None
        if self.phase is WarningPhase.IDLE:
            share = cfg.headroom_share if cfg.enabled else ANOMALY_HEADROOM_SHARE
            if score < ANOMALY_REARM_FRACTION * self.alert_score:
                expected = getattr(explanation, "expected", math.nan)
                self.calm_expected = expected if isinstance(expected, float) else math.nan
            if score < self.alert_score or not toward_bound(explanation, upper=self.upper, bound=self.bound, share=share):
                return None
            kind = getattr(explanation, "kind", None) or getattr(explanation, "component", "")
            if not cfg.enabled:
                self.phase, self.peak_score = WarningPhase.EPISODE, score
                return str(kind)
            self.phase, self.onset_at, self.kind, self.held = WarningPhase.PENDING, now, str(kind), 0
            self.onset_window, self.unsigned, self.peak_score = window_value, self.kind in UNSIGNED_CHANGES, 0.0
            self.line = onset_line(explanation, upper=self.upper, bound=self.bound, share=share, before=self.calm_expected)
        # pending: does the change hold at this evaluation?
        self.peak_score = max(self.peak_score, score)
        if self._holds(score, value, window_value):
            self.held += 1
        if self.held >= self._needed:
            self.phase = WarningPhase.EPISODE
            if now - self.last_warning_at < cfg.min_interval_s:
                self.suppressed += 1
                return None
            self.last_warning_at = now
            return self.kind
        if now - self.onset_at >= cfg.confirm_s - 1e-9:
            self.phase = WarningPhase.EPISODE
            self.dropped += 1
        return None

    def _holds(self, score: float, value: float, window_value: float) -> bool:
        if math.isnan(self.line):
            if score < ANOMALY_REARM_FRACTION * self.alert_score:
                return False
            if not (self.unsigned and math.isfinite(window_value) and math.isfinite(self.onset_window)):
                return True  # a detector that gives no expectation, or no window statistic: the score decides
            return window_value > self.onset_window if self.upper else window_value < self.onset_window
        if not math.isfinite(value):
            return False
        return value >= self.line if self.upper else value <= self.line


__all__ = [
    "ANOMALY_HEADROOM_SHARE", "ANOMALY_REARM_FRACTION", "UNSIGNED_CHANGES", "WarningPhase", "WarningPolicy", "onset_line",
    "toward_bound",
]
