"""Did the metric come back: the check after an action has settled.

Why its own seam: the engine only needs a yes/no with a sentence; how it is decided (the monitor's
windows, a simulator, a test's script) is the verifier's. The default reads the violated SLA's own
statistic over the settle window, so "recovered" means what "violated" meant, measured only on
samples taken after the action had time to act.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from aphrodite_sla.sla.threshold import Direction, SLAViolation


@dataclass(frozen=True)
class Verification:
    """A verifier's answer. ``verified`` False covers both "still beyond" and "no samples"
    (nothing shows it came back); ``detail`` says which, with the figures."""

    verified: bool
    detail: str
    value: float | None = None
    samples: int = 0


class Verifier(Protocol):
    """Decides whether ``violation``'s SLA is back within its bound over the last ``settle_s``.
    Called on the recovery loop's thread (never the engine's); should be quick."""

    def verify(self, violation: SLAViolation, settle_s: float) -> Verification: ...


class WindowVerifier:
    """The SLA's statistic over the last ``max(settle_s, min_window_s)`` seconds of its source
    series, against the SLA's current threshold (``manager.thresholds``), or — for a violation with
    no configured threshold, such as an engine stall — against the bound and direction the
    violation carries. Fewer than ``min_samples`` samples: unverified."""

    def __init__(self, manager: Any, *, min_window_s: float = 1.0, min_samples: int = 1) -> None:
        if not math.isfinite(min_window_s) or min_window_s <= 0:
            raise ValueError(f"WindowVerifier.min_window_s: must be a finite number > 0, got {min_window_s!r}")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise ValueError(f"WindowVerifier.min_samples: must be an integer >= 1, got {min_samples!r}")
        self.manager = manager
        self.min_window_s = float(min_window_s)
        self.min_samples = min_samples

    def verify(self, violation: SLAViolation, settle_s: float) -> Verification:
        window = max(float(settle_s), self.min_window_s)
        stat = violation.statistic.value
        try:
            value, samples = self.manager.window_statistic(violation.source_metric, violation.statistic, window)
        except Exception as exc:  # an unknown series, a store error: nothing shows recovery
            return Verification(False, f"{stat} of {violation.source_metric} over {window:g} s unreadable: {type(exc).__name__}: {exc}")
        if samples < self.min_samples or value is None or not math.isfinite(value):
            return Verification(False, f"{stat} of {violation.source_metric} over {window:g} s: no samples ({samples})", None, samples)
        threshold = self.manager.thresholds.get(violation.metric_name)
        if threshold is not None:
            beyond, bound, upper = threshold.is_beyond(value), threshold.bound, threshold.direction is Direction.UPPER
        else:
            bound, upper = violation.bound, violation.direction is Direction.UPPER
            beyond = value > bound if upper else value < bound
        side = (">" if upper else "<") if beyond else ("<=" if upper else ">=")
        text = f"{stat} of {violation.source_metric} over {window:g} s: {value:.4g} {side} bound {bound:.4g} ({samples} samples)"
        return Verification(not beyond, text, float(value), samples)


__all__ = ["Verification", "Verifier", "WindowVerifier"]
