"""``AnomalyDetectorConfig`` (every constant of the detector, with the reason for its value) and
``AnomalyExplanation`` (what the last score was made of)."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "DRIFT", "FLATLINE", "KINDS", "LEVEL_SHIFT", "NONE", "SEASONAL", "SPIKE", "SPIKE_DENSITY", "VARIANCE_CHANGE",
    "WARMUP",
    "AnomalyDetectorConfig", "AnomalyExplanation",
]

SPIKE = "spike"
LEVEL_SHIFT = "level_shift"
VARIANCE_CHANGE = "variance_change"
DRIFT = "drift"
SEASONAL = "seasonal"
FLATLINE = "flatline"
SPIKE_DENSITY = "spike_density"
NONE = "none"
WARMUP = "warmup"
KINDS = (SPIKE, LEVEL_SHIFT, VARIANCE_CHANGE, DRIFT, SEASONAL, FLATLINE, SPIKE_DENSITY, NONE, WARMUP)


@dataclass(frozen=True, slots=True)
class AnomalyDetectorConfig:
    """Constants of ``AnomalyDetector``, each with the reason for its value. Smoothing constants
    are per sample, not per second, so behaviour does not depend on the sampling interval; only the
    seasonal profiles read time. Thresholds were chosen on the development half of
    ``benchmarks/anomaly_corpus`` (never on the held-out half) for metrics sampled every few
    seconds to every few minutes."""

    # -- learning and transform
    warmup: int = 30  # samples scored 0 while the transform and the first baseline are chosen
    log_transform: bool | None = None  # None: auto (log for positive, skewed or wide metrics; see transform.py)
    recheck: int = 300  # auto transform re-chosen once after this many samples, from how the noise scales
    relative_floor: float = 1e-3  # residual scale >= this share of the level: 3072 -> 3072.000001 is no change
    step_floor: float = 1.5  # a metric that stands still between steps of its resolution (a gauge, not a sparse
    # count: baseline.py): the level statistics' scale is at least this many typical steps, so one step is ordinary
    # (z ~3.3) and three page. Dev: false alarms 365 -> 342 (near-constant healthy stretches 22 -> 1), windows found
    # 293 -> 292, score 66.5 -> 66.6; 1.0 left one step at z ~5 (still paging), 2.0 hid shifts of two steps
    # -- seasonality
    season_seconds: float | None = 86_400.0  # daily profile period; None disables both profiles
    season_bins: int = 48  # half-hour bins: resolves a morning ramp, few enough to learn in 2 days
    weekly: bool = True  # a day-of-week profile on top of the daily one, used after 2 weeks
    season_cycle_weight: float = 0.25  # weight of the newest cycle in a bin: ~4 cycles of memory
    season_min_cycles: int = 2  # a profile is used after this many cycles (one day could be odd)
    # -- one-step robust baseline
    fast_alpha: float = 0.25  # one-step level: follows autocorrelated wander, lags a spike by little
    scale_alpha: float = 0.01  # residual scale (EW mean |residual|): ~100 samples of memory
    huber_c: float = 3.0  # residuals beyond c * scale are clipped before they move any baseline
    persist: int = 4  # same-sign outliers in a row that mean "new level", not "spikes"
    # -- alert thresholds: Gaussian-equivalent z of each statistic that maps to score 0.5
    spike_z: float = 5.0  # one-sample residual after tail matching: ~6e-7 per sample on Gaussian noise (5.5: dev
    # 0.7 lower, 3 spike windows fewer, 0.12 fewer healthy false alarms per 8 h, within the 0.6 budget)
    level_z: float = 5.0  # fast vs slow level (standardised by its own spread, lighter-tailed)
    run_z: float = 4.0  # leaky sum of clipped residuals (a shift the fast baseline absorbs)
    drift_z: float = 5.0  # slow vs very slow level
    spread_z: float = 4.5  # short vs long residual scale (log ratio)
    flatline_z: float = 5.5  # a run of identical values against the series' own repeat rate
    density_h: float = 8.5  # outlier-rate CUSUM (log-likelihood ratio): ~e^-8.5 odds on the learned rate of one
    # sign (statistics.ExceedanceRate: one-sided, each outlier weighs ~log 2 more; two tests run as one). Dev:
    # two-sided at 9.0 69.6, spike_density 10/20; one-sided at 9.0 / 8.5 / 8.0 / 7.5: 69.6 / 69.7 / 69.8 / 69.8,
    # 11 / 12 / 13 / 13 of 20, healthy false alarms 0.46 / 0.46 / 0.46 / 0.58 per 8 h (0.41 two-sided); 8.0
    # paged spike_density on 1 of 40 runs of 2,600 Gaussian samples (8.5, 9.0: none)
    combined_ratio: float = 1.33  # sqrt(sum of squared ratios) that alarms: statistics that agree
    evidence_floor: float = 0.4  # persistent evidence: ratios above this add up (healthy medians are ~0.25) ...
    evidence_decay: float = 0.97  # ... leaking over ~30 samples (a brief excursion is forgotten) ...
    evidence_h: float = 8.0  # ... alarming at this sum: ~30 samples at 0.8 of a threshold, never below 0.64 (6.5:
    # dev +0.8, but level-wander pages on the tests' healthy AR(1) and day-long latency series)
    # -- time constants of the change statistics (per sample)
    run_decay: float = 0.8  # residual run: ~5 samples of memory, as long as the baseline takes to follow
    level_alpha: float = 0.1  # level shift: ~10-sample level ...
    level_ref_alpha: float = 0.01  # ... against a ~100-sample reference ...
    level_delay: int = 30  # ... that learns from values this old: a shift is judged against the level before it
    drift_alpha: float = 0.02  # drift: ~50-sample level ...
    drift_ref_alpha: float = 0.002  # ... against a ~500-sample reference
    spread_alpha: float = 0.05  # variance change: ~20-sample mean |residual| ...
    spread_ref_alpha: float = 0.002  # ... against a ~500-sample one
    norm_alpha: float = 0.002  # how fast each statistic learns its own (robust) spread (~500 samples)
    tail_quantile: float = 0.99  # the residual quantile matched to the Gaussian one (heavy tails)
    density_z: float = 3.0  # |z| (floored scales, not tail-matched: the learned rate is the tail) that starts an outlier
    density_alpha: float = 0.001  # its long-run outlier rate: ~1,000 samples of memory
    density_recent_alpha: float = 0.02  # its recent rate (adopted when a denser regime is accepted)
    density_gain: float = 10.0  # the alternative rate: this many times the learned one ...
    density_min_rate: float = 0.08  # ... and at least this: 8 in 100 samples is a storm on any metric
    # -- memory of what is normal for this metric
    event_z: float = 4.0  # a tail-matched |z| this large is a spike event (their rate and size are learned)
    event_memory: int = 5000  # samples over which spike events are counted: an hourly batch job recurs within it even at 5 s sampling
    min_events: int = 3  # spikes of a sign within the memory (or jumps to a level) before they are old news
    burst_prior: float = 0.1  # memory.BurstEvidence: the chance that an outlier is followed by another of its
    # sign before the metric has taught its own (isolated glitches: ~0.05; regime switching: 0.4-0.9) ...
    burst_prior_weight: float = 20.0  # ... worth this many outliers ...
    burst_alpha: float = 0.02  # ... then an EW mean over ~50 outliers. A burst is a run of spikes (each |z| >=
    # event_z). Dev 69.7 -> 70.1 (spike windows 76 -> 78 of 90), healthy false alarms 0.46 per 8 h unchanged;
    # prior 0.05-0.2, weight 5-20, alpha 0.02-0.05 all score the same. Counting every outlier (|z| > huber_c):
    # 70.6, but 0.58 per 8 h (runs of wander just past c on autocorrelated series); Stouffer's z / sqrt(k),
    # which ignores how this metric's outliers cluster: 70.9 at 0.64 per 8 h
    level_slots: int = 8  # levels jumped to that are remembered: more operating regimes than any metric has
    level_memory: int = 5000  # dwell and visits at a level decay with this time constant (samples)
    familiar_dwell: float = 30.0  # samples spent at a level that make it familiar
    familiar_held: float = 100.0  # a level held this long before the metric jumped away is familiar: the jump back is
    # the recovery (memory.LevelMemory). Dev 70.1 -> 70.4 (false alarms 426 -> 404, windows found 312 unchanged;
    # healthy 0.46 -> 0.41 per 8 h); 200: 70.4; 50: 70.2; 30 (any stay as long as familiar_dwell): 70.2, 2 windows
    # fewer (a jump within spike_z sd of a briefly held level is discounted as a regime switch)
    # -- onset behaviour
    adapt_samples: int = 10  # alarming samples after which a statistic accepts the new regime
    level_min_samples: int = 60  # samples after warm-up before the level statistics may score ...
    spread_min_samples: int = 60  # ... the spread statistic (their running spreads have settled by then)
    drift_min_samples: int = 300  # ... and the drift statistic (its 500-sample reference needs longer)
    flatline_min_run: int = 5  # identical values in a row before a stuck value may score
    # -- a seasonal model that changes
    relearn_updates: int = 20  # the weekly profile switched on: the level statistics' old spreads count as this many updates
    # -- is the daily pattern still there (season_fit.SeasonFit)
    season_fit_z: float = 3.5  # its z that maps to 0.5: a mean over ~50 samples of a smooth level, judged against
    # its own spread, is near-Gaussian; on the development half 3.0 / 3.5 / 4.0 score 67.9 / 68.3 / 67.7
    season_fit_alpha: float = 0.02  # ~50 samples: 4 hours of a pattern gone flat at 5-minute samples
    season_fit_min_samples: int = 200  # samples with a profile applied before its spread (~500 samples) may judge
    season_fit_min_cycles: int = 4  # days folded into the daily profile before it scores: a younger profile's own
    # error (its first days' noise) looks like a missing pattern

    def __post_init__(self) -> None:
        if self.warmup < 3:
            raise ValueError(f"warmup must be >= 3, got {self.warmup}")
        if self.season_seconds is not None and not (math.isfinite(self.season_seconds) and self.season_seconds > 0):
            raise ValueError(f"season_seconds must be positive and finite, or None; got {self.season_seconds}")
        if self.season_bins < 2:
            raise ValueError(f"season_bins must be >= 2, got {self.season_bins}")
        if self.season_min_cycles < 1:
            raise ValueError(f"season_min_cycles must be >= 1, got {self.season_min_cycles}")
        for name in ("spike_z", "level_z", "run_z", "drift_z", "spread_z", "flatline_z", "density_h", "huber_c",
                     "combined_ratio", "evidence_h"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"{name} must be positive, got {v}")
        if not (math.isfinite(self.step_floor) and self.step_floor >= 0.0):
            raise ValueError(f"step_floor must be finite and >= 0, got {self.step_floor}")
        if not (0.0 <= self.relative_floor < 1.0):
            raise ValueError(f"relative_floor must be in [0, 1), got {self.relative_floor}")
        if not 0.5 < self.tail_quantile < 1.0:
            raise ValueError(f"tail_quantile must be in (0.5, 1), got {self.tail_quantile}")
        if self.recheck < 0 or self.level_delay < 0:
            raise ValueError(f"recheck and level_delay must be >= 0, got {self.recheck}, {self.level_delay}")
        if not (math.isfinite(self.season_fit_z) and self.season_fit_z > 0.0 and 0.0 < self.season_fit_alpha < 0.5):
            raise ValueError(f"season_fit_z must be positive and season_fit_alpha in (0, 0.5), got "
                             f"{self.season_fit_z}, {self.season_fit_alpha}")
        if self.season_fit_min_samples < 0 or self.season_fit_min_cycles < 1:
            raise ValueError("season_fit_min_samples must be >= 0 and season_fit_min_cycles >= 1")
        if self.relearn_updates < 1:
            raise ValueError(f"relearn_updates must be >= 1, got {self.relearn_updates}")
        if self.persist < 1 or self.adapt_samples < 1 or self.flatline_min_run < 2:
            raise ValueError("persist and adapt_samples must be >= 1, flatline_min_run >= 2")
        if not (math.isfinite(self.familiar_held) and self.familiar_held >= 0.0):
            raise ValueError(f"familiar_held must be finite and >= 0, got {self.familiar_held}")
        if self.event_memory < 1 or self.level_memory < 1 or self.level_slots < 1 or self.min_events < 1:
            raise ValueError("event_memory, level_memory, level_slots and min_events must be >= 1")
        if not 0.0 <= self.run_decay < 1.0:
            raise ValueError(f"run_decay must be in [0, 1), got {self.run_decay}")
        if not (0.0 <= self.evidence_decay < 1.0 and 0.0 < self.evidence_floor < 1.0):
            raise ValueError(f"evidence_decay must be in [0, 1) and evidence_floor in (0, 1), got "
                             f"{self.evidence_decay}, {self.evidence_floor}")
        if not (0.0 < self.burst_prior < 1.0 and self.burst_prior_weight >= 0.0 and 0.0 < self.burst_alpha <= 1.0):
            raise ValueError(f"burst_prior must be in (0, 1), burst_prior_weight >= 0 and burst_alpha in (0, 1]; got "
                             f"{self.burst_prior}, {self.burst_prior_weight}, {self.burst_alpha}")
        if not (self.density_gain > 1.0 and 0.0 < self.density_min_rate < 0.5 and self.density_z > 0.0):
            raise ValueError("density_gain must be > 1, density_min_rate in (0, 0.5), density_z > 0")
        for name in ("season_cycle_weight", "fast_alpha", "scale_alpha", "level_alpha", "level_ref_alpha",
                     "drift_alpha", "drift_ref_alpha", "spread_alpha", "spread_ref_alpha", "norm_alpha",
                     "density_alpha", "density_recent_alpha"):
            a = getattr(self, name)
            if not 0.0 < a <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {a}")

    @property
    def threshold_z(self) -> float:
        """The spike threshold (the reference the other thresholds are set against)."""
        return self.spike_z


@dataclass(frozen=True, slots=True)
class AnomalyExplanation:
    """Why the last valid sample got its score.

    ``kind`` names the change that set the score: ``spike``, ``level_shift``, ``variance_change``,
    ``drift``, ``seasonal`` (a level change that is wrong only for the time of day: the value is
    inside the usual daily range; or the daily pattern itself is missing: ``season_fit_z``),
    ``flatline`` (a stuck value), ``spike_density`` (outliers
    coming faster than the metric's own rate of them); ``none`` when the score is
    negligible (< 0.01) and ``warmup`` while learning. ``z`` is that statistic's signed
    Gaussian-equivalent z and ``ratio`` its multiple of its own alert threshold; the ``*_z``
    fields give every statistic, ``density_llr`` the outlier-rate CUSUM of the sign its episode
    adds up (its threshold is ``density_h``), ``season_fit_z`` how far the daily pattern is missing from the level (the
    ``season_fit.SeasonFit`` statistic, signed as the value moves; its threshold is
    ``season_fit_z`` of the config), ``evidence`` the persistent sub-threshold evidence as a multiple of its alarm
    level (when it sets the score, ``kind`` is the statistic whose ratio added up). ``expected``
    is the one-step expectation in the metric's units; ``scale`` and ``seasonal_offset`` are in
    model space (log units when ``log_space``).
    """

    score: float = 0.0
    kind: str = WARMUP
    z: float = 0.0
    ratio: float = 0.0
    value: float = math.nan
    timestamp: float = math.nan
    expected: float = math.nan
    scale: float = math.nan
    seasonal_offset: float = 0.0
    log_space: bool = False
    spike_z: float = 0.0
    level_z: float = 0.0
    drift_z: float = 0.0
    variance_z: float = 0.0
    flatline_z: float = 0.0
    density_llr: float = 0.0
    evidence: float = 0.0
    season_fit_z: float = 0.0

    @property
    def component(self) -> str:
        """The former name of ``kind``."""
        return self.kind
