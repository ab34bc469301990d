"""The SLA manager: records raw samples, evaluates thresholds, reports sustained violations.

Recording (``record_measurement``/``record_batch``) only copies numbers into ring buffers. All the
work happens in ``evaluate``: on a background thread after ``start_monitoring()``, or synchronously
when a test or tool calls it. Per evaluation and per source series, one exact-quantile selection
pass serves every quantile SLA of that series and one vectorised pass every mean/rate SLA.

Sustained violations: each evaluation is an *evaluation point* per SLA (breached or not). A violation
is reported when the windowed statistic is beyond the bound and at least
``violation_threshold_percent`` of the points inside the SLA's window were beyond it (and there are
at least ``min_evaluation_points`` of them). Callbacks fire on a new violation, on an escalation of
its severity, on resolution, and when an anomaly score rises past ``anomaly_alert_score``; the
list of active violations is returned by every ``evaluate``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.sla.anomaly import AnomalyDetector
from aphrodite_sla.sla.defaults import default_thresholds
from aphrodite_sla.sla.regression import MAX_TEST_SAMPLES, RegressionResult, detect_regression
from aphrodite_sla.sla.threshold import Direction, SLAStatus, SLAThreshold, SLAViolation, Statistic, ViolationSeverity
from aphrodite_sla.store.metric_store import MetricStore
from aphrodite_sla.store.ring import gather as _gather
from aphrodite_sla.store.spec import MetricSpec

logger = logging.getLogger(__name__)

ViolationCallback = Callable[[SLAViolation], Any]
ResolutionCallback = Callable[[str, float], Any]
AnomalyCallback = Callable[[SLAStatus], Any]

# Per-SLA history of per-interval values kept as the z-score baseline (evaluation points).
ZSCORE_BASELINE_POINTS = 120
_QUANTILE_STATS = {st.quantile: st for st in Statistic if st.quantile is not None}
# An anomaly episode ends (and may warn again) once the score falls below this share of the level.
ANOMALY_REARM_FRACTION = 0.5
# Windows of the in-process burn rates (per replica; fleet-wide ones are Prometheus rules).
BURN_RATE_WINDOWS_S = (300.0, 600.0)
# The seed's anomaly rule: |z| above this against the baseline is anomalous.
ZSCORE_ANOMALY = 2.5


class _RollingBaseline:
    """The last ``size`` per-interval values with running sums: the seed's z-score in O(1)."""

    __slots__ = ("values", "total", "total_sq", "shift")

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0
        self.total_sq = 0.0
        self.shift: float | None = None  # sums are of (value - shift), for numerical stability

    def zscore(self, value: float) -> float | None:
        n = len(self.values)
        if n < 2 or self.shift is None:
            return None
        mean = self.total / n
        var = self.total_sq / n - mean * mean
        if var <= 1e-12 * (mean * mean + 1e-300):
            return 0.0
        return (value - self.shift - mean) / math.sqrt(var)

    def append(self, value: float) -> None:
        if self.shift is None:
            self.shift = value
        d = value - self.shift
        if len(self.values) == self.values.maxlen:
            old = self.values[0] - self.shift
            self.total -= old
            self.total_sq -= old * old
        self.values.append(value)
        self.total += d
        self.total_sq += d * d


@dataclass
class _SLAState:
    """Mutable evaluation state of one SLA (owned by the evaluator, guarded by ``_eval_lock``)."""

    threshold: SLAThreshold
    points: deque[tuple[float, bool]] = field(default_factory=deque)
    points_beyond: int = 0
    history: _RollingBaseline = field(default_factory=lambda: _RollingBaseline(ZSCORE_BASELINE_POINTS))
    detector: AnomalyDetector | None = None
    first_breach: float | None = None
    active: SLAViolation | None = None
    anomalous: bool = False
    status: SLAStatus | None = None
    regression: RegressionResult | None = None
    events_good: int = 0
    events_bad: int = 0
    events_history: deque[tuple[float, int, int]] = field(default_factory=deque)
    last_regression_check: float | None = None  # first check one interval after the first evaluation


