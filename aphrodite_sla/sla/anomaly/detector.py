"""``AnomalyDetector``: the streaming detector, composed of the parts of this package.

Per sample, O(1) (amortised: the seasonal profiles fold a cycle in O(bins) once per cycle):

1. ``transform``: the value into model space (log for skewed positive metrics).
2. ``seasonal``: subtract the expected time-of-day / day-of-week offset.
3. ``baseline``: the residual against the robust one-step level, in units of the floored scale,
   tail-matched, then discounted by ``memory`` when outliers of its sign and size recur or it
   lands on a familiar level: the **spike** statistic.
4. ``statistics``: **level shift** (fast vs slow level, and the leaky sum of residuals),
   **drift** (slow vs very slow level), **variance change** (short vs long residual size),
   **flatline** (a stuck value).
5. ``scoring``: each statistic as a multiple of its own alert threshold; the strongest (or the
   combined evidence of several, when they agree) sets the score ``1 - 2 ** -(ratio ** 2)``:
   0.5 at the threshold.
6. Learning that an alarm must not teach (references, spreads, scale, tail, profiles) waits while
   the detector alarms; a statistic that keeps alarming for ``adapt_samples`` accepts the new
   regime, and a jump to a new level that has already alarmed (or is a familiar kind) is accepted
   at once, so a persistent change alarms at its onset and the score then decays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aphrodite_sla.sla.anomaly.baseline import MAD_TO_SD, RobustBaseline
from aphrodite_sla.sla.anomaly.config import (
    DRIFT,
    FLATLINE,
    LEVEL_SHIFT,
    NONE,
    SEASONAL,
    SPIKE,
    VARIANCE_CHANGE,
    WARMUP,
    AnomalyDetectorConfig,
    AnomalyExplanation,
)
from aphrodite_sla.sla.anomaly.memory import LevelMemory, OutlierEvents
from aphrodite_sla.sla.anomaly.scoring import gauss_two_sided_tail, score_of_ratio, z_of_upper_tail
from aphrodite_sla.sla.anomaly.seasonal import Seasonality
from aphrodite_sla.sla.anomaly.statistics import Flatline, LevelChange, ResidualRun, SpreadChange
from aphrodite_sla.sla.anomaly.transform import Transform, choose_transform

__all__ = ["AnomalyDetector"]

_LEAK = 0.25  # an alarm count decays by this per quiet sample (a flickering alarm still adds up)


def _count(c: float, ratio: float) -> float:
    """Leaky count of alarming samples: +1 at or above the threshold, else decays by _LEAK."""
    if ratio >= 1.0:
        return c + 1.0
    return c - _LEAK if c > _LEAK else 0.0


class _Model:
    """Everything learned after warm-up (rebuilt by ``reset``)."""

    __slots__ = (
        "alarm",
        "base",
        "cnt_drift",
        "cnt_flat",
        "cnt_level",
        "cnt_spread",
        "drift",
        "dt",
        "flat",
        "jumps",
        "last_alarm",
        "last_t",
        "level",
        "levels",
        "n",
        "run",
        "season",
        "spikes",
        "spread",
        "transform",
    )

    def __init__(self, cfg: AnomalyDetectorConfig, transform: Transform) -> None:
        self.transform = transform
        self.season: Seasonality | None = None
        self.base = RobustBaseline(cfg.fast_alpha, cfg.scale_alpha, cfg.huber_c, cfg.persist, cfg.relative_floor,
                                   cfg.tail_quantile, transform)
        self.level = LevelChange(cfg.level_alpha, cfg.level_ref_alpha, cfg.norm_alpha, cfg.level_z)
        self.run = ResidualRun(cfg.run_decay, cfg.huber_c, cfg.norm_alpha, cfg.run_z)
        self.drift = LevelChange(cfg.drift_alpha, cfg.drift_ref_alpha, cfg.norm_alpha, cfg.drift_z)
        self.spread = SpreadChange(cfg.spread_alpha, cfg.spread_ref_alpha, cfg.norm_alpha, cfg.spread_z,
                                   cfg.persist - 1)
        self.flat = Flatline(cfg.flatline_min_run)
        self.spikes = OutlierEvents(cfg.event_memory, cfg.min_events)
        self.levels = LevelMemory(cfg.level_slots, cfg.level_memory, cfg.familiar_dwell, cfg.min_events)
        self.dt = 0.0  # typical sampling interval (EW of positive steps), seconds
        self.last_t = math.nan
        self.n = 0  # samples through the model (the warm-up replay included)
        self.alarm = False  # the last sample alarmed (learning from it waits)
        self.last_alarm = -(2**62)  # sample number of the last alarm
        self.cnt_level = 0.0  # leaky counts of alarming samples, per statistic
        self.cnt_drift = 0.0
        self.cnt_spread = 0.0
        self.cnt_flat = 0.0


class AnomalyDetector:
    """Streaming anomaly score in [0, 1] for one metric (see the package docstring).

    ``AnomalyDetector(config)`` or ``AnomalyDetector(**fields)`` (fields of
    ``AnomalyDetectorConfig``). ``update(value, timestamp)`` never raises: a non-numeric or
    non-finite value or timestamp leaves the state untouched and returns the previous score.
    Deterministic: the same inputs give the same scores. Not thread-safe: one detector per metric,
    fed by one thread.
    """

    __slots__ = (
        "_expl",
        "_k",
        "_last_score",
        "_last_t",
        "_last_x",
        "_m",
        "_n_seen",
        "_warm_t",
        "_warm_x",
        "config",
    )

    def __init__(self, config: AnomalyDetectorConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = AnomalyDetectorConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a config or keyword overrides, not both")
        self.config = config
        c = config
        # per-sample constants, unpacked once per sample (cheaper than attribute reads)
        self._k = (c.huber_c, c.event_z, c.spike_z, c.persist, 1.0 / c.spike_z, 1.0 / c.level_z, 1.0 / c.run_z,
                   1.0 / c.drift_z, 1.0 / c.spread_z, 1.0 / c.flatline_z, 1.0 / c.combined_ratio,
                   c.warmup + c.level_min_samples, c.warmup + c.drift_min_samples, c.warmup + c.spread_min_samples)
        self.reset()

    # -- public ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (a new deployment, a different metric)."""
        self._m: _Model | None = None
        self._warm_x: list[float] = []
        self._warm_t: list[float] = []
        self._n_seen = 0
        self._last_score = 0.0
        self._last_x = math.nan
        self._last_t = math.nan
        # kind, ratio, then the spike, level, drift, variance and flatline z, offset, level, scale
        self._expl: tuple[Any, ...] = (WARMUP, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def n_samples(self) -> int:
        """Valid samples seen since construction or the last ``reset``."""
        return self._n_seen

    @property
    def last_explanation(self) -> AnomalyExplanation:
        """Why the last valid sample got its score (built on demand; ``update`` stays cheap)."""
        m = self._m
        if m is None:
            return AnomalyExplanation(kind=WARMUP if self._n_seen else NONE, value=self._last_x,
                                      timestamp=self._last_t)
        kind, ratio, zs, zl, zd, zv, zf, s_off, level, sigma = self._expl
        z = {SPIKE: zs, LEVEL_SHIFT: zl, DRIFT: zd, VARIANCE_CHANGE: zv, FLATLINE: zf,
             SEASONAL: zl if abs(zl) >= abs(zd) else zd}.get(kind, 0.0)
        return AnomalyExplanation(
            score=self._last_score, kind=kind, z=z, ratio=ratio, value=self._last_x, timestamp=self._last_t,
            expected=m.transform.inverse(level + s_off), scale=sigma, seasonal_offset=s_off,
            log_space=m.transform.log_space, spike_z=zs, level_z=zl, drift_z=zd, variance_z=zv, flatline_z=zf,
        )

    def update(self, value: float, timestamp: float) -> float:
        """Score one sample: 0 during warm-up, the previous score for invalid input."""
        try:
            x = float(value)
            t = float(timestamp)
        except (TypeError, ValueError, OverflowError):
            return self._last_score
        if not (math.isfinite(x) and math.isfinite(t)):
            return self._last_score
        self._n_seen += 1
        self._last_x = x
        self._last_t = t
        m = self._m
        if m is None:
            self._warm_x.append(x)
            self._warm_t.append(t)
            if len(self._warm_x) >= self.config.warmup:
                self._finish_warmup()
            return 0.0
        try:
            score = self._step(m, x, t, True)
        except (ArithmeticError, ValueError, TypeError):  # pragma: no cover - defensive only: every
            return self._last_score  # operation is guarded, none is known to raise
        self._last_score = score
        return score

    # -- internals ------------------------------------------------------------------------

    def _finish_warmup(self) -> None:
        """Pick the transform, seed every part robustly from the warm-up, then replay it so that
        the slower statistics learn from it too (a one-off O(warmup) cost)."""
        cfg = self.config
        ts = self._warm_t
        tr = choose_transform(np.asarray(self._warm_x, dtype=np.float64), cfg.log_transform)
        m = _Model(cfg, tr)
        y = np.array([tr.forward(v) for v in self._warm_x])
        med = float(np.median(y))
        dy = np.abs(np.diff(y))
        nz = dy[dy > 0.0]
        mad_d = float(np.median(dy)) if dy.size else 0.0
        # first differences of white noise have sd sqrt(2) sd: their median |value| is 0.954 sd
        sd = mad_d / 0.954 if mad_d > 0.0 else float(np.mean(np.abs(y - med))) * MAD_TO_SD
        m.base.start(med, sd, float(nz.mean()) if nz.size else 0.0, int(nz.size), float(y[0]))
        m.level.start(med)
        m.drift.start(med)
        steps = np.diff(np.asarray(ts))
        steps = steps[steps > 0.0]
        m.dt = float(np.median(steps)) if steps.size else 0.0
        if cfg.season_seconds is not None:
            bins = cfg.season_bins
            if m.dt > 0.0:  # no more bins than samples per period
                bins = max(2, min(bins, int(cfg.season_seconds / m.dt)))
            m.season = Seasonality(cfg.season_seconds, bins, cfg.weekly, cfg.season_cycle_weight,
                                   cfg.season_min_cycles)
            m.season.start(med, m.dt)
        self._m = m
        for v, t in zip(self._warm_x, ts):
            self._step(m, v, t, False)
        self._warm_x = []
        self._warm_t = []
        self._last_score = 0.0

    def _step(self, m: _Model, x: float, t: float, scored: bool) -> float:
        """One sample through the model; returns its score (0 when not ``scored``)."""
        (huber_c, event_z, spike_z, persist, inv_spike, inv_level, inv_run, inv_drift, inv_spread, inv_flat,
         inv_comb, level_from, drift_from, spread_from) = self._k
        n = m.n + 1
        m.n = n
        y = m.transform.forward(x)
        season = m.season
        s_off = season.offset(t) if season is not None else 0.0
        d = y - s_off  # the deseasonalised value
        base = m.base
        learn = not m.alarm  # the parts learn from the previous sample unless it alarmed

        # -- spike: the one-step residual, tail-matched, discounted when it is old news
        base.observe(d, y, learn)
        sigma = base.sigma
        zt = zs = base.tail_z
        signed = zt if base.z >= 0.0 else -zt
        familiar = False  # the outlier lands on a familiar level: a regime switch
        if base.z > huber_c or base.z < -huber_c:
            zs, familiar = self._discount(m, d, zt, signed, sigma, n)
        old_level = base.level
        base.advance(d, 0.0 if familiar else 1.0)
        cleaned = base.cleaned
        recentred = base.recentred
        if recentred or m.spikes.run_sign or signed >= event_z or signed <= -event_z:
            m.spikes.observe(signed, event_z, n, recentred)
        if recentred:
            self._new_level(m, d, cleaned, old_level, zs >= spike_z or familiar, sigma, n)

        # -- the other statistics
        zl = m.level.update(cleaned, sigma, learn)
        zr = m.run.update(0.0 if recentred or familiar else signed, learn)
        zd = m.drift.update(cleaned, sigma, learn)
        zv = m.spread.update(zs, recentred, persist, learn)
        zf = m.flat.update(x, learn)

        # -- each as a multiple of its threshold; the strongest, or several that agree, score
        best = rs = zs * inv_spike
        kind = SPIKE
        rl = rd = rv = 0.0
        if n >= level_from:
            rl = (zl if zl >= 0.0 else -zl) * inv_level
            rr = (zr if zr >= 0.0 else -zr) * inv_run
            if rr > rl:
                rl = rr
                zl = zr
        if n >= drift_from:
            rd = (zd if zd >= 0.0 else -zd) * inv_drift
        if n >= spread_from:
            rv = zv * inv_spread
        rf = zf * inv_flat
        if rl > best:
            best, kind = rl, LEVEL_SHIFT
        if rd > best:
            best, kind = rd, DRIFT
        if rv > best:
            best, kind = rv, VARIANCE_CHANGE
        if rf > best:
            best, kind = rf, FLATLINE
        comb = math.sqrt(rs * rs + rl * rl + rd * rd + rv * rv) * inv_comb
        if comb > best:
            best = comb
        alarm = best >= 1.0
        m.alarm = alarm
        if alarm:
            m.last_alarm = n
        else:
            m.levels.dwell(base.level, huber_c * sigma)
            if season is not None:
                season.learn(t, y, s_off)
        if alarm or m.cnt_level or m.cnt_drift or m.cnt_spread or m.cnt_flat:
            self._adapt(m, rl, rd, rv, rf)

        # -- sampling interval (the seasonal base's rate follows it)
        if t > m.last_t:
            step = t - m.last_t
            m.dt = step if m.dt == 0.0 else m.dt + 0.01 * (step - m.dt)
            if season is not None and n % 256 == 0:
                season.set_interval(m.dt)
        if not t < m.last_t:
            m.last_t = t

        if not scored:
            return 0.0
        score = score_of_ratio(best)
        if score < 0.01:
            kind = NONE
        elif ((kind is LEVEL_SHIFT or kind is DRIFT) and season is not None and season.in_use()
              and abs(y - season.base) <= season.amplitude()):
            kind = SEASONAL  # a level change inside the daily range is wrong only for the time of day
        self._expl = (kind, best, base.z, zl, zd, zv, zf, s_off, base.level, sigma)
        return score

    def _discount(self, m: _Model, d: float, zt: float, signed: float, sigma: float, n: int) -> tuple[float, bool]:
        """The spike z of an outlier, reduced when spikes of its sign and size recur (the chance
        of one this large is the noise tail plus the recurring kind's rate) and when the value
        lands on a familiar level: then it is measured against that level, and is old news that
        must not move the level statistics (second value True)."""
        zs = zt
        p_spike = m.spikes.tail(signed, n)
        if p_spike > 0.0:
            zs = z_of_upper_tail(0.5 * (gauss_two_sided_tail(zt) + p_spike))
        dist = m.levels.familiar(d, self.config.spike_z * sigma) / sigma
        if dist < zs:
            return dist, True
        return zs, False

    def _new_level(self, m: _Model, d: float, cleaned: float, old_level: float, known: bool, sigma: float,
                   n: int) -> None:
        """The baseline jumped to a new level. It is accepted at once (the level statistics restart
        on it) when its onset has alarmed or was old news (``known``), or it lands on a familiar
        level; otherwise the level statistics go on measuring it until it is accepted or gone."""
        cfg = self.config
        tol = cfg.huber_c * sigma
        accept = known or n - m.last_alarm < cfg.persist or m.levels.familiar(d, tol) < math.inf
        m.levels.jumped(old_level, d, tol)
        delta = m.level.jump(cleaned, accept)
        m.drift.jump(cleaned, accept)
        m.run.accept()
        if accept:
            m.cnt_level = m.cnt_drift = 0.0
            if m.season is not None:
                m.season.shift(delta)

    def _adapt(self, m: _Model, rl: float, rd: float, rv: float, rf: float) -> None:
        """A statistic that keeps alarming (``adapt_samples``, counted leakily) accepts the new
        regime: the score is an onset signal, not a state."""
        adapt = self.config.adapt_samples
        m.cnt_level = _count(m.cnt_level, rl)
        m.cnt_drift = _count(m.cnt_drift, rd)
        m.cnt_spread = _count(m.cnt_spread, rv)
        m.cnt_flat = _count(m.cnt_flat, rf)
        if m.cnt_level >= adapt:
            m.run.accept()
            delta = m.level.accept()
            m.drift.accept()
            if m.season is not None:
                m.season.shift(delta)
            m.cnt_level = m.cnt_drift = 0.0
        if m.cnt_drift >= adapt:
            delta = m.drift.accept()
            if m.season is not None:
                m.season.shift(delta)
            m.cnt_drift = 0.0
        if m.cnt_spread >= adapt:
            m.base.rescale(m.spread.accept())
            m.cnt_spread = 0.0
        if m.cnt_flat >= adapt:
            m.flat.accept()
            m.cnt_flat = 0.0
