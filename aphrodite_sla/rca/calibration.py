"""Calibrated confidence: a raw evidence strength in [0, 1] mapped to "how often is the named
cause right" by isotonic regression (scipy.optimize.isotonic_regression) fitted on labelled cases.

Why isotonic: it assumes only that stronger evidence is not less often right; with no fit the raw
strength is reported as is (and says so in ``fitted``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def raw_confidence(top: float, second: float) -> float:
    """Evidence strength from the winning score and its margin over the runner-up."""
    if top <= 0:
        return 0.0
    margin = max(0.0, 1.0 - max(second, 0.0) / top)
    return float((1.0 - np.exp(-top / 6.0)) * np.sqrt(margin))


@dataclass
class Calibration:
    xs: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    ys: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    fitted: bool = False

    def fit(self, raw: Sequence[float], correct: Sequence[bool]) -> Calibration:
        x = np.asarray(raw, dtype=float)
        y = np.asarray(correct, dtype=float)
        if len(x) < 10:
            return self
        from scipy.optimize import isotonic_regression

        order = np.argsort(x)
        fit = isotonic_regression(y[order], increasing=True)
        self.xs, self.ys, self.fitted = x[order], np.asarray(fit.x), True
        return self

    def __call__(self, raw: float) -> float:
        return float(np.clip(np.interp(raw, self.xs, self.ys), 0.0, 1.0))


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    c = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=float)
    if len(c) == 0:
        return 0.0
    idx = np.minimum((c * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.sum() / len(c) * abs(c[m].mean() - y[m].mean())
    return float(err)