@dataclass
class _Group:
    """SLAs that read the same series over the same window: evaluated by one kernel call."""

    source: str
    window: float
    states: list[_SLAState]
    statistics: list[Statistic]
    quantiles: list[float]
    qs: np.ndarray
    need_moments: bool
    out: np.ndarray
    counted_up_to: int = -1  # logical index below which samples were classified good/bad

    @classmethod
    def of(cls, source: str, window: float, states: list[_SLAState], stats: list[Statistic] | None = None) -> _Group:
        stats = [s.threshold.statistic for s in states] if stats is None else stats
        quantiles = sorted({q for q in (st.quantile for st in stats) if q is not None})
        need_moments = any(st.quantile is None for st in stats)
        out = np.empty(2 + 2 * (3 + len(quantiles)))
        return cls(source, window, states, stats, quantiles, np.array(quantiles, dtype=np.float64), need_moments, out)


@dataclass(frozen=True)
class EvaluatorStats:
    """How the evaluator itself is doing (exported later as metrics)."""

    evaluations: int
    last_duration_s: float
    max_duration_s: float
    callback_errors: int
    running: bool


class SLAManager:
    """Seed API: ``record_measurement``, ``add_threshold``, ``register_violation_callback``,
    ``start_monitoring``/``stop_monitoring``; plus ``evaluate(now)`` for tests and tools."""

    def __init__(
        self,
        thresholds: Iterable[SLAThreshold] = (),
        *,
        clock: Clock = system_clock,
        evaluation_interval_s: float = 5.0,
        anomaly_detection: bool = True,
        anomaly_alert_score: float = 0.5,
        regression_interval_s: float = 60.0,
        regression_min_effect_percent: float = 20.0,
        regression_alpha: float = 0.01,
        store: MetricStore | None = None,
    ) -> None:
        if not (isinstance(evaluation_interval_s, (int, float)) and math.isfinite(evaluation_interval_s) and evaluation_interval_s > 0):
            raise ValueError(f"SLAManager.evaluation_interval_s: must be a finite number > 0, got {evaluation_interval_s!r}")
        self.clock = clock
        self.store = store if store is not None else MetricStore(clock)
        self.evaluation_interval_s = float(evaluation_interval_s)
        self.anomaly_detection = anomaly_detection
        self.anomaly_alert_score = float(anomaly_alert_score)
        self.regression_interval_s = float(regression_interval_s)
        self.regression_min_effect_percent = float(regression_min_effect_percent)
        self.regression_alpha = float(regression_alpha)

        self._states: dict[str, _SLAState] = {}
        self._route: dict[str, str] = {}  # SLA name or series name -> recorded series
        self._baselines: dict[tuple[str, str], np.ndarray] = {}
        self._plan: list[_Group] | None = None
        # Exact quantiles computed at each evaluation for exporters (so a scrape only reads them).
        self._watched_specs: dict[tuple[str, float], tuple[float, ...]] = {}
        self._watched: dict[tuple[str, float], tuple[float, int, dict[float, float]]] = {}
        self._scratch = np.empty(0)
        self._config_lock = threading.Lock()
        self._eval_lock = threading.Lock()
        self._violation_callbacks: list[ViolationCallback] = []
        self._resolution_callbacks: list[ResolutionCallback] = []
        self._anomaly_callbacks: list[AnomalyCallback] = []
        self._pre_evaluation_hooks: list[Callable[[], Any]] = []

        self._worker = PeriodicThread(
            "aphrodite-sla-evaluator", self.evaluate, self.evaluation_interval_s, setup=self._warm_up
        )
        self._evaluations = 0
        self._last_duration = 0.0
        self._max_duration = 0.0
        self._callback_errors = 0
        # Monotonic counts for exporters: violations by (SLA, severity), breached evaluation points.
        self.violation_counts: dict[tuple[str, str], int] = {}
        self.breach_counts: dict[str, int] = {}
        for t in thresholds:
            self.add_threshold(t)

    # -- configuration ---------------------------------------------------------------------
    def add_threshold(self, threshold: SLAThreshold) -> None:
        """Add or replace (by ``metric_name``) an SLA; its source series is registered with a ring
        big enough for two windows (the window and the regression baseline before it)."""
        if not isinstance(threshold, SLAThreshold):
            raise TypeError(f"add_threshold: expected SLAThreshold, got {type(threshold).__name__}")
        self.store.register(
            MetricSpec(threshold.source, 2 * threshold.window_seconds, threshold.sample_rate_hz, unit=threshold.unit)
        )
        detector = AnomalyDetector() if self.anomaly_detection else None
        with self._config_lock, self._eval_lock:
            self._states[threshold.metric_name] = _SLAState(threshold, detector=detector)
            self._rebuild_routes()

    def remove_threshold(self, metric_name: str) -> bool:
        """Remove an SLA; its recorded samples stay (another SLA or a later one may read them)."""
        with self._config_lock, self._eval_lock:
            removed = self._states.pop(metric_name, None) is not None
            self._rebuild_routes()
        return removed

    def register_metric(
        self, name: str, window_seconds: float, sample_rate_hz: float = 10.0, *, allow_negative: bool = False,
        max_value: float = math.inf, unit: str = "",
    ) -> None:
        """Record a series no SLA reads yet (for regression checks, RCA or dashboards)."""
        self.store.register(MetricSpec(name, window_seconds, sample_rate_hz, allow_negative, max_value, unit))
        with self._config_lock:
            self._rebuild_routes()

    def _rebuild_routes(self) -> None:
        route = {name: name for name in self.store.names()}
        for name, state in self._states.items():
            route.setdefault(name, state.threshold.source)
        self._route = route
        self._plan = None

    @property
    def thresholds(self) -> dict[str, SLAThreshold]:
        return {name: s.threshold for name, s in self._states.items()}

    def register_violation_callback(self, callback: ViolationCallback) -> None:
        """``callback(violation)`` on a new violation and on each severity escalation. Runs on the
        evaluator thread: keep it short or hand off (exceptions are logged and counted)."""
        self._violation_callbacks.append(callback)

    def register_resolution_callback(self, callback: ResolutionCallback) -> None:
        """``callback(metric_name, resolved_at)`` when an active violation ends."""
        self._resolution_callbacks.append(callback)

    def register_anomaly_callback(self, callback: AnomalyCallback) -> None:
        """``callback(status)`` when an SLA's anomaly score rises past ``anomaly_alert_score``: an
        early warning, often before the sustained violation."""
        self._anomaly_callbacks.append(callback)

    def watch_quantiles(self, metric: str, quantiles: tuple[float, ...], window_seconds: float) -> None:
        """Compute these exact quantiles of ``metric`` over ``window_seconds`` at every evaluation
        (one selection pass), for exporters: ``watched_quantiles()`` then reads them for free."""
        unknown = [q for q in quantiles if q not in _QUANTILE_STATS]
        if unknown:
            raise ValueError(f"watch_quantiles: unsupported quantiles {unknown}; use {sorted(_QUANTILE_STATS)}")
        with self._config_lock, self._eval_lock:
            key = (self._route.get(metric, metric), float(window_seconds))
            self._watched_specs[key] = tuple(sorted(set(self._watched_specs.get(key, ())) | set(quantiles)))
            self._plan = None

    def watched_quantiles(self) -> dict[str, tuple[float, int, dict[float, float]]]:
        """Per watched series: (evaluated_at, samples, {quantile: exact value}) from the last evaluation."""
        return {source: value for (source, _window), value in self._watched.items()}

    def register_pre_evaluation_hook(self, hook: Callable[[], Any]) -> None:
        """``hook()`` runs at the start of every evaluation, on the evaluator's thread: where staged
        samples (e.g. an engine StatLogger's) are flushed into the store."""
        self._pre_evaluation_hooks.append(hook)

    # -- recording (hot path) --------------------------------------------------------------
    def record_measurement(self, metric_name: str, value: Any, timestamp: float | None = None) -> bool:
        """Record one sample. An SLA name records into the series that SLA reads (so
        ``record_measurement("request_latency_p95", 180.0)`` records a request latency). Never
        raises: a refused sample is counted (``store.dropped()``) and False is returned."""
        return self.store.record(self._route.get(metric_name, metric_name), value, timestamp)

    def record_batch(self, metric_name: str, values: Any, timestamps: Any = None) -> int:
        """Record many samples of one series at once (the cheap path: one copy per array)."""
        return self.store.record_batch(self._route.get(metric_name, metric_name), values, timestamps)

    # -- evaluation ------------------------------------------------------------------------
    def _evaluation_plan(self) -> list[_Group]:
        plan = self._plan
        if plan is None:
            groups: dict[tuple[str, float], list[_SLAState]] = {}
            for state in self._states.values():
                if state.threshold.enabled:
                    groups.setdefault((state.threshold.source, state.threshold.window_seconds), []).append(state)
            # Watched quantiles ride along with the SLAs reading the same window (one selection
            # pass serves both); the statistics past the SLAs' own are the watched ones.
            plan = []
            for key in {**groups, **self._watched_specs}:
                states = groups.get(key, [])
                stats = [s.threshold.statistic for s in states]
                stats += [_QUANTILE_STATS[q] for q in self._watched_specs.get(key, ())]
                plan.append(_Group.of(key[0], key[1], states, stats))
            self._plan = plan
        return plan

    def evaluate(self, now: float | None = None) -> list[SLAViolation]:
        """Evaluate every enabled SLA at ``now`` (default: the clock) and return the violations
        active after this evaluation. Callbacks fire from here."""
        from aphrodite_sla.store import kernels  # numba loads here, never at package import

        started = time.perf_counter()
        for hook in list(self._pre_evaluation_hooks):
            try:
                hook()
            except Exception:
                self._callback_errors += 1
                logger.exception("aphrodite-sla: pre-evaluation hook %r failed", hook)
        events: list[tuple[str, Any]] = []
        with self._eval_lock:
            now = self.clock() if now is None else float(now)
            for group in self._evaluation_plan():
                # The anomaly detector and z-score read the statistic of the newest interval only:
                # the windowed statistic lags and is autocorrelated from tick to tick.
                values, fresh = self._window_values(
                    kernels, group, now - group.window, now - self.evaluation_interval_s, now
                )
                n_slas = len(group.states)
                if len(values) > n_slas:  # watched quantiles, kept for exporters
                    watched = zip(group.statistics[n_slas:], values[n_slas:])
                    self._watched[(group.source, group.window)] = (
                        now, values[-1][1], {st.quantile: v for st, (v, _) in watched}
                    )
                for state, (value, n), latest in zip(group.states, values, fresh):
                    self._update_state(state, value, n, latest, now, events)
                self._count_events(group, now)
            active = [s.active for s in self._states.values() if s.active is not None]
            self._regression_checks(now)
            self._evaluations += 1
            duration = time.perf_counter() - started
            self._last_duration = duration
            self._max_duration = max(self._max_duration, duration)
        self._dispatch(events)
        return active

    def _window_values(
        self, kernels: Any, group: _Group, t_start: float, t_fresh: float, t_end: float
    ) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        """Each statistic of ``group`` over the window (t_start, t_end] and over its newest part
        (t_fresh, t_end], with sample counts; one kernel call, a consistent read (retried if a
        writer lapped the window meanwhile)."""
        buf = self.store.buffer(group.source)
        if buf is None:
            empty = [(math.nan, 0)] * len(group.statistics)
            return empty, empty
        out = group.out
        for _attempt in range(3):
            snap = buf.snapshot()
            if self._scratch.size < snap.capacity:
                self._scratch = np.empty(snap.capacity)
            kernels.window_stats(
                snap.times, snap.values, snap.capacity, snap.first, snap.count, t_start, t_fresh, t_end,
                group.qs, group.need_moments, self._scratch, out,
            )
            if buf.is_intact(int(out[0])):
                break
        values = out.tolist()
        nq = len(group.quantiles)
        parts = []
        for base, seconds in ((2, t_end - t_start), (5 + nq, t_end - t_fresh)):
            n = int(values[base])
            by_q = dict(zip(group.quantiles, values[base + 3 : base + 3 + nq]))
            part: list[tuple[float, int]] = []
            for stat in group.statistics:
                q = stat.quantile
                if q is not None:
                    part.append((by_q[q], n))
                elif stat is Statistic.RATE:
                    part.append((values[base + 1] / seconds if seconds > 0 else math.nan, n))
                else:
                    part.append((values[base + 2], n))
            parts.append(part)
        return parts[0], parts[1]

    def _count_events(self, group: _Group, now: float) -> None:
        """Classify the samples recorded since the last evaluation as good or bad against each SLA
        with an objective: monotonic counters for burn rates here and in Prometheus."""
        buf = self.store.buffer(group.source)
        objective_states = [s for s in group.states if s.threshold.objective is not None]
        if buf is None or not objective_states:
            return
        hi = int(group.out[1])
        snap = buf.snapshot()
        lo = max(group.counted_up_to, snap.first) if group.counted_up_to >= 0 else int(group.out[0])
        group.counted_up_to = max(hi, group.counted_up_to)
        if hi > lo:
            new = _gather(snap.values, snap.capacity, lo, hi)
            for state in objective_states:
                th = state.threshold
                bad = int(np.count_nonzero(new > th.bound if th.direction is Direction.UPPER else new < th.bound))
                state.events_bad += bad
                state.events_good += new.size - bad
        horizon = now - BURN_RATE_WINDOWS_S[-1] - self.evaluation_interval_s
        for state in objective_states:
            history = state.events_history
            history.append((now, state.events_good, state.events_bad))
            while len(history) > 2 and history[1][0] <= horizon:
                history.popleft()

    def burn_rate(self, metric_name: str, window_s: float) -> float | None:
        """Error-budget burn rate of an SLA over the last ``window_s`` (up to the longest of
        BURN_RATE_WINDOWS_S): bad fraction / (1 - objective). None without an objective or events."""
        state = self._states.get(metric_name)
        if state is None or state.threshold.objective is None or not state.events_history:
            return None
        now, good, bad = state.events_history[-1]
        then = state.events_history[0]
        for point in state.events_history:
            if point[0] >= now - window_s:
                break
            then = point
        total = (good + bad) - (then[1] + then[2])
        if total <= 0:
            return None
        return ((bad - then[2]) / total) / (1.0 - state.threshold.objective)

    def event_counts(self) -> dict[str, tuple[int, int]]:
        """(good, bad) samples per SLA with an objective, since start."""
        return {n: (s.events_good, s.events_bad) for n, s in self._states.items() if s.threshold.objective is not None}

    def _update_state(
        self, state: _SLAState, value: float, n: int, latest: tuple[float, int], now: float, events: list[tuple[str, Any]]
    ) -> None:
        th = state.threshold
        window = th.window_seconds
        points = state.points
        while points and points[0][0] <= now - window:
            if points.popleft()[1]:
                state.points_beyond -= 1
        enough = n >= th.min_samples and math.isfinite(value)
        breached = False
        anomaly_score: float | None = None
        z: float | None = None
        if enough:
            breached = th.is_beyond(value)
            points.append((now, breached))
            state.points_beyond += breached
            if breached:
                self.breach_counts[th.metric_name] = self.breach_counts.get(th.metric_name, 0) + 1
            if breached and state.first_breach is None:
                state.first_breach = now
            elif not breached:
                state.first_breach = None
        latest_value, latest_n = latest
        if latest_n > 0 or th.statistic is Statistic.RATE:
            z = state.history.zscore(latest_value)
            state.history.append(latest_value)
            if state.detector is not None:
                anomaly_score = state.detector.update(latest_value, now)
        n_points = len(points)
        n_beyond = state.points_beyond
        ratio = n_beyond / n_points if n_points else 0.0
        compliance = 100.0 * (n_points - n_beyond) / n_points if n_points else None
        violated = (
            enough
            and breached
            and n_points >= th.min_evaluation_points
            and ratio * 100.0 >= th.violation_threshold_percent
        )
        severity: ViolationSeverity | None = None
        if violated:
            severity = th.severity(value)
            violation = SLAViolation(
                metric_name=th.metric_name, source_metric=th.source, statistic=th.statistic, direction=th.direction,
                observed_value=value, bound=th.bound, target_value=th.target_value, severity=severity,
                window_seconds=window, first_breach_time=state.first_breach if state.first_breach is not None else now,
                detected_at=now, sustained_ratio=ratio, evaluation_points=n_points, sample_count=n,
                anomaly_score=anomaly_score, zscore=z,
            )
            previous = state.active
            state.active = violation
            if previous is None or severity.rank > previous.severity.rank:
                key = (th.metric_name, severity.value)
                self.violation_counts[key] = self.violation_counts.get(key, 0) + 1
                events.append(("violation", violation))
        elif state.active is not None and (not breached or not enough):
            # Resolution needs the statistic back within bounds (or no data to judge): a breached
            # point with a sustained ratio briefly under the threshold keeps the violation open.
            state.active = None
            events.append(("resolved", (th.metric_name, now)))
        status = SLAStatus(
            metric_name=th.metric_name, statistic=th.statistic, value=value if math.isfinite(value) else None,
            bound=th.bound, breached=breached, violated=state.active is not None,
            severity=state.active.severity if state.active is not None else None, sample_count=n,
            evaluation_points=n_points, sustained_ratio=ratio, compliance_percent=compliance,
            anomaly_score=anomaly_score, zscore=z, evaluated_at=now, regression=state.regression,
        )
        state.status = status
        # Hysteresis: one warning per episode. The episode ends only once the score has fallen
        # below half the alert level, so a score hovering around the level does not re-warn.
        if anomaly_score is not None:
            if not state.anomalous and anomaly_score >= self.anomaly_alert_score:
                state.anomalous = True
                events.append(("anomaly", status))
            elif state.anomalous and anomaly_score < ANOMALY_REARM_FRACTION * self.anomaly_alert_score:
                state.anomalous = False

    def _regression_checks(self, now: float) -> None:
        if not math.isfinite(self.regression_interval_s):
            return
        for state in self._states.values():
            if state.last_regression_check is None:
                state.last_regression_check = now
            if not state.threshold.enabled or now - state.last_regression_check < self.regression_interval_s:
                continue
            state.last_regression_check = now
            state.regression = self._check_regression(state.threshold, now, None)

    def _check_regression(self, th: SLAThreshold, now: float, baseline_name: str | None) -> RegressionResult:
        buf = self.store.buffer(th.source)
        window = th.window_seconds
        _, recent = buf.window(now - window, now) if buf is not None else (None, np.empty(0))
        if baseline_name is not None:
            baseline = self._baselines.get((th.source, baseline_name))
            if baseline is None:
                raise KeyError(f"no baseline named {baseline_name!r} for {th.source!r}; capture_baseline() first")
        else:
            _, baseline = buf.window(now - 2 * window, now - window) if buf is not None else (None, np.empty(0))
        return detect_regression(
            baseline, recent, metric=th.metric_name, direction=th.direction,
            min_effect_percent=self.regression_min_effect_percent, alpha=self.regression_alpha,
            baseline_name=baseline_name,
        )

    def detect_regression(self, metric_name: str, *, baseline_name: str | None = None, now: float | None = None) -> RegressionResult:
        """Compare an SLA's last window with the window before it, or with a named baseline
        captured earlier (e.g. ``capture_baseline("v1.2", ...)`` before a deployment)."""
        state = self._states.get(metric_name)
        if state is None:
            raise KeyError(f"detect_regression: no SLA named {metric_name!r}")
        return self._check_regression(state.threshold, self.clock() if now is None else now, baseline_name)

    def capture_baseline(self, baseline_name: str, metric_name: str, *, now: float | None = None) -> int:
        """Keep a copy (thinned to at most MAX_TEST_SAMPLES) of an SLA's current window as a named
        baseline. Returns the number of samples kept."""
        state = self._states.get(metric_name)
        if state is None:
            raise KeyError(f"capture_baseline: no SLA named {metric_name!r}")
        now = self.clock() if now is None else now
        buf = self.store.buffer(state.threshold.source)
        _, values = buf.window(now - state.threshold.window_seconds, now)  # type: ignore[union-attr]
        if values.size > MAX_TEST_SAMPLES:
            values = values[np.linspace(0, values.size - 1, MAX_TEST_SAMPLES).astype(np.int64)]
        self._baselines[(state.threshold.source, baseline_name)] = values
        return int(values.size)

    def _dispatch(self, events: list[tuple[str, Any]]) -> None:
        for kind, payload in events:
            callbacks: list[Callable[..., Any]]
            if kind == "violation":
                callbacks, args = self._violation_callbacks, (payload,)
            elif kind == "resolved":
                callbacks, args = self._resolution_callbacks, payload
            else:
                callbacks, args = self._anomaly_callbacks, (payload,)
            for cb in list(callbacks):
                try:
                    cb(*args)
                except Exception:  # a user's callback must never stop evaluation
                    self._callback_errors += 1
                    logger.exception("aphrodite-sla: %s callback %r failed", kind, cb)

    # -- reading ---------------------------------------------------------------------------
    def get_status(self) -> dict[str, SLAStatus]:
        """The latest evaluation of every SLA that has been evaluated."""
        return {name: s.status for name, s in self._states.items() if s.status is not None}

    def active_violations(self) -> list[SLAViolation]:
        return [s.active for s in self._states.values() if s.active is not None]

    def compliance_rate(self, metric_name: str) -> float | None:
        """Percent of the evaluation points in the SLA's window that were within bounds."""
        state = self._states.get(metric_name)
        return state.status.compliance_percent if state is not None and state.status is not None else None

    def window_statistic(self, metric: str, statistic: Statistic | str, window_seconds: float, now: float | None = None) -> tuple[float, int]:
        """Any statistic of any recorded series over the last ``window_seconds``: (value, samples)."""
        from aphrodite_sla.store import kernels

        stat = Statistic(statistic)
        now = self.clock() if now is None else now
        group = _Group.of(self._route.get(metric, metric), window_seconds, [], [stat])
        return self._window_values(kernels, group, now - window_seconds, now, now)[0][0]

    @property
    def evaluator_stats(self) -> EvaluatorStats:
        return EvaluatorStats(self._evaluations, self._last_duration, self._max_duration, self._callback_errors, self.is_monitoring)

    # -- background evaluator --------------------------------------------------------------
    @property
    def is_monitoring(self) -> bool:
        return self._worker.is_running

    def start_monitoring(self) -> None:
        """Start the background evaluator (idempotent). It compiles/loads the numba kernels on its
        own thread first, so the caller (an engine's event loop) never waits for them."""
        self._worker.start()

    def stop_monitoring(self, timeout: float = 5.0) -> bool:
        """Stop the evaluator and wait up to ``timeout`` s; returns True if it has stopped."""
        return self._worker.stop(timeout)

    @staticmethod
    def _warm_up() -> None:
        from aphrodite_sla.store import kernels

        kernels.warm_up()


def create_production_sla_manager(**kwargs: Any) -> SLAManager:
    """An ``SLAManager`` with the seven production SLAs of the seed (see ``defaults``)."""
    return SLAManager(default_thresholds(), **kwargs)
