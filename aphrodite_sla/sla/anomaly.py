"""Streaming anomaly detection for an inference server's operational metrics.

``AnomalyDetector`` scores each new sample of one metric (latency, throughput, error rate, GPU
utilisation, KV-cache usage, ...) in O(1) time and memory (about 5 us in CPython), without
look-ahead, and explains which kind of change set the score. ``WindowedZScoreDetector`` and
``zscore`` are the classic "|z| > 2.5 against the last N points" rule, kept as the baseline the
detector is measured against (``benchmarks/bench_anomaly.py``).

How ``AnomalyDetector`` works, and why:

* **Transform.** Positive, clearly right-skewed metrics (latencies) are modelled in log space,
  where their noise is roughly Gaussian and a x2 slowdown has the same size at any load; the
  choice is made once, from the warm-up samples, and narrow or symmetric data stays linear.
* **Seasonality.** A time-of-day profile (``season_bins`` bins over ``season_seconds``) is learned
  by classical decomposition of each complete cycle (bin mean minus cycle mean), Huber-clipped
  against the usual cycle-to-cycle change so one bad day barely moves it, used once a bin has
  ``season_min_cycles`` cycles, interpolated between bin centres and shrunk towards zero by how
  far its amplitude stands above its own estimation noise: a daily load curve is not mistaken for
  a drift, and a flat metric gets no spurious profile.
* **Robust baseline.** A fast exponentially weighted level predicts the next value; its updates
  are Huber-clipped so spikes do not pollute it, and ``persist`` same-sign outliers in a row
  re-centre it. The scale is an EW mean absolute deviation floored by half the typical non-zero
  step, so integer, step-wise and mostly-zero series (0 % errors with blips) neither divide by
  zero nor alarm on an ordinary blip.
* **Components**, each a Gaussian-equivalent z compared with its own threshold:
  ``spike`` (one-step residual, tail-matched to the series' own 99th percentile, and discounted
  when outliers of that sign and size recur - GC pauses, sawtooth resets - by a small model of
  their rate and size); ``level_shift`` (an EW sum of clipped residuals for abrupt shifts, and a
  medium vs slow level for gradual ones); ``drift`` (slow vs very slow level); ``variance_change``
  (short vs long residual scale, ignoring outlier runs that are level changes); ``seasonal``
  (slow level vs the time-of-day expectation, only where a profile is in use). The smoothed
  statistics are standardised by their own running spread (floored by the white-noise value), so
  autocorrelated series that wander are not flagged for wandering; the spreads learn slowly and
  with clipping, and the slow references pause while an alarm is on, so an anomaly does not
  teach itself as normal.
* **Adaptation.** A component that keeps alarming for ``adapt_samples`` samples accepts the new
  regime (re-bases its references as fresh running means), so a persistent change alarms once,
  briefly, not forever; the level before an accepted shift is remembered for ``memory_samples``,
  so the recovery after a long incident is not a second alarm.
* **Score.** ``score = 1 - 2 ** -((z / threshold) ** 2)`` for the strongest component, so 0
  without evidence, exactly 0.5 where a component reaches its threshold (``threshold_z`` = 5.5
  for spikes, a two-sided Gaussian tail of ~4e-8 per sample after tail matching; 0.85x that for
  the level and seasonal statistics and 0.9x for drift, which are smoothed and lighter-tailed),
  0.94 at twice it. Treat ``score >= 0.5`` as
  alert-worthy: on in-distribution noise (white, autocorrelated, lognormal, seasonal, sparse
  counts, integer steps) the tests hold the alert rate under 1 per 1000 samples after the
  learning period, and typical scores stay below 0.1.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "AnomalyDetector",
    "AnomalyDetectorConfig",
    "AnomalyExplanation",
    "WindowedZScoreDetector",
    "zscore",
    "z_to_score",
]

_LN2 = math.log(2.0)
_MAD_TO_SD = math.sqrt(math.pi / 2.0)  # Gaussian sd / mean absolute deviation
_Q99 = 2.5758293035489004  # two-sided 99 % point of N(0, 1)
_CLAMP = 1e100  # raw values are clamped to +-this so that squares stay finite
_ABS_FLOOR = 1e-12
_FAR_PAST = -(2**62)
_SQRT2 = math.sqrt(2.0)
_EVENT_Z = 4.0  # a residual this surprising counts as an outlier event for the recurrence model

SPIKE = "spike"
LEVEL_SHIFT = "level_shift"
VARIANCE_CHANGE = "variance_change"
DRIFT = "drift"
SEASONAL = "seasonal"
NONE = "none"
WARMUP = "warmup"


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class AnomalyDetectorConfig:
    """Tuning knobs of ``AnomalyDetector``; the defaults suit engine metrics sampled every 1 s to
    5 min. Smoothing constants are per sample, not per second, so behaviour does not depend on the
    scrape interval; only the seasonal profile reads timestamps."""

    warmup: int = 30  # samples scored 0 while the transform and first baseline are chosen
    season_seconds: float | None = 86_400.0  # None disables the time-of-day profile
    season_bins: int = 48
    season_min_cycles: int = 2  # a bin is used once it has been learned from this many cycles
    season_cycle_weight: float = 0.3  # EW weight of the newest cycle in a bin's profile value
    log_transform: bool | None = None  # None: auto (warm-up all > 0, right-skewed and wide)
    threshold_z: float = 5.5  # Gaussian-equivalent spike z that maps to score 0.5
    fast_alpha: float = 0.2  # one-step level (spike residuals)
    scale_alpha: float = 0.01  # residual scale
    huber_c: float = 3.0  # residuals beyond c * scale are clipped before they update a baseline
    persist: int = 4  # same-sign outliers in a row that re-centre the fast level
    burst_beta: float = 0.2  # level_shift: decay of the EW sum of clipped innovations
    event_memory: int = 2000  # samples over which recurring outliers are counted
    mid_alpha: float = 0.1  # level_shift: medium level ...
    ref_alpha: float = 0.01  # ... against a slow reference
    drift_fast_alpha: float = 0.02  # drift: slow level ...
    drift_slow_alpha: float = 0.002  # ... against a very slow reference
    var_alpha: float = 0.05  # variance_change: short-term residual scale
    # per-component thresholds as fractions of threshold_z: the smoothed statistics have
    # lighter tails than one-sample residuals, so they can afford a lower bar at the same
    # false-alarm rate (measured on the clean series in tests/anomaly_series.py)
    level_z_factor: float = 0.85
    drift_z_factor: float = 0.9
    variance_z_factor: float = 1.0
    seasonal_z_factor: float = 0.85
    norm_alpha: float = 0.001  # how fast the component normalisers learn their own spread
    adapt_samples: int = 10  # alarming samples after which a component accepts the new regime
    memory_samples: int = 1440  # how long the level before an accepted shift is remembered
    level_min_samples: int = 60  # samples after warm-up before each component may score
    variance_min_samples: int = 60
    drift_min_samples: int = 300

    def __post_init__(self) -> None:
        if self.warmup < 3:
            raise ValueError(f"warmup must be >= 3, got {self.warmup}")
        if self.season_seconds is not None and not (math.isfinite(self.season_seconds) and self.season_seconds > 0):
            raise ValueError(f"season_seconds must be positive and finite, or None; got {self.season_seconds}")
        if self.season_bins < 2:
            raise ValueError(f"season_bins must be >= 2, got {self.season_bins}")
        if self.season_min_cycles < 1:
            raise ValueError(f"season_min_cycles must be >= 1, got {self.season_min_cycles}")
        if not (math.isfinite(self.threshold_z) and self.threshold_z > 0):
            raise ValueError(f"threshold_z must be positive, got {self.threshold_z}")
        if self.persist < 1 or self.adapt_samples < 1 or self.memory_samples < 0:
            raise ValueError("persist and adapt_samples must be >= 1, memory_samples >= 0")
        for name in ("level_z_factor", "drift_z_factor", "variance_z_factor", "seasonal_z_factor"):
            f = getattr(self, name)
            if not (math.isfinite(f) and f > 0.0):
                raise ValueError(f"{name} must be positive, got {f}")
        if self.event_memory < 1:
            raise ValueError(f"event_memory must be >= 1, got {self.event_memory}")
        for name in ("season_cycle_weight", "fast_alpha", "burst_beta", "scale_alpha", "mid_alpha", "ref_alpha",
                     "drift_fast_alpha", "drift_slow_alpha", "var_alpha", "norm_alpha"):
            a = getattr(self, name)
            if not 0.0 < a <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {a}")


@dataclass(frozen=True, slots=True)
class AnomalyExplanation:
    """Why the last valid sample got its score.

    ``component`` is the part that set the score: ``spike``, ``level_shift``, ``variance_change``,
    ``drift`` or ``seasonal``; ``none`` when the score is negligible (< 0.01) and ``warmup`` while
    learning. ``z`` is that component's signed Gaussian-equivalent z (the ``*_z`` fields give all
    of them); ``expected`` is the one-step expectation in the metric's own units; ``scale`` and
    ``seasonal_offset`` are in model space (log units when ``log_space``).
    """

    score: float = 0.0
    component: str = WARMUP
    z: float = 0.0
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
    seasonal_z: float = 0.0


@dataclass(slots=True)
class _SeasonalState:
    """Time-of-day profile (fixed-size per-bin lists) and the cycle being accumulated."""

    value: list[float]  # profile value per bin: bin mean minus cycle mean (model units)
    cycles: list[int]  # cycles each bin has been learned from
    cyc_sum: list[float]  # current cycle: per-bin sum and count of normal samples
    cyc_n: list[int]
    total: float = 0.0  # sum and sum of squares of ``value`` over bins with data
    total_sq: float = 0.0
    used: int = 0  # bins with data
    ready: int = 0  # bins learned from at least ``season_min_cycles`` cycles
    cur_cycle: int = _FAR_PAST
    cyc_first: float = math.nan  # first and last timestamp accumulated in the current cycle
    cyc_last: float = math.nan
    ms_delta: float = 0.0  # EW mean square of a bin's cycle-to-cycle change: estimation noise
    n_delta: int = 0
    n_cycles: int = 0  # cycles folded into the profile
    shrink: float = 0.0  # 0..1 weight the profile is applied with


@dataclass(slots=True)
class _DetectorState:
    """Everything ``AnomalyDetector`` remembers. Fixed size: the warm-up lists hold at most
    ``warmup`` samples and are emptied when it ends, the seasonal lists have ``season_bins``
    entries, ``v_queue`` at most ``persist`` - 1."""

    n_seen: int = 0  # valid samples, warm-up included
    warm_values: list[float] = field(default_factory=list)
    warm_times: list[float] = field(default_factory=list)
    log_space: bool = False
    log_offset: float = 0.0
    n: int = 0  # samples through the model
    last_ts: float = math.nan  # latest timestamp seen
    dt_typ: float = 0.0  # typical sampling interval (EW of positive steps), seconds
    last_y: float = math.nan
    # last scored sample, for the explanation
    last_score: float = 0.0
    last_value: float = math.nan
    last_time: float = math.nan
    last_component: str = WARMUP
    last_z: float = 0.0
    comp_z: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    last_s_off: float = 0.0
    # one-step model
    mf: float = 0.0
    sig_abs: float = 0.0
    jump: float = 0.0  # EW mean of non-zero |y_t - y_{t-1}|
    n_jumps: int = 0
    run: int = 0
    run_sign: int = 0
    run_tol: bool = False  # the current outlier run is a recurring (tolerated) kind of event
    run_event: bool = False  # the current outlier run started with an event-sized residual
    q99: float = _Q99
    # recurring-outlier model, per sign (0: up, 1: down)
    ev_rate: list[float] = field(default_factory=lambda: [0.0, 0.0])  # events per sample ...
    ev_at: list[int] = field(default_factory=lambda: [0, 0])  # ... as of this sample index
    ev_mu: list[float] = field(default_factory=lambda: [0.0, 0.0])  # EW mean / var of log z
    ev_var: list[float] = field(default_factory=lambda: [0.0, 0.0])
    ev_n: list[int] = field(default_factory=lambda: [0, 0])
    ev_persist: list[float] = field(default_factory=lambda: [0.0, 0.0])  # share of events that
    ev_pn: list[int] = field(default_factory=lambda: [0, 0])  # became a level (runs >= persist)
    ev_prev: int = 0  # sign of the event the previous sample was part of (0: none)
    # fast level shift: EW sum of clipped innovations and its normaliser
    g: float = 0.0
    ms_g: float = 0.0
    # level / drift references and normalisers (mean squares)
    mm: float = 0.0
    mr: float = 0.0
    ma: float = 0.0
    mb: float = 0.0
    ms_level: float = 0.0
    ms_drift: float = 0.0
    ms_season: float = 0.0
    n_season: int = 0  # samples the seasonal normaliser has learned from
    # variance
    v_short: float = 0.0
    v_queue: list[float] = field(default_factory=list)  # last persist-1 capped |residuals|
    v_run_q: int = 0  # how many of them (the newest) belong to the current outlier run
    run_sign_prev: int = 0  # outlier sign of the previous sample (0: not an outlier)
    ms_var: float = 0.0
    # adaptation
    cnt_level: float = 0.0
    cnt_drift: float = 0.0
    cnt_var: float = 0.0
    cnt_season: float = 0.0
    n_ref: int = 0  # samples since the slow reference (mr) was (re)started ...
    n_drift: int = 0  # ... and since the drift pair (ma, mb) was; both restart as running means
    prev_level: float = 0.0  # the level before the last accepted shift ...
    prev_ttl: int = 0  # ... remembered for this many more samples
    ret_pending: bool = False  # the previous sample looked like a return to ``prev_level``
    prev_base: float = 0.0  # the seasonal base before the last seasonal re-basing ...
    prev_base_ttl: int = 0  # ... remembered for this many more samples
    base: float = 0.0  # deseasonalised slow level (about one season): the seasonal component's reference
    season: _SeasonalState | None = None


# ------------------------------------------------------------------------------------ helpers


def z_to_score(z: float, threshold_z: float) -> float:
    """Map |z| to [0, 1): 0.5 at ``threshold_z``, smooth and monotone (NaN maps to 0)."""
    if not z == z:
        return 0.0
    r = abs(z) / threshold_z
    if r > 8.0:
        return 1.0
    return 1.0 - math.exp(-_LN2 * r * r)


def zscore(value: float, baseline: np.ndarray) -> float:
    """Classic z of ``value`` against a baseline window (mean and sample std, ddof=1).

    0.0 when the baseline has fewer than 2 finite points or no spread, or the value is not finite:
    this is the seed rule ("|z| > 2.5 is anomalous") that the detector is compared with.
    """
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if not math.isfinite(v):
        return 0.0
    b = np.asarray(baseline, dtype=np.float64).ravel()
    if b.size < 2:
        return 0.0
    with np.errstate(all="ignore"):
        finite = np.isfinite(b)
        if not finite.all():
            b = b[finite]
            if b.size < 2:
                return 0.0
        mean = float(b.mean())
        sd = float(b.std(ddof=1))
        z = (v - mean) / sd if sd > 0.0 else 0.0
    return z if math.isfinite(z) else 0.0


def _octile_skew(x: np.ndarray) -> float:
    """Robust skewness in [-1, 1] from the octiles; one outlier in the warm-up cannot swing it."""
    lo, mid, hi = np.quantile(x, [0.125, 0.5, 0.875])
    span = hi - lo
    return float((hi + lo - 2.0 * mid) / span) if span > 0.0 else 0.0


def _choose_transform(values: np.ndarray, forced: bool | None) -> tuple[bool, float]:
    """(log_space, offset). Auto: log when every warm-up value is positive and clearly
    right-skewed with a wide relative spread (heavy-tailed latencies: multiplicative noise).
    Near-symmetric or narrow data stays linear:
    there log buys nothing and would blow up a metric that later wanders towards zero. The offset
    (2 % of the median) keeps a later zero or negative value finite instead of -inf."""
    positive = values.size > 0 and bool(np.all(values > 0.0))
    if forced is None:
        lo, hi = np.quantile(values, [0.125, 0.875]) if positive else (1.0, 1.0)
        use_log = positive and _octile_skew(values) > 0.15 and hi > 1.25 * lo
    else:
        use_log = bool(forced)
    offset = 0.0
    if use_log:
        pos = values[values > 0.0]
        med = float(np.median(pos)) if pos.size else 0.0
        offset = 0.02 * med if med > 0.0 else 1e-9
    return use_log, offset


def _z_of_tail(p: float) -> float:
    """z with upper-tail probability ``p`` (Abramowitz-Stegun 26.2.23, |error| < 5e-4)."""
    if p >= 0.5:
        return 0.0
    if p < 1e-300:
        p = 1e-300
    t = math.sqrt(-2.0 * math.log(p))
    num = 2.515517 + 0.802853 * t + 0.010328 * t * t
    return t - num / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)


def _ew_pair_sd(a1: float, a2: float) -> float:
    """Standard deviation, in white-noise sd units, of the difference of two EW means."""
    v = a1 / (2.0 - a1) + a2 / (2.0 - a2) - 2.0 * a1 * a2 / (a1 + a2 - a1 * a2)
    return math.sqrt(max(v, 0.0))


# ------------------------------------------------------------------------------------ detector


class AnomalyDetector:
    """Streaming anomaly score in [0, 1] for one metric; see the module docstring for the model.

    ``update(value, timestamp)`` never raises: a non-finite or non-numeric value or timestamp
    leaves the state untouched and returns the previous score. Deterministic: the same inputs
    give the same scores.
    """

    def __init__(
        self,
        *,
        warmup: int = 30,
        season_seconds: float | None = 86_400.0,
        season_bins: int = 48,
        season_min_cycles: int = 2,
        log_transform: bool | None = None,
        threshold_z: float = 5.5,
        adapt_samples: int = 10,
        config: AnomalyDetectorConfig | None = None,
    ) -> None:
        if config is None:
            config = AnomalyDetectorConfig(
                warmup=warmup, season_seconds=season_seconds, season_bins=season_bins,
                season_min_cycles=season_min_cycles, log_transform=log_transform,
                threshold_z=threshold_z, adapt_samples=adapt_samples,
            )
        self.config = config
        c = config
        self._k_level = _ew_pair_sd(c.mid_alpha, c.ref_alpha)
        self._k_drift = _ew_pair_sd(c.drift_fast_alpha, c.drift_slow_alpha)
        # sd of log(EW mean |e| / E|e|) for Gaussian residuals
        self._k_var = math.sqrt((math.pi / 2.0 - 1.0) * c.var_alpha / (2.0 - c.var_alpha))
        self._factors = (c.level_z_factor, c.drift_z_factor, c.seasonal_z_factor, c.variance_z_factor)
        self._g_decay = 1.0 - c.burst_beta
        self._k_g = 1.0 / math.sqrt(1.0 - self._g_decay**2)  # sd of the EW sum of white N(0, 1)
        self._a_ev = 1.0 / c.event_memory
        self._up = math.exp(0.05 * 0.99)  # q99 tracker: log q += 0.05 * (1{|z| > q} - 0.01)
        self._down = math.exp(-0.05 * 0.01)
        self._st = _DetectorState()
        self.reset()

    # -- public ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (a new deployment, a different metric)."""
        nb = self.config.season_bins
        season = (_SeasonalState(value=[0.0] * nb, cycles=[0] * nb, cyc_sum=[0.0] * nb, cyc_n=[0] * nb)
                  if self.config.season_seconds else None)
        self._st = _DetectorState(season=season)

    @property
    def n_samples(self) -> int:
        """Valid samples seen since construction or the last ``reset``."""
        return self._st.n_seen

    @property
    def last_explanation(self) -> AnomalyExplanation:
        """Explanation of the last valid sample (built on demand, so ``update`` stays cheap)."""
        st = self._st
        if st.n_seen <= self.config.warmup:
            return AnomalyExplanation(score=0.0, component=WARMUP if st.n_seen else NONE,
                                      value=st.last_value, timestamp=st.last_time, log_space=st.log_space)
        s_off = st.last_s_off
        mu = st.mf + s_off
        expected = (math.exp(min(mu, 700.0)) - st.log_offset) if st.log_space else mu
        sig = max(_MAD_TO_SD * st.sig_abs, 0.5 * st.jump, _ABS_FLOOR)
        z1, z2, z3, z4, z5 = st.comp_z
        return AnomalyExplanation(
            score=st.last_score, component=st.last_component, z=st.last_z, value=st.last_value,
            timestamp=st.last_time, expected=expected, scale=sig, seasonal_offset=s_off,
            log_space=st.log_space, spike_z=z1, level_z=z2, drift_z=z3, variance_z=z4, seasonal_z=z5,
        )

    def update(self, value: float, timestamp: float) -> float:
        """Score one sample in O(1): 0 during warm-up, the previous score for invalid input."""
        st = self._st
        try:
            x = float(value)
            t = float(timestamp)
        except (TypeError, ValueError, OverflowError):
            return st.last_score
        if not (math.isfinite(x) and math.isfinite(t)):
            return st.last_score
        if st.n_seen < self.config.warmup:
            st.n_seen += 1
            st.warm_values.append(x)
            st.warm_times.append(t)
            st.last_value = x
            st.last_time = t
            if st.n_seen == self.config.warmup:
                self._finish_warmup()
            return 0.0
        try:
            score = self._step(x, t, True)
        except (ArithmeticError, ValueError, TypeError):  # pragma: no cover - defensive only:
            return st.last_score  # every operation is guarded, none is known to raise
        st.n_seen += 1
        return score

    # -- internals ------------------------------------------------------------------------

    def _finish_warmup(self) -> None:
        """Pick the transform, seed the baselines robustly, then replay the warm-up samples so the
        profile and references learn from them too (a one-off O(warmup) cost)."""
        st = self._st
        vals = np.asarray(st.warm_values, dtype=np.float64)
        times = st.warm_times
        st.log_space, st.log_offset = _choose_transform(vals, self.config.log_transform)
        y = np.array([self._transform(v) for v in st.warm_values])
        med = float(np.median(y))
        dy = np.abs(np.diff(y))
        nz = dy[dy > 0.0]
        st.jump = float(nz.mean()) if nz.size else 0.0
        st.n_jumps = int(nz.size)
        mad_d = float(np.median(dy)) if dy.size else 0.0
        # first differences of white noise have sd sqrt(2) sd, so median |diff| = 0.954 sd
        sd = mad_d / 0.954 if mad_d > 0.0 else float(np.mean(np.abs(y - med))) * _MAD_TO_SD
        st.sig_abs = st.v_short = sd / _MAD_TO_SD
        st.mf = st.mm = st.mr = st.ma = st.mb = st.base = med
        st.n_ref = st.n_drift = 1  # the median counts as one sample of each running mean
        st.last_y = float(y[0])
        st.warm_values = []
        st.warm_times = []
        for v, t in zip(vals.tolist(), times):
            self._step(v, t, False)
        st.last_score = 0.0
        st.last_component = WARMUP

    def _transform(self, x: float) -> float:
        st = self._st
        if st.log_space:
            return math.log((x if x > 0.0 else 0.0) + st.log_offset)
        if x > _CLAMP:
            return _CLAMP
        if x < -_CLAMP:
            return -_CLAMP
        return x

    def _close_cycle(self, ss: _SeasonalState) -> None:
        """Fold the finished cycle into the profile: O(season_bins), once per cycle.

        Each bin's target is its mean over the cycle minus the cycle's mean (classical
        decomposition, so no lagging baseline leaks into the profile). Its change against the
        profile is Huber-clipped at 3 typical cycle-to-cycle changes, so one bad afternoon barely
        moves tomorrow's expectation; the spread of those changes also measures the profile's
        estimation noise, which sets the shrink weight. Cycles covering < 90 % of the season (the
        first, partial one; long gaps) are skipped."""
        nb = self.config.season_bins
        cyc_sum = ss.cyc_sum
        cyc_n = ss.cyc_n
        covered = (ss.cyc_last - ss.cyc_first) >= 0.9 * self.config.season_seconds
        if covered:
            means = [cyc_sum[i] / cyc_n[i] if cyc_n[i] else None for i in range(nb)]
            present = [m for m in means if m is not None]
            covered = len(present) >= 2
        if covered:
            cmean = math.fsum(present) / len(present)
            w = self.config.season_cycle_weight
            need = self.config.season_min_cycles
            lim = 3.0 * math.sqrt(ss.ms_delta) if ss.n_delta >= 2 * nb else math.inf
            sq_sum = 0.0
            n_sq = 0
            for i, m in enumerate(means):
                if m is None:
                    continue
                target = m - cmean
                k = ss.cycles[i]
                old = ss.value[i]
                if k == 0:
                    new = target
                    ss.used += 1
                else:
                    delta = target - old
                    sq_sum += delta * delta
                    n_sq += 1
                    if delta > lim:
                        delta = lim
                    elif delta < -lim:
                        delta = -lim
                    wk = 1.0 / (k + 1)
                    new = old + (wk if wk > w else w) * delta
                ss.value[i] = new
                ss.cycles[i] = k + 1
                if k + 1 == need:
                    ss.ready += 1
            ss.n_cycles += 1
            if n_sq:
                # robust-ish: the cycle's mean square change, clipped at 9x the running value
                msq = sq_sum / n_sq
                if ss.n_delta and msq > 9.0 * ss.ms_delta:
                    msq = 9.0 * ss.ms_delta
                ss.ms_delta = msq if ss.n_delta == 0 else ss.ms_delta + 0.3 * (msq - ss.ms_delta)
                ss.n_delta += n_sq
            vals = [ss.value[i] for i in range(nb) if ss.cycles[i]]
            ss.total = math.fsum(vals)
            ss.total_sq = math.fsum(v * v for v in vals)
            # shrink (James-Stein style): across-bin spread against the estimation noise
            if ss.used >= 2 and ss.n_delta:
                mean = ss.total / ss.used
                var_across = ss.total_sq / ss.used - mean * mean
                w_eff = max(w, 1.0 / ss.n_cycles)
                var_noise = ss.ms_delta * w_eff / (1.0 + w_eff)
                ss.shrink = max(0.0, 1.0 - 2.0 * var_noise / var_across) if var_across > 0.0 else 0.0
        for i in range(nb):
            cyc_sum[i] = 0.0
            cyc_n[i] = 0
        ss.cyc_first = math.nan
        ss.cyc_last = math.nan

    def _record_run(self, sign: int, persisted: float) -> None:
        """Learn whether outlier events of this sign tend to persist (steps) or not (spikes)."""
        st = self._st
        k = 0 if sign > 0 else 1
        m = st.ev_pn[k] + 1
        st.ev_pn[k] = m
        st.ev_persist[k] += (1.0 / m if m < 5 else 0.2) * (persisted - st.ev_persist[k])

    def _step(self, x: float, t: float, scored: bool) -> float:
        """One model update; returns the score. Arithmetic is mostly on locals written back at the
        end (an exception part-way can at worst leave the seasonal bookkeeping advanced)."""
        st = self._st
        cfg = self.config
        if st.log_space:
            y = math.log((x if x > 0.0 else 0.0) + st.log_offset)
        else:
            y = _CLAMP if x > _CLAMP else (-_CLAMP if x < -_CLAMP else x)
        zt = cfg.threshold_z

        # ---- seasonality: the profile value for t; a new cycle folds the last one in
        ss = st.season
        s_off = 0.0
        b = 0
        cycle = 0
        if ss is not None:
            nb = cfg.season_bins
            phase = t / cfg.season_seconds
            cycle = math.floor(phase)
            pos = (phase - cycle) * nb
            b = int(pos)
            if b >= nb:
                b = nb - 1
            if cycle > ss.cur_cycle:
                if ss.cur_cycle != _FAR_PAST:
                    self._close_cycle(ss)
                ss.cur_cycle = cycle
            if ss.shrink > 0.0:
                p = pos - 0.5
                i0 = math.floor(p)
                f = p - i0
                b0 = i0 % nb
                b1 = (b0 + 1) % nb
                need = cfg.season_min_cycles
                r0 = ss.cycles[b0] >= need
                r1 = ss.cycles[b1] >= need
                if r0 or r1:
                    if r0 and r1:
                        raw = (1.0 - f) * ss.value[b0] + f * ss.value[b1]
                    else:
                        raw = ss.value[b0] if r0 else ss.value[b1]
                    s_off = ss.shrink * (raw - ss.total / ss.used)
        d = y - s_off
        n = st.n + 1

        # ---- one-step residual against the fast level; the scale is floored by half the typical
        # non-zero step seen so far (integer / step-wise / sparse series)
        jump = st.jump
        mf = st.mf
        sig_abs = st.sig_abs
        sig = _MAD_TO_SD * sig_abs
        floor = 0.5 * jump
        fl2 = _ABS_FLOOR * (1.0 + abs(mf))
        if floor < fl2:
            floor = fl2
        if sig < floor:
            sig = floor
        e = d - mf
        ae = e if e >= 0.0 else -e
        c = cfg.huber_c * sig
        z_spike = e / sig

        # spike z, tail-matched to the series' own 99th percentile of |z| ...
        q99 = st.q99
        az = ae / sig
        zs = az * (_Q99 / q99) if q99 > _Q99 else az
        # ... and discounted when outliers of this sign and size recur (GC pauses, sawtooth
        # resets): P(|residual| >= z) = P(noise) + rate of such events * P(event this large)
        # A one-sample kind of event (GC pause) that persists is no longer that kind of event.
        tolerated = False
        ev_prev = st.ev_prev
        zs_raw = zs
        if zs >= _EVENT_Z:
            k = 0 if e > 0.0 else 1
            sign = 1 if k == 0 else -1
            a_ev = self._a_ev
            rate = st.ev_rate[k] * math.exp(-a_ev * (n - st.ev_at[k]))
            lz = math.log(zs)
            continuing = st.run > 0 and st.run_sign == sign
            if rate >= 3.5 * a_ev and (not continuing or st.ev_persist[k] >= 0.5):  # ~4+ recent events
                sd_l = math.sqrt(st.ev_var[k])
                if sd_l < 0.15:
                    sd_l = 0.15
                p_ev = rate * 0.5 * math.erfc((lz - st.ev_mu[k]) / (sd_l * _SQRT2))
                z_comb = _z_of_tail(0.5 * math.erfc(zs / _SQRT2) + p_ev)
                if z_comb < zs:
                    zs = z_comb
                tolerated = zs < zt  # a familiar kind of outlier
            if ev_prev != sign:  # onset of an event: count it and learn its size
                st.ev_rate[k] = rate + a_ev * (1.0 - rate)
                st.ev_at[k] = n
                m = st.ev_n[k]
                if m == 0:
                    st.ev_mu[k] = lz
                    st.ev_var[k] = 0.25
                else:
                    w = 1.0 / (m + 1) if m < 10 else 0.1
                    dl = lz - st.ev_mu[k]
                    st.ev_mu[k] += w * dl
                    st.ev_var[k] += w * (dl * dl - st.ev_var[k])
                st.ev_n[k] = m + 1
            ev_prev = sign
        else:
            ev_prev = 0

        # ---- robust level updates
        mm = st.mm
        ma = st.ma
        mr = st.mr
        mb = st.mb
        base = st.base
        prev_ttl = st.prev_ttl
        run = st.run
        run_sign = st.run_sign
        run_tol = st.run_tol
        run_event = st.run_event
        n_ref = st.n_ref  # samples the restartable running means have absorbed
        n_drift = st.n_drift
        returned = False
        accepted = False
        recentred = False
        sgn = 0
        u = 0.0  # clipped innovation in scale units, for the burst statistic
        ret_pending = False
        if ae > c and prev_ttl > 0 and abs(d - st.prev_level) < c and not st.ret_pending:
            # possibly back at the level that held before the last accepted shift: not news for
            # the spike component; confirmed (and the references restored) on a second sample
            ret_pending = True
            zs = abs(d - st.prev_level) / sig
        if ae > c and prev_ttl > 0 and abs(d - st.prev_level) < c and st.ret_pending:
            # back at the level that held before the last accepted shift: a recovery, not news
            returned = True
            base += st.prev_level - mr
            mf = mm = d
            ma = mr = mb = st.prev_level
            n_ref = n_drift = 1
            e = ae = zs = 0.0
            prev_ttl = 0
            run = run_sign = 0
            cleaned = d
        else:
            if e > c:
                ec = c
                sgn = 1
            elif e < -c:
                ec = -c
                sgn = -1
            else:
                ec = e
                sgn = 0
            if sgn:
                if sgn == run_sign:
                    run += 1
                    run_tol = run_tol and tolerated
                else:
                    if run and run_event:
                        self._record_run(run_sign, 0.0)
                    run = 1
                    run_tol = tolerated
                    run_event = zs_raw >= _EVENT_Z
                run_sign = sgn
            else:
                if run and run_event:
                    self._record_run(run_sign, 0.0)
                run = run_sign = 0
            if run >= cfg.persist:  # a persistent new level: follow it rather than clip it
                if run_event:
                    self._record_run(run_sign, 1.0)
                recentred = True
                cleaned = d
                if run_tol:  # a recurring kind of jump: accept it outright
                    accepted = True
                    base += d - mr
                    mr = ma = mb = d
                    n_ref = n_drift = 1
                elif abs(d - mr) < c:  # back at the reference after an excursion: undo its
                    ma = mb  # pull on the drift pair's fast side
                mf = mm = d
                run = run_sign = 0
            else:
                cleaned = mf + ec
                mf += cfg.fast_alpha * ec
                mm += cfg.mid_alpha * (cleaned - mm)
                a_a = cfg.drift_fast_alpha
                if (n_drift + 1) * a_a < 1.0:
                    a_a = 1.0 / (n_drift + 1)
                ma += a_a * (cleaned - ma)
                if not (run_tol and run):
                    u = ec / sig
        sig_abs += cfg.scale_alpha * ((ae if ae < c else c) - sig_abs)
        n_jumps = st.n_jumps
        dy = y - st.last_y
        if dy < 0.0:
            dy = -dy
        if dy > 0.0:
            n_jumps += 1
            if n_jumps > 10 and dy > 10.0 * jump:
                dy = 10.0 * jump
            jump += (1.0 / n_jumps if n_jumps < 20 else 0.05) * (dy - jump)

        # ---- level shift, fast: EW sum of clipped innovations (a CUSUM-like run of surprises)
        g = st.g * self._g_decay + u
        s_g = math.sqrt(st.ms_g)
        if s_g < self._k_g:
            s_g = self._k_g
        z_burst = g / s_g

        # ---- level shift, slow: medium vs slow level
        dl = mm - mr
        s_l = math.sqrt(st.ms_level)
        w = sig * self._k_level
        if s_l < w:
            s_l = w
        z_level = dl / s_l

        # ---- drift: slow vs very slow level
        dd = ma - mb
        s_d = math.sqrt(st.ms_drift)
        w = sig * self._k_drift
        if s_d < w:
            s_d = w
        z_drift = dd / s_d

        # ---- seasonal: slow level vs the time-of-day expectation (only with a profile in use)
        z_season = 0.0
        s_s = 0.0
        ds = ma - base
        # scored only once (nearly) every bin is ready and the profile is clearly real
        season_on = ss is not None and s_off != 0.0 and ss.shrink >= 0.5 and ss.ready * 10 >= cfg.season_bins * 9
        n_season = st.n_season
        if season_on:
            s_s = math.sqrt(st.ms_season)
            w = sig * self._k_drift
            if s_s < w:
                s_s = w
            z_season = ds / s_s
            if st.prev_base_ttl > 0:
                # back near the expectation from before the last seasonal re-basing: restore it,
                # so the end of an odd day does not alarm as a second anomaly
                dp = ma - st.prev_base
                if dp * dp < s_s * s_s and dp * dp < ds * ds:
                    base = st.prev_base
                    ds = dp
                    z_season = ds / s_s
                    st.prev_base_ttl = 0
            n_season += 1

        # ---- variance change: short-term vs long-term residual scale (increases only). Counted
        # persist-1 samples late: outliers that turn out to be a run of ``persist`` (a level
        # change, not a wider spread) then only count up to the Huber bound
        cap = c if (tolerated or accepted or returned or recentred) else 6.0 * sig
        vq = st.v_queue
        if recentred:
            for i in range(len(vq) - st.v_run_q, len(vq)):
                if vq[i] > c:
                    vq[i] = c
        v_run_q = 0 if recentred else (st.v_run_q + 1 if sgn and sgn == st.run_sign_prev else (1 if sgn else 0))
        vq.append(ae if ae < cap else cap)
        v_short = st.v_short
        if len(vq) >= cfg.persist:
            v_short += cfg.var_alpha * (vq.pop(0) - v_short)
        if v_run_q > len(vq):
            v_run_q = len(vq)
        ratio = _MAD_TO_SD * v_short / sig
        lv = math.log(ratio) if ratio > 1e-300 else -690.0
        s_v = math.sqrt(st.ms_var)
        if s_v < self._k_var:
            s_v = self._k_var
        z_var = lv / s_v

        # ---- combine: the strongest calibrated component sets the score
        nm = n - cfg.warmup  # samples since warm-up ended (replayed warm-up samples are <= 0)
        best = zs
        comp = SPIKE
        if nm >= cfg.level_min_samples:
            zl = z_level if z_level >= 0.0 else -z_level
            zb = z_burst if z_burst >= 0.0 else -z_burst
            if zb > zl:
                zl = zb
        else:
            zl = 0.0
        # the slow components wait for a full season when one is modelled: before the profile
        # exists, a daily curve is indistinguishable from a drift
        slow_ok = nm >= cfg.drift_min_samples
        if slow_ok and ss is not None:
            dt_typ = st.dt_typ
            per_season = cfg.season_seconds / dt_typ if dt_typ > 0.0 else math.inf
            slow_ok = nm >= (per_season if per_season < 5000.0 else 5000.0)
        zd = (z_drift if z_drift >= 0.0 else -z_drift) if slow_ok else 0.0
        zn = (z_season if z_season >= 0.0 else -z_season) if n_season >= cfg.drift_min_samples else 0.0
        zv = z_var if nm >= cfg.variance_min_samples else 0.0
        # each component's z in units of its own threshold (zt for the spike)
        fl, fd, fn, fv = self._factors
        zl /= fl
        zd /= fd
        zn /= fn
        zv /= fv
        if zl > best:
            best = zl
            comp = LEVEL_SHIFT
        if zd > best:
            best = zd
            comp = DRIFT
        if zn > best:
            best = zn
            comp = SEASONAL
        if zv > best:
            best = zv
            comp = VARIANCE_CHANGE
        alarm = best >= zt
        if scored:
            r = best / zt
            score = 1.0 if r > 8.0 else 1.0 - math.exp(-_LN2 * r * r)
        else:
            score = 0.0

        # ---- learning that an alarm must not teach: slow references, tail tracker
        # (right after a restart they learn even during an alarm, in step with their fast
        # partners, or a restart would leave the pair apart and alarming on its own)
        snapped = returned or accepted
        if not snapped:
            if not alarm or (n_ref + 1) * cfg.mid_alpha < 1.0:
                a_r = cfg.ref_alpha
                if (n_ref + 1) * a_r < 1.0:
                    a_r = 1.0 / (n_ref + 1)
                mr += a_r * (cleaned - mr)
                n_ref += 1
            if not alarm or (n_drift + 1) * cfg.drift_fast_alpha < 1.0:
                a_b = cfg.drift_slow_alpha
                if (n_drift + 1) * a_b < 1.0:
                    a_b = 1.0 / (n_drift + 1)
                mb += a_b * (cleaned - mb)
            n_drift += 1
        if not alarm:
            q99 = q99 * self._up if az > q99 else q99 * self._down
            if q99 < 1.0:
                q99 = 1.0
        # normalisers learn slowly, with each square clipped at (gate * current spread)^2, so an
        # anomaly that builds up slowly cannot widen them much before it crosses the threshold
        gate2 = 0.36 * zt * zt
        gate2_slow = 0.25 * zt * zt  # the slow statistics drift for longer before they alarm
        a_n = cfg.norm_alpha
        if n * a_n < 1.0:
            a_n = 1.0 / n
        a_slow = 0.25 * cfg.norm_alpha
        if n * a_slow < 1.0:
            a_slow = 1.0 / n
        ms_level = st.ms_level
        ms_g = st.ms_g
        ms_drift = st.ms_drift
        ms_season = st.ms_season
        ms_var = st.ms_var
        if zl < zt:
            sq = dl * dl
            lim = gate2 * s_l * s_l
            ms_level += a_n * ((sq if sq < lim else lim) - ms_level)
            sq = g * g
            lim = gate2 * s_g * s_g
            ms_g += a_n * ((sq if sq < lim else lim) - ms_g)
        if zd < zt:
            sq = dd * dd
            lim = gate2 * s_d * s_d
            ms_drift += a_slow * ((sq if sq < lim else lim) - ms_drift)
        if season_on and zn < zt:
            a_s = 0.25 * cfg.norm_alpha
            if n_season * a_s < 1.0:
                a_s = 1.0 / n_season
            sq = ds * ds
            lim = gate2_slow * s_s * s_s
            ms_season += a_s * ((sq if sq < lim or n_season < 50 else lim) - ms_season)
        if zv < zt:
            sq = lv * lv if lv > 0.0 else 0.0  # only the upper side is scored
            lim = gate2 * s_v * s_v
            ms_var += a_n * ((sq if sq < lim else lim) - ms_var)

        # ---- adaptation: a regime that keeps alarming becomes the new normal
        adapt = cfg.adapt_samples
        # leaky counts of alarming samples (a flickering alarm still adds up)
        cnt_level = st.cnt_level + 1.0 if zl >= zt else (st.cnt_level - 0.25 if st.cnt_level > 0.25 else 0.0)
        cnt_drift = st.cnt_drift + 1.0 if zd >= zt else (st.cnt_drift - 0.25 if st.cnt_drift > 0.25 else 0.0)
        cnt_season = st.cnt_season + 1.0 if zn >= zt else (st.cnt_season - 0.25 if st.cnt_season > 0.25 else 0.0)
        cnt_var = st.cnt_var + 1.0 if zv >= zt else (st.cnt_var - 0.25 if st.cnt_var > 0.25 else 0.0)
        prev_level = st.prev_level
        if prev_ttl > 0:
            prev_ttl -= 1
        if accepted:
            cnt_level = cnt_drift = cnt_season = 0.0
            g = 0.0
        if cnt_level >= adapt:
            if not prev_ttl:
                prev_level = mr
            prev_ttl = cfg.memory_samples
            base += mm - mr
            mr = mb = ma = mm
            n_ref = n_drift = 1
            g = 0.0
            cnt_level = cnt_drift = cnt_season = 0.0
        if cnt_drift >= adapt:
            if not prev_ttl:
                prev_level = mb
                prev_ttl = cfg.memory_samples
            base += ma - mb
            mb = ma
            n_drift = 1
            cnt_drift = cnt_season = 0.0
        if cnt_season >= adapt:
            if st.prev_base_ttl <= 0:
                st.prev_base = base
            st.prev_base_ttl = cfg.memory_samples
            base = ma
            cnt_season = 0.0
        elif st.prev_base_ttl > 0:
            st.prev_base_ttl -= 1
        if cnt_var >= adapt:
            sig_abs = v_short
            cnt_var = 0.0

        # ---- the seasonal base follows the deseasonalised level over about one season, and
        # normal samples are accumulated for the profile
        if ss is not None and not alarm:
            dt = t - st.last_ts if st.last_ts == st.last_ts else 0.0
            a_base = 1.0 - math.exp(-dt / cfg.season_seconds) if dt > 0.0 else 0.0
            if n * a_base < 1.0:
                a_base = 1.0 / n
            base += a_base * (cleaned - base)
            if cycle == ss.cur_cycle:  # an out-of-order sample from an older cycle is not learned
                if ss.cyc_n[b]:
                    ss.cyc_sum[b] += y
                    ss.cyc_n[b] += 1
                else:
                    ss.cyc_sum[b] = y
                    ss.cyc_n[b] = 1
                if not ss.cyc_first == ss.cyc_first:
                    ss.cyc_first = t
                ss.cyc_last = t

        # ---- write back
        st.n = n
        st.jump = jump
        st.n_jumps = n_jumps
        st.mf = mf
        st.sig_abs = sig_abs
        st.run = run
        st.run_sign = run_sign
        st.run_tol = run_tol
        st.ret_pending = ret_pending
        st.run_event = run_event
        st.ev_prev = ev_prev
        st.q99 = q99
        st.g = g
        st.ms_g = ms_g
        st.mm = mm
        st.mr = mr
        st.ma = ma
        st.mb = mb
        st.ms_level = ms_level
        st.ms_drift = ms_drift
        st.ms_season = ms_season
        st.n_season = n_season
        st.v_short = v_short
        st.v_run_q = v_run_q
        st.run_sign_prev = sgn
        st.ms_var = ms_var
        st.cnt_level = cnt_level
        st.cnt_drift = cnt_drift
        st.cnt_season = cnt_season
        st.cnt_var = cnt_var
        st.prev_level = prev_level
        st.n_ref = n_ref
        st.n_drift = n_drift
        st.prev_ttl = prev_ttl
        st.base = base
        if not t < st.last_ts:
            if t > st.last_ts:
                step = t - st.last_ts
                st.dt_typ = step if st.dt_typ == 0.0 else st.dt_typ + 0.01 * (step - st.dt_typ)
            st.last_ts = t
        st.last_y = y
        if scored:
            st.last_score = score
            st.last_value = x
            st.last_time = t
            st.last_s_off = s_off
            zlv = z_burst if abs(z_burst) > abs(z_level) else z_level
            st.comp_z = (z_spike, zlv, z_drift, z_var, z_season)
            if score < 0.01:
                comp = NONE
            st.last_component = comp
            st.last_z = (z_spike if comp is SPIKE else zlv if comp is LEVEL_SHIFT else
                         z_drift if comp is DRIFT else z_var if comp is VARIANCE_CHANGE else
                         z_season if comp is SEASONAL else 0.0)
        return score


# ------------------------------------------------------------------------------------ baseline


class WindowedZScoreDetector:
    """The naive baseline: z of each value against the previous ``window`` values (mean, sample
    std), mapped with the same curve as ``AnomalyDetector`` so that score 0.5 is exactly the
    classic ``|z| > 2.5`` rule. O(window) per update; never raises."""

    def __init__(self, window: int = 100, threshold_z: float = 2.5) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = int(window)
        self.threshold_z = float(threshold_z)
        self._buf: deque[float] = deque(maxlen=self.window)
        self._last_score = 0.0

    def reset(self) -> None:
        """Forget the window."""
        self._buf.clear()
        self._last_score = 0.0

    def update(self, value: float, timestamp: float) -> float:
        """Score ``value`` against the window, then add it; invalid input returns the last score."""
        try:
            x = float(value)
            t = float(timestamp)
        except (TypeError, ValueError, OverflowError):
            return self._last_score
        if not (math.isfinite(x) and math.isfinite(t)):
            return self._last_score
        buf = self._buf
        z = zscore(x, np.fromiter(buf, dtype=np.float64, count=len(buf))) if len(buf) >= 2 else 0.0
        buf.append(x)
        self._last_score = z_to_score(z, self.threshold_z)
        return self._last_score
