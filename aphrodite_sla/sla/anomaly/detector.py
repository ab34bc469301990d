"""``AnomalyDetector``: the streaming detector, composed of the parts of this package.

Per sample, O(1) (amortised: the seasonal profiles fold a cycle in O(bins) once per cycle):

1. ``transform``: the value into model space (log for skewed positive metrics; chosen from the
   warm-up and re-checked once, after ``recheck`` samples, from how the noise scales).
2. ``seasonal``: subtract the expected time-of-day / day-of-week offset.
3. ``baseline``: the residual against the robust one-step level, in units of the floored scale,
   tail-matched, then discounted by ``memory`` when outliers of its sign and size recur or it
   lands on a familiar level: the **spike** statistic; a run of spikes of one sign is scored as a
   whole against the metric's own rate of such runs (``memory.BurstEvidence``).
4. ``statistics``: **level shift** (fast level vs a delayed slow reference, and the leaky sum of
   residuals), **drift** (slow vs very slow level, stepped on each pair of samples),
   **variance change** (short vs long residual size), **spike density** (outliers coming faster
   than the series' own rate of them), **flatline** (a stuck value); ``season_fit``: is the
   daily pattern still in the level (**seasonal**: a pattern gone flat or moved in time).
5. ``scoring``: each statistic as a multiple of its own alert threshold; the strongest (or the
   combined evidence of several, when they agree, or the **persistent evidence** of the fast
   ones, when it alarms) sets the score ``1 - 2 ** -(ratio ** 2)``: 0.5 at the threshold.
6. When the weekly profile switches on, the deseasonalised series changes under what was
   learned in it: the level statistics' spreads relearn, and the remembered levels are
   forgotten (to a daily-only model they were weekends, and a jump inside a weekday to a
   weekend's level would count as familiar, so accepted without an alarm).
7. Learning that an alarm must not teach (references, spreads, scale, tail, profiles) waits while
   the detector alarms; a statistic that keeps alarming for ``adapt_samples`` accepts the new
   regime, and a jump to a new level that has already alarmed (or is a familiar kind) is accepted
   at once, so a persistent change alarms at its onset and the score then decays.

The parts hold their state and operations; ``AnomalyDetector._step`` runs one sample through
them. The small parts' per-sample lines are written out there rather than called (most of the cost
of a scalar Python detector is calls and attribute look-ups, not arithmetic); the level statistics,
the persistent evidence and the seasonal profiles are called.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aphrodite_sla.sla.anomaly.baseline import ABS_FLOOR, UNDONE, RobustBaseline
from aphrodite_sla.sla.anomaly.config import (
    DRIFT,
    FLATLINE,
    LEVEL_SHIFT,
    NONE,
    SEASONAL,
    SPIKE,
    SPIKE_DENSITY,
    VARIANCE_CHANGE,
    WARMUP,
    AnomalyDetectorConfig,
    AnomalyExplanation,
)
from aphrodite_sla.sla.anomaly.memory import BurstEvidence, LevelMemory, OutlierEvents
from aphrodite_sla.sla.anomaly.scoring import MAD_TO_SD, gauss_two_sided_tail, z_of_upper_tail
from aphrodite_sla.sla.anomaly.season_fit import SeasonFit
from aphrodite_sla.sla.anomaly.seasonal import WEEKLY_ON, Seasonality
from aphrodite_sla.sla.anomaly.statistics import (
    CAP,
    MIN_LONG,
    ExceedanceRate,
    Flatline,
    LevelChange,
    PersistentEvidence,
    ResidualRun,
    SpreadChange,
)
from aphrodite_sla.sla.anomaly.transform import CLAMP, Transform, choose_transform, recheck_transform

__all__ = ["AnomalyDetector"]

_LEAK = 0.25  # an alarm count decays by this per quiet sample (a flickering alarm still adds up)
_LN2 = math.log(2.0)
_LOG_CLAMP = math.log(CLAMP)
_NAN = math.nan
_NOTHING_YET = (WARMUP, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, _NAN, _NAN)  # ``_expl`` before a score


def _count(c: float, ratio: float) -> float:
    """Leaky count of alarming samples: +1 at or above the threshold, else decays by _LEAK."""
    if ratio >= 1.0:
        return c + 1.0
    return c - _LEAK if c > _LEAK else 0.0


class _Model:
    """Everything learned after warm-up (rebuilt by ``reset``)."""

    __slots__ = (
        "adapting",
        "alarm",
        "base",
        "burst",
        "cnt_density",
        "cnt_drift",
        "cnt_fit",
        "cnt_flat",
        "cnt_level",
        "cnt_spread",
        "density",
        "drift",
        "drift_in",
        "drift_per_level",
        "drift_z",
        "dt",
        "evidence",
        "excursion",
        "fit",
        "flat",
        "last_alarm",
        "last_t",
        "level",
        "levels",
        "log_off",
        "n",
        "run",
        "season",
        "spikes",
        "spread",
        "transform",
    )

    def __init__(self, cfg: AnomalyDetectorConfig, transform: Transform) -> None:
        self.transform = transform
        self.log_off = transform.offset if transform.log_space else math.nan  # NaN: linear
        self.season: Seasonality | None = None
        self.base = RobustBaseline(cfg.fast_alpha, cfg.scale_alpha, cfg.huber_c, cfg.persist, cfg.relative_floor,
                                   cfg.tail_quantile, transform)
        self.level = LevelChange(cfg.level_alpha, cfg.level_ref_alpha, cfg.norm_alpha, cfg.level_delay)
        self.run = ResidualRun(cfg.run_decay, cfg.huber_c, cfg.norm_alpha)
        self.drift = LevelChange(cfg.drift_alpha, cfg.drift_ref_alpha, cfg.norm_alpha, every=2)
        self.drift_in = 0.0  # the even sample's cleaned value, for the drift statistic's pair mean
        self.drift_z = 0.0  # the drift statistic's z, held between its updates
        # the step floor in the drift statistic's own white-noise units: one step is as ordinary to both
        self.drift_per_level = self.level.k_white / self.drift.k_white
        self.spread = SpreadChange(cfg.spread_alpha, cfg.spread_ref_alpha, cfg.norm_alpha, cfg.persist - 1)
        self.flat = Flatline(cfg.flatline_min_run)
        self.density = ExceedanceRate(cfg.density_alpha, cfg.density_recent_alpha, cfg.density_gain,
                                      cfg.density_min_rate, gauss_two_sided_tail(cfg.density_z))
        self.spikes = OutlierEvents(cfg.event_memory, cfg.min_events)
        self.burst = BurstEvidence(cfg.burst_prior, cfg.burst_prior_weight, cfg.burst_alpha, cfg.huber_c, cfg.event_z)
        self.levels = LevelMemory(cfg.level_slots, cfg.level_memory, cfg.familiar_dwell, cfg.min_events, cfg.familiar_held)
        self.evidence = PersistentEvidence(cfg.evidence_floor, cfg.evidence_decay, cfg.evidence_h)
        self.dt = 0.0  # typical sampling interval (EW of positive steps), seconds
        self.last_t = math.nan  # time of the last interval measurement
        self.n = 0  # samples through the model (the warm-up replay included)
        self.alarm = False  # the last sample alarmed, or repeated a stuck value (learning from it waits)
        self.last_alarm = -(2**62)  # sample number of the last alarm
        self.cnt_level = 0.0  # leaky counts of alarming samples, per statistic
        self.cnt_drift = 0.0
        self.cnt_spread = 0.0
        self.cnt_flat = 0.0
        self.cnt_density = 0.0
        self.cnt_fit = 0.0
        self.fit = SeasonFit(cfg.season_fit_alpha, cfg.norm_alpha, cfg.season_fit_min_samples,
                             cfg.season_fit_min_cycles)
        self.excursion = 0.0  # spike z of a visit to a familiar level in progress (0: none)
        self.adapting = False  # some count is above 0 (``_adapt`` runs on every sample until none is)


class AnomalyDetector:
    """Streaming anomaly score in [0, 1] for one metric (see the package docstring).

    ``AnomalyDetector(config)`` or ``AnomalyDetector(**fields)`` (fields of
    ``AnomalyDetectorConfig``). ``update(value, timestamp)`` never raises: a non-numeric or
    non-finite value or timestamp leaves the state untouched and returns the previous score.
    Deterministic: the same inputs give the same scores. Not thread-safe: one detector per metric,
    fed by one thread.
    """

    __slots__ = (
        "_early",
        "_expl",
        "_k",
        "_last_score",
        "_m",
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
                   c.warmup + c.level_min_samples, c.warmup + c.drift_min_samples, c.warmup + c.spread_min_samples,
                   c.relative_floor, c.density_z, 1.0 / c.density_h, c.evidence_floor, c.step_floor, 1.0 / c.season_fit_z)
        self.reset()

    # -- public ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (a new deployment, a different metric)."""
        self._m: _Model | None = None
        self._warm_x: list[float] = []
        self._warm_t: list[float] = []
        self._early: tuple[list[float], list[float]] | None = None  # samples kept for the transform re-check
        self._last_score = 0.0
        # the last valid sample's: the strongest statistic, its ratio, the spike, level, drift,
        # variance and flatline z, the seasonal offset, the scale, the value in model space, the
        # persistent evidence, and the value and timestamp (during warm-up, only those two)
        self._expl: tuple[Any, ...] = _NOTHING_YET

    @property
    def n_samples(self) -> int:
        """Valid samples seen since construction or the last ``reset`` (the model has stepped
        through every one of them, the warm-up included)."""
        return len(self._warm_x) if self._m is None else self._m.n

    @property
    def transform(self) -> Transform | None:
        """The value transform the warm-up chose (None before): ``transform.forward(value)`` is a
        value in the model's space, where ``last_explanation.scale`` and ``seasonal_offset`` live."""
        return None if self._m is None else self._m.transform

    @property
    def last_explanation(self) -> AnomalyExplanation:
        """Why the last valid sample got its score (built on demand; ``update`` stays cheap)."""
        m = self._m
        kind, ratio, zs, zl, zd, zv, zf, s_off, sigma, y, evidence, rq, x, t = self._expl
        if m is None:
            return AnomalyExplanation(kind=WARMUP if self._warm_x else NONE, value=x, timestamp=t)
        level = m.base.level
        season = m.season
        by_fit = kind is SEASONAL  # set by the season fit (a level change is named seasonal below)
        if kind is WARMUP:
            pass  # the model has just been built: nothing scored yet
        elif self._last_score < 0.01:
            kind = NONE
        elif (kind is LEVEL_SHIFT or kind is DRIFT) and season is not None and season.in_use() and \
                abs(y - season.base) <= season.amplitude():
            kind = SEASONAL  # a level change inside the daily range is wrong only for the time of day
        # the season fit's z, signed as the value moves: towards the daily mean, against the offset
        zq = rq * self.config.season_fit_z * (-1.0 if s_off > 0.0 else 1.0)
        z = {SPIKE: zs, LEVEL_SHIFT: zl, DRIFT: zd, VARIANCE_CHANGE: zv, FLATLINE: zf,
             SEASONAL: zq if by_fit else (zl if abs(zl) >= abs(zd) else zd)}.get(kind, 0.0)
        return AnomalyExplanation(
            score=self._last_score, kind=kind, z=z, ratio=ratio, value=x, timestamp=t,
            expected=m.transform.inverse(level + s_off), scale=sigma, seasonal_offset=s_off,
            log_space=m.transform.log_space, spike_z=zs, level_z=zl, drift_z=zd, variance_z=zv, flatline_z=zf,
            density_llr=m.density.cusum, evidence=evidence, season_fit_z=zq,
        )

    def update(self, value: float, timestamp: float) -> float:
        """Score one sample: 0 during warm-up, the previous score for invalid input."""
        try:
            x = float(value)
            t = float(timestamp)
        except (TypeError, ValueError, OverflowError):
            return self._last_score
        if x - x != 0.0 or t - t != 0.0:  # NaN or infinite (cheaper than two isfinite calls)
            return self._last_score
        m = self._m
        if m is None:
            self._warm_x.append(x)
            self._warm_t.append(t)
            self._expl = _NOTHING_YET[:-2] + (x, t)
            if len(self._warm_x) >= self.config.warmup:
                self._finish_warmup()
            return 0.0
        if self._early is not None:
            m = self._keep_early(x, t)
        try:
            score = self._step(m, x, t, True)
        except (ArithmeticError, ValueError, TypeError):  # pragma: no cover - defensive only: every
            return self._last_score  # operation is guarded, none is known to raise
        self._last_score = score
        return score

    # -- internals ------------------------------------------------------------------------

    def _keep_early(self, x: float, t: float) -> _Model:
        """Keep the first ``recheck`` samples; then re-choose the transform from all of them and,
        if it changes, rebuild the model in the new space from them (a one-off O(recheck) cost).
        Returns the model to score ``x`` with."""
        assert self._early is not None and self._m is not None
        xs, ts = self._early
        xs.append(x)
        ts.append(t)
        if len(xs) < self.config.recheck:
            return self._m
        self._early = None
        log_space = self._m.transform.log_space
        if recheck_transform(np.asarray(xs, dtype=np.float64), log_space) != log_space:
            self._warm_x = xs[:-1]  # ``x`` itself is scored by the caller
            self._warm_t = ts[:-1]
            self._finish_warmup(not log_space)
        assert self._m is not None
        return self._m

    def _finish_warmup(self, forced_log: bool | None = None) -> None:
        """Pick the transform (``forced_log`` when rebuilding after the re-check), seed every part
        robustly from the warm-up, then replay it so that the slower statistics learn from it too
        (a one-off O(warmup) cost)."""
        cfg = self.config
        ts = self._warm_t
        if forced_log is None and cfg.log_transform is None and cfg.recheck > len(self._warm_x):
            self._early = (list(self._warm_x), list(ts))
        tr = choose_transform(np.asarray(self._warm_x, dtype=np.float64),
                              cfg.log_transform if forced_log is None else forced_log)
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
        m.drift_in = med
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
        """One sample through the model; returns its score (0 when not ``scored``). The parts'
        per-sample arithmetic, in order (see each part's module for what and why)."""
        (huber_c, event_z, spike_z, persist, inv_spike, inv_level, inv_run, inv_drift, inv_spread, inv_flat,
         inv_comb, level_from, drift_from, spread_from, rel_floor, density_z, inv_density, ev_floor,
         step_floor, inv_fit) = self._k
        n = m.n + 1
        m.n = n
        learn = not m.alarm  # the parts learn from the previous sample unless it alarmed
        # the slow learners (the statistics' spreads, the long |z| mean, the repeat rate: memories
        # of hundreds of samples of smooth inputs) learn from every other sample at twice the rate
        odd = n & 1

        # -- transform (transform.Transform.forward) and season
        off = m.log_off
        if off == off:
            y = math.log((x if x > 0.0 else 0.0) + off) if x < CLAMP else _LOG_CLAMP
        else:
            y = CLAMP if x > CLAMP else (-CLAMP if x < -CLAMP else x)
        season = m.season
        s_off = 0.0
        if season is not None:
            s_off = season.offset(t)
        d = y - s_off  # the deseasonalised value

        # -- baseline (baseline.RobustBaseline): learn scale and tail from the previous residual,
        # then this residual in floored scales, tail-matched
        b = m.base
        c = huber_c
        sigma = b.sigma
        if learn and sigma > 0.0:
            e = b.e
            ae = e if e >= 0.0 else -e
            lim = c * sigma
            b.mad += b.scale_alpha * ((ae if ae < lim else lim) - b.mad)
            if b.run <= 1:  # the tail is learned from isolated deviations: a run counts once
                z = b.z
                q = b.tail_q * (b.tail_up if (z if z >= 0.0 else -z) > b.tail_q else b.tail_down)
                b.tail_q = q if q > b.q_gauss else b.q_gauss
        level = b.level
        sigma = MAD_TO_SD * b.mad
        f = 0.5 * b.jump
        # a metric that stands still between steps of its resolution (no noise of its own: the
        # scale is at its step floor) moves by whole steps: one step is its ordinary change, not a
        # level shift, so the level statistics measure in at least ``step_floor`` steps
        # (a sparse count's 0 -> 1 -> 0 blips are steps that undo themselves: not a level that moved)
        still = f > sigma
        if still:
            sigma = f
        f = rel_floor if b.log_space else rel_floor * (level if level >= 0.0 else -level)
        if f > sigma:
            sigma = f
        if sigma < ABS_FLOOR:
            sigma = ABS_FLOOR
        sig_level = sig_drift = sigma  # the scales the level and drift statistics measure in
        if still and b.undo < UNDONE:
            f = step_floor * b.jump
            if f > sigma:
                sig_level = f
            f *= m.drift_per_level  # (in the drift statistic's white-noise units: one step as ordinary)
            if f > sigma:
                sig_drift = f
        e = d - level
        z = e / sigma
        b.e = e
        b.z = z
        b.sigma = sigma
        az = z if z >= 0.0 else -z
        q = b.tail_q
        qg = b.q_gauss
        zt = zs = az * qg / q if q > qg else az
        dy = y - b.last_y  # the metric's typical step (its resolution), before deseasonalising
        if still and dy:
            b.stepped(dy, n)
        if dy < 0.0:
            dy = -dy
        if dy > 0.0:
            jmp = b.jump
            nj = b.n_jumps
            if nj < 20:  # a running mean of the first steps, then an EW mean
                nj += 1
                b.n_jumps = nj
                if nj > 10 and dy > 10.0 * jmp:
                    dy = 10.0 * jmp
                b.jump = jmp + (dy - jmp) / nj
            else:
                b.jump = jmp + 0.05 * ((dy if dy < 10.0 * jmp else 10.0 * jmp) - jmp)
        b.last_y = y

        # -- spike: discounted when it is old news (memory); the level moves (a Huber step, or a
        # jump to a new level after ``persist`` same-sign outliers)
        signed = zt if z >= 0.0 else -zt
        familiar = False  # the outlier lands on a familiar level: a regime switch
        recentred = False
        old_level = level
        if z > c or z < -c:
            zs, familiar, zx = self._discount(m, d, zt, signed, sigma, n)
            if familiar and zx > m.excursion:  # on a familiar level: a switch, or a spike if it returns
                m.excursion = zx
            sign = 1 if z > 0.0 else -1
            if sign == b.run_sign:  # the run goes on: scored as a whole (memory.BurstEvidence)
                b.run += 1
                if learn:
                    m.burst.learn(True)
                if not familiar:
                    f = m.burst.extend(zs)
                    if f > zs:
                        zs = f
            else:
                if b.run and learn:
                    m.burst.learn(False)
                b.run = 1
                b.run_sign = sign
                m.burst.start(zs)
            if b.run >= persist:  # a new level: follow it rather than clip it
                b.level = cleaned = d
                recentred = True
                m.excursion = 0.0
                b.run = 0
                b.run_sign = 0
            else:
                ec = 0.0 if familiar else sign * c * sigma
                cleaned = level + ec
                b.level = level + b.alpha * ec
        else:
            if m.excursion:  # back from a brief visit to a familiar level: it was a spike after all
                if m.excursion > zs:
                    zs = m.excursion
                m.excursion = 0.0
            if b.run:
                if learn:
                    m.burst.learn(False)
                b.run = 0
                b.run_sign = 0
            cleaned = d
            b.level = level + b.alpha * e
        spikes = m.spikes
        if zt >= event_z or recentred or spikes.run_sign:
            spikes.observe(signed, event_z, n, recentred)
        # -- outlier density (statistics.ExceedanceRate): the first sample of each outlier run,
        # undiscounted, unless it lands on a familiar level (a regime switch)
        dn = m.density
        hit = az >= density_z and b.run == 1 and not familiar
        rx = dn.cusum
        if hit and (not rx or (z > 0.0) is (dn.sign > 0)):  # an outlier of the episode's sign
            dn.hit(n)
            if not rx:
                dn.start(z > 0.0)
            rx += dn.step_hit
            dn.cusum = rx
            rx *= inv_density
        elif rx:  # (at 0 a miss leaves it at 0: its step is <= 0)
            rx += dn.step_miss
            if rx > 0.0:
                dn.cusum = rx
                rx *= inv_density
            else:
                dn.cusum = rx = 0.0
        if recentred:
            self._new_level(m, d, cleaned, old_level, zs >= spike_z or familiar, sigma, n)

        # -- level shift and drift (statistics.LevelChange): a fast level against a delayed
        # reference, and a slow level against a slower one
        zl = m.level.step(cleaned, learn, odd, sig_level)
        if odd:  # a 50-sample level: stepped on the mean of each pair of samples, held in between
            zd = m.drift_z = m.drift.step(0.5 * (cleaned + m.drift_in), learn, 1, sig_drift)
        else:
            m.drift_in = cleaned
            zd = m.drift_z
        # -- season fit (season_fit.SeasonFit): is the applied daily pattern still in the level?
        # A slow statistic: updated on odd samples at twice the rate, its ratio held in between
        rq = 0.0
        if s_off:
            sf = m.fit
            if odd:
                lv = m.level
                f = lv.floor * sf.floor_k
                if learn:
                    sf.spread.learn(sf.t, f)
                a = sf.alpha
                sf.sr += a * (s_off * (lv.fast - lv.ref) - sf.sr)
                sf.ss += a * (s_off * s_off - sf.ss)
                v = sf.sr / math.sqrt(sf.ss)
                sf.t = v
                sp = sf.spread
                if v < 0.0 and sp.n >= sf.min_learned and season is not None and season.daily.cycles >= sf.min_cycles:
                    s = sp.sd
                    rq = -v / (s if s > f else f) * inv_fit
                sf.ratio = rq
            else:
                rq = sf.ratio

        # -- residual run (statistics.ResidualRun)
        rn = m.run
        sp = rn.spread
        floor = rn.k_white
        g = rn.g
        if learn and odd:
            sp.learn(g, floor)
        v = 0.0 if recentred or familiar else signed
        g = g * rn.decay + (c if v > c else (-c if v < -c else v))
        rn.g = g
        s = sp.sd
        zr = g / (s if s > floor else floor)

        # -- variance change (statistics.SpreadChange): short vs long mean |z|, delayed
        sc = m.spread
        if recentred:
            sc.recentred(persist)
        v = zs if zs < CAP else CAP
        queue = sc.ring
        if queue:  # the oldest out, this one in
            fed = queue[0]
            queue.append(v)
        else:
            fed = v
        short = sc.short + sc.a_short * (fed - sc.short)
        sc.short = short
        # against at least half the Gaussian mean |z|: where the scale sits at its floor (a
        # near-constant metric) |z| is ~0, and 0.001 -> 0.01 is no change of spread
        lo = sc.long if sc.long > MIN_LONG else MIN_LONG
        if short > lo:  # only increases are scored (or learned)
            log_ratio = math.log(short / lo)
            s = sc.spread.sd
            f = sc.k_white
            zv = log_ratio / (s if s > f else f)
        else:
            log_ratio = zv = 0.0

        # -- flatline (statistics.Flatline)
        fl = m.flat
        zf = rf = 0.0
        if x == fl.last:
            k = fl.run + 1
            fl.run = k
            if k >= fl.min_run and x not in (fl.stuck_at, fl.hi, fl.lo):
                p = fl.p_repeat
                f = 1.0 / (fl.n + 2)
                if p < f:
                    p = f
                if p < 0.01:
                    p = 0.01
                if p < 1.0:
                    zf = z_of_upper_tail(math.exp(k * math.log(p)))
                    rf = zf * inv_flat
        else:
            if fl.run:  # a run ends (a stuck value is accepted only during one)
                fl.run = 0
                fl.stuck_at = _NAN
            if x > fl.hi:
                fl.hi = x
            if x < fl.lo:
                fl.lo = x
            fl.last = x

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
        else:
            rx = 0.0
        if rl > best:
            best, kind = rl, LEVEL_SHIFT
        if rv > best:
            best, kind = rv, VARIANCE_CHANGE
        v = (rs * rs + rl * rl + rd * rd + rv * rv + rq * rq) * inv_comb * inv_comb
        if v > best * best:
            best = math.sqrt(v)
        # -- persistent evidence (statistics.PersistentEvidence) of these: the kind is the
        # statistic whose sub-threshold ratio has added up. Not of the drift statistic (a
        # 50-sample level: its values are correlated for that long, and a wandering metric holds it
        # near its threshold for as long, as one piece of evidence), nor of the outlier-rate and
        # flatline statistics (they add up evidence already)
        ev = m.evidence
        re = 0.0
        if best > ev_floor or ev.evidence:
            re = ev.step(best)
            if re >= 1.0 and re > best:  # below its alarm level it is no news: the score stays the statistics'
                best = re
        if rd > best:
            best, kind = rd, DRIFT
        if rq > best:
            best, kind = rq, SEASONAL
        if rf > best:
            best, kind = rf, FLATLINE
        if rx > best:
            best, kind = rx, SPIKE_DENSITY
        alarm = best >= 1.0
        # a value stuck since its flatline alarm teaches nothing about the metric's noise, level or
        # rates: it is skipped like an alarming sample (else the scale shrinks to the floor during a
        # long freeze, and the noise's return alarms as spikes and a variance change)
        stuck = fl.run > 0 and x == fl.stuck_at
        m.alarm = alarm or stuck
        if alarm:
            m.last_alarm = n
            m.evidence.alarmed()
        elif not stuck:
            # -- what an ordinary sample teaches these statistics (an alarming one must not: the
            # next sample's own parts learn from this one unless it alarmed, with the same arithmetic)
            if hit:  # the outlier base rate (statistics.ExceedanceRate), in blocks of 16 samples
                dn.block_hits += 1
                if z > 0.0:
                    dn.block_up += 1
            if not n & 15:
                dn.learn_block()
            if not odd:  # the slow learners, at twice the rate on every other sample (the next is odd)
                k = sc.n + 1  # the long mean |z| and the log ratio's spread (statistics.SpreadChange)
                sc.n = k
                a = 2.0 * sc.a_long
                sc.long += (1.0 / k if k * a < 1.0 else a) * (fed - sc.long)
                sc.spread.learn(log_ratio, sc.k_white)  # >= 0: only increases are scored
                if n > 1:  # the repeat rate (statistics.Flatline): did this sample repeat the last?
                    k = fl.n + 1
                    fl.n = k
                    fl.p_repeat += (1.0 / k if k < 250 else 0.004) * ((1.0 if fl.run else 0.0) - fl.p_repeat)
            if not n & 63:
                m.levels.age()
            if odd:  # dwell at the current remembered level, or the stay at an unremembered one
                # (memory.LevelMemory): on every other sample, counting two
                lm = m.levels
                k = lm.current
                f = c * sigma
                if k >= 0:
                    v = b.level - lm.centre[k]
                    if -f <= v <= f:
                        lm.weight[k] += 2.0
                    else:
                        lm.current = -1
                        lm.here = b.level
                        lm.stay = 0.0
                else:
                    v = b.level - lm.here
                    if -f <= v <= f:
                        f = lm.stay + 2.0
                        lm.stay = f
                        lm.here += 2.0 * v / f
                    else:
                        lm.here = b.level
                        lm.stay = 0.0
            if season is not None:
                k = season.learn(t, y, s_off)
                if k:
                    self._season_switched(m, k)
        if alarm or m.adapting:
            self._adapt(m, rl, rd, rv, rf, rx, rq)

        if not n & 255:  # every 256 samples: the sampling interval (the seasonal base's rate follows it)
            self._interval(m, t, season)

        if not scored:
            return 0.0
        # what ``last_explanation`` needs (it works out the rest only when asked)
        self._expl = (kind, best, z, zl, zd, zv, zf, s_off, sigma, y, re, rq, x, t)
        return 1.0 if best > 8.0 else 1.0 - math.exp(-_LN2 * best * best)  # scoring.score_of_ratio

    @staticmethod
    def _interval(m: _Model, t: float, season: Seasonality | None) -> None:
        """The typical sampling interval: the mean step over the last 256 samples (when time moved
        forward over them), smoothed over a few such blocks."""
        if t > m.last_t:
            step = (t - m.last_t) / 256.0
            m.dt = step if m.dt == 0.0 else m.dt + 0.9 * (step - m.dt)
            if season is not None:
                season.set_interval(m.dt)
        m.last_t = t

    def _discount(self, m: _Model, d: float, zt: float, signed: float, sigma: float,
                  n: int) -> tuple[float, bool, float]:
        """The spike z of an outlier, reduced when spikes of its sign and size recur (the chance
        of one this large is the noise tail plus the recurring kind's rate) and when the value
        lands on a familiar level: then it is measured against that level, and is old news that
        must not move the level statistics (second value True). The third value is the spike z
        without the familiar level's discount: what the outlier scores if the visit to that
        level ends before it has lasted ``persist`` samples (a spike, not a regime switch)."""
        zs = zt
        p_spike = m.spikes.tail(signed, n)
        if p_spike > 0.0:
            zs = z_of_upper_tail(0.5 * (gauss_two_sided_tail(zt) + p_spike))
        dist = m.levels.familiar(d, self.config.spike_z * sigma) / sigma
        if dist < zs:
            return dist, True, zs
        return zs, False, zs

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

    def _season_switched(self, m: _Model, switched: int) -> None:
        """A seasonal profile has just been switched on (``seasonal.DAILY_ON`` / ``WEEKLY_ON``
        bits). At the weekly switch-on the deseasonalised space changes under what was learned
        in it: the remembered levels (weekends, to the daily-only model) are forgotten and the
        spreads relearn. Not at the daily one: forgetting then was measured to cost more than it
        gained (development half: cpu_regime -1.2, memory -0.8; regimes there are real levels
        that a weak daily profile hardly moves)."""
        if switched & WEEKLY_ON:
            m.levels.forget()
            self._relearn_spreads(m)

    def _relearn_spreads(self, m: _Model) -> None:
        """The weekly profile has just been switched on: the level statistics' spreads were
        learned on a series whose weekends were level shifts (5-20x their white-noise floor on
        weekly metrics, and their memory is ~500 samples: days at 10-minute samples), which would
        hide for days the changes the profile now makes visible. What they learned is kept as a
        prior worth ``relearn_updates`` updates; they relearn from the new series from here."""
        k = self.config.relearn_updates
        for sp in (m.level.spread, m.drift.spread, m.run.spread):
            if sp.n > k:
                sp.n = k

    def _adapt(self, m: _Model, rl: float, rd: float, rv: float, rf: float, rx: float, rq: float) -> None:
        """A statistic that keeps alarming (``adapt_samples``, counted leakily) accepts the new
        regime: the score is an onset signal, not a state."""
        adapt = self.config.adapt_samples
        m.cnt_level = _count(m.cnt_level, rl)
        m.cnt_drift = _count(m.cnt_drift, rd)
        m.cnt_spread = _count(m.cnt_spread, rv)
        m.cnt_flat = _count(m.cnt_flat, rf)
        m.cnt_density = _count(m.cnt_density, rx)
        m.cnt_fit = _count(m.cnt_fit, rq)
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
        if m.cnt_density >= adapt:
            m.density.accept(m.n)
            m.cnt_density = 0.0
        # the season fit accepts sooner, after ``persist`` alarming samples: a ~50-sample mean, it
        # has built up for dozens of samples when it crosses (10 more were measured to add only
        # alarming samples: development half raw-sample score 36.0 -> 31.7); the level deviation
        # that follows the missing pattern is then the new normal for the level statistic too
        if m.cnt_fit >= self.config.persist:
            m.fit.accept()
            m.run.accept()
            delta = m.level.accept()
            if m.season is not None:
                m.season.shift(delta)
            m.cnt_level = m.cnt_fit = 0.0
        m.adapting = bool(m.cnt_level or m.cnt_drift or m.cnt_spread or m.cnt_flat or m.cnt_density or m.cnt_fit)
