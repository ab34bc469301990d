"""Streaming anomaly detection for an inference server's operational metrics.

``AnomalyDetector().update(value, timestamp)`` scores each new sample of one metric (latency,
throughput, error rate, utilisation, memory, ...) in [0, 1], O(1) per sample and without
look-ahead; ``last_explanation`` says which kind of change set the score. A score of 0.5 or more
means "a new problem starts now": the score is an *onset* signal, high when something changes
and decaying as the new regime becomes normal, so that alerting at 0.5 (re-armed below 0.25, as
the SLA manager does) pages once per incident.

Why it is built this way. Detectors tuned on clean synthetic noise fail on production metrics in
predictable ways: they page all day on heavy tails, bursts, regime switches and garbage-collector
sawtooths, they miss changes that are wrong only for the time of day, and they keep a score high
for as long as a changed level lasts. The strongest published streaming detectors on real
operational data (Numenta's HTM with its "anomaly likelihood", contextual anomaly detectors,
Bayesian change-point and extreme-value methods) share three ideas, which this package applies
with cheap scalar statistics instead of a neural or tree model:

1. *Judge each statistic against its own recent distribution*, not against a fixed Gaussian:
   every change statistic is standardised by its own running spread, learned only from ordinary
   samples and robustly (a clipped mean absolute value, which neither outliers nor a slowly
   building anomaly can inflate: ``scoring``), and the one-step residual is tail-matched to the
   metric's own 99th percentile (``baseline``). This is the anomaly-likelihood idea; its other
   half, judging a short run of raw scores together, is the persistent evidence that adds up
   the fast statistics' sub-threshold ratios while they stay high (``statistics``).
2. *Novelty, not distance*: what the metric has done before is not news. Outliers of a sign and
   size that keep recurring, and jumps to levels the metric keeps returning to, are discounted
   (``memory``); change statistics re-base once a new regime has persisted (``statistics``), and
   until then a shift is judged against the level before it (the level statistic's reference
   learns from values a few dozen samples old, a two-window test).
3. *Model the context*: time-of-day and day-of-week profiles (``seasonal``), a transform that
   makes the noise level-independent (``transform``: log or linear from the warm-up, checked
   again after a few hundred samples by how the noise actually scales with the level), and a
   floor on the scale that respects the metric's resolution and size, so that 3072.0 ->
   3072.000001 is not an anomaly just because a constant series has no spread.

Parts: ``transform`` (log or linear, resolution floor) -> ``seasonal`` (profiles) -> ``baseline``
(robust one-step level and scale: the spike statistic) -> ``statistics`` (level shift, residual
run, drift, variance change, spike density, flatline, persistent evidence) with ``memory``
(recurring spikes, familiar levels) -> ``scoring`` (standardisation, score curve); ``detector``
composes them and ``config`` holds every constant with its reason. ``baselines`` has the
classic windowed z-score and windowed Gaussian detectors it is measured against in
``benchmarks/bench_anomaly.py``. Importing this package
imports numpy only (no numba, no scipy); an update is plain scalar Python, a few microseconds.
"""

from __future__ import annotations

from aphrodite_sla.sla.anomaly.baselines import WindowedGaussianDetector, WindowedZScoreDetector, zscore
from aphrodite_sla.sla.anomaly.config import AnomalyDetectorConfig, AnomalyExplanation
from aphrodite_sla.sla.anomaly.detector import AnomalyDetector
from aphrodite_sla.sla.anomaly.scoring import z_to_score

__all__ = [
    "AnomalyDetector",
    "AnomalyDetectorConfig",
    "AnomalyExplanation",
    "WindowedGaussianDetector",
    "WindowedZScoreDetector",
    "z_to_score",
    "zscore",
]
