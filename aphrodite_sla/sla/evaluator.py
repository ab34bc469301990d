"""One evaluation: the plan's kernel call, then per SLA the evaluation point, its violation
lifecycle, anomaly score, z-score and error budget; then the fast page rules (``sla.pages``) and
the scheduled regression checks. The
result is a ``MonitorSnapshot`` and the events of the transitions, which the manager publishes.

Owned by one thread at a time (the evaluator thread, or a caller of ``SLAManager.evaluate``):
configuration changes take the same lock, so an evaluation never sees half a change.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aphrodite_sla.events import ANOMALY_ALERT, AnomalyDetected, MonitorEvent, ViolationEscalated, ViolationRaised, episode_id, fingerprint
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.self_metrics import SelfMetrics
from aphrodite_sla.sla.anomaly import AnomalyDetector
from aphrodite_sla.sla.error_budget import ErrorBudgetTracker
from aphrodite_sla.sla.lifecycle import EvaluationPoint, LifecycleState, ViolationLifecycle
from aphrodite_sla.sla.pages import FastPages
from aphrodite_sla.sla.regression_watch import RegressionWatch
from aphrodite_sla.sla.threshold import Direction, SLAStatus, SLAThreshold, SLAViolation, Statistic, ViolationSeverity
from aphrodite_sla.sla.warning_policy import ANOMALY_HEADROOM_SHARE, ANOMALY_REARM_FRACTION, WarningPolicy, toward_bound
from aphrodite_sla.sla.warning_rules import WarningRulesConfig
from aphrodite_sla.sla.window_plan import QUANTILE_STATISTICS, SLAReading, WindowPlan
from aphrodite_sla.sla.zscore import RollingZScore
from aphrodite_sla.snapshot import ErrorBudget, MonitorHealth, MonitorSnapshot, frozen
from aphrodite_sla.store.metric_store import MetricStore


@dataclass(eq=False)
class SLAState:
    """Evaluation state of one SLA (owned by the evaluator)."""

    threshold: SLAThreshold
    detector: AnomalyDetector | None
    budget: ErrorBudgetTracker | None
    zscore: RollingZScore = field(default_factory=RollingZScore)
    points: deque[tuple[float, bool]] = field(default_factory=deque)  # (time, beyond the bound)
    points_beyond: int = 0
    warning: WarningPolicy | None = None  # set by the evaluator (it knows the policy's settings)
    anomaly_fingerprint: str = ""
    status: SLAStatus | None = None
    lifecycle: ViolationLifecycle = field(init=False)
    # the latest evaluation, read by build_violation
    _reading: SLAReading | None = None
    _ratio: float = 0.0
    _points: int = 0
    _score: float | None = None
    _z: float | None = None
    bound: float = field(init=False)
    recovery_bound: float = field(init=False)
    upper: bool = field(init=False)
    is_rate: bool = field(init=False)

    def __post_init__(self) -> None:
        th = self.threshold
        self.lifecycle = ViolationLifecycle(th.metric_name, th.resolve_after_s, self.build_violation)
        self.anomaly_fingerprint = fingerprint(ANOMALY_ALERT, sla=th.metric_name)
        # constants of the per-evaluation arithmetic, read once
        self.bound = th.bound
        self.recovery_bound = th.recovery_bound
        self.upper = th.direction is Direction.UPPER
        self.is_rate = th.statistic is Statistic.RATE

    def build_violation(self, first_breach: float, raised_at: float, severity: ViolationSeverity,
                        peak: ViolationSeverity) -> SLAViolation:
        th, reading = self.threshold, self._reading
        assert reading is not None
        return SLAViolation(
            metric_name=th.metric_name, source_metric=th.source, statistic=th.statistic, direction=th.direction,
            observed_value=reading.value, bound=th.bound, target_value=th.target_value, severity=severity,
            window_seconds=th.window_seconds, first_breach_time=first_breach, detected_at=raised_at,
            sustained_ratio=self._ratio, evaluation_points=self._points, sample_count=reading.samples,
            anomaly_score=self._score, zscore=self._z, peak_severity=peak,
        )


class Evaluator:
    """Turns the store's windows into statuses, violations and events (see the module docstring)."""

    def __init__(
        self, store: MetricStore, self_metrics: SelfMetrics, *, evaluation_interval_s: float, anomaly_detection: bool,
        anomaly_alert_score: float, regression: RegressionWatch, pages: FastPages | None = None,
        warning_rules: WarningRulesConfig | None = None,
    ) -> None:
        self.store = store
        self.self_metrics = self_metrics
        self.evaluation_interval_s = evaluation_interval_s
        self.anomaly_detection = anomaly_detection
        self.anomaly_alert_score = anomaly_alert_score
        self.regression = regression
        self.pages = pages if pages is not None else FastPages()
        self.warning_rules = warning_rules if warning_rules is not None else WarningRulesConfig()
        self.lock = threading.Lock()
        self._states: dict[str, SLAState] = {}
        self._watched: dict[tuple[str, float], tuple[tuple[float, ...], bool]] = {}
        self._plan: WindowPlan | None = None
        self._thresholds_view: Mapping[str, SLAThreshold] = frozen({})
        self._violation_counts: dict[tuple[str, str], int] = {}
        self._breach_counts: dict[str, int] = {}
        self._counts_view: Mapping[tuple[str, str], int] | None = None  # read-only copies, re-made on change
        self._breaches_view: Mapping[str, int] | None = None
        self._pages_view: tuple[tuple[SLAViolation, ...], Mapping[tuple[str, str], int], Mapping[tuple[str, str], bool]] | None = None
        self.evaluations = 0
        # when the monitor first evaluated: a rate over a window it has not yet watched for the
        # window's length counts only the part it saw, so it is not judged before then
        self.first_evaluated_at: float | None = None
        self.last_duration_s = 0.0
        self.max_duration_s = 0.0
        reset_in_child(self)

    # -- configuration (callers hold self.lock) ------------------------------------------------
    def set_threshold(self, th: SLAThreshold) -> None:
        detector = AnomalyDetector() if self.anomaly_detection else None
        budget = ErrorBudgetTracker(th.metric_name, th.objective, self.evaluation_interval_s,
                                    self.pages.config.longest_window_s) if th.objective is not None else None
        state = self._states[th.metric_name] = SLAState(th, detector, budget)
        state.warning = WarningPolicy(self.warning_rules, self.anomaly_alert_score, self.evaluation_interval_s, state.upper, state.bound)
        self.regression.forget(th.metric_name)
        self.pages.forget(th.metric_name)
        self._config_changed()

    def remove_threshold(self, name: str) -> bool:
        removed = self._states.pop(name, None) is not None
        self.regression.forget(name)
        self.pages.forget(name)
        self._config_changed()
        return removed

    def watch(self, series: str, window_s: float, quantiles: tuple[float, ...], rate: bool) -> None:
        key = (series, float(window_s))
        old_q, old_rate = self._watched.get(key, ((), False))
        self._watched[key] = (tuple(sorted({*old_q, *quantiles})), old_rate or rate)
        self._config_changed()

    def _config_changed(self) -> None:
        self._plan = None
        self._thresholds_view = frozen({name: s.threshold for name, s in self._states.items()})

    @property
    def states(self) -> dict[str, SLAState]:
        return self._states

    @property
    def thresholds(self) -> Mapping[str, SLAThreshold]:
        return self._thresholds_view

    def plan(self) -> WindowPlan:
        if self._plan is None:
            enabled = [s.threshold for s in self._states.values() if s.threshold.enabled]
            watched = dict(self._watched)
            for key, (quantiles, rate) in self.pages.windows(enabled).items():  # the page rules' short windows
                old_q, old_rate = watched.get(key, ((), False))
                watched[key] = (tuple(sorted({*old_q, *quantiles})), old_rate or rate)
            self._plan = WindowPlan(self.store, enabled, watched)
        return self._plan

    # -- evaluation (callers hold self.lock) ---------------------------------------------------
    def evaluate(self, now: float, health: Callable[[float, float], MonitorHealth], sequence: int) -> tuple[MonitorSnapshot, list[MonitorEvent]]:
        """One evaluation at ``now``; ``health(now, duration_s)`` builds the monitor's own health."""
        started = time.perf_counter()
        if self.first_evaluated_at is None:
            self.first_evaluated_at = now
        result = self.plan().compute(now, self.evaluation_interval_s)
        events: list[MonitorEvent] = []
        statuses: dict[str, SLAStatus] = {}
        violations: list[SLAViolation] = []
        budgets: dict[str, ErrorBudget] = {}
        enabled = []
        breaches = sum(self._breach_counts.values())
        for name, state in self._states.items():
            reading = result.slas.get(name)
            if reading is None:  # disabled
                continue
            enabled.append(state.threshold)
            status = self._evaluate_sla(state, reading, now, events)
            statuses[name] = status
            if state.lifecycle.violation is not None:
                violations.append(state.lifecycle.violation)
            if state.budget is not None:
                new = result.budgets.get(name)
                budgets[name] = state.budget.add(now, new.new - new.bad, new.bad) if new is not None else state.budget.status()
        pages = self.pages.evaluate(
            now, ((s.threshold, s.budget, statuses[name].breached, s._reading.value if s._reading is not None else math.nan)
                  for name, s in self._states.items() if name in statuses),
            result.windows,
        )
        events.extend(pages)
        checked, regressions = self.regression.scheduled(enabled, now)
        events.extend(regressions)
        for name in checked:  # the results of the checks just run
            reg = self.regression.result(name)
            statuses[name] = self._states[name].status = statuses[name]._replace(regression=reg)
        self.evaluations += 1
        duration = time.perf_counter() - started
        self.last_duration_s = duration
        self.max_duration_s = max(self.max_duration_s, duration)
        if events or self._counts_view is None:  # a transition changed the violation counts
            self._counts_view = frozen(dict(self._violation_counts))
        if pages or self._pages_view is None:
            self._pages_view = (tuple(self.pages.active()), frozen(self.pages.counts()), frozen(self.pages.states()))
        if breaches != sum(self._breach_counts.values()) or self._breaches_view is None:
            self._breaches_view = frozen(dict(self._breach_counts))
        snapshot = MonitorSnapshot(
            sequence=sequence, evaluated_at=now, thresholds=self._thresholds_view, statuses=frozen(statuses),
            violations=tuple(violations), windows=frozen(result.windows), coverage=frozen(result.coverage),
            budgets=frozen(budgets),
            violation_counts=self._counts_view, breach_counts=self._breaches_view, health=health(now, duration),
            pages=self._pages_view[0], page_counts=self._pages_view[1], page_states=self._pages_view[2],
        )
        return snapshot, events

    def _watched_s(self, now: float) -> float:
        """How long the monitor has watched at the evaluation ``now`` (the first one counts a whole interval)."""
        first = self.first_evaluated_at if self.first_evaluated_at is not None else now
        return now - first + self.evaluation_interval_s

    def _evaluate_sla(self, state: SLAState, reading: SLAReading, now: float, events: list[MonitorEvent]) -> SLAStatus:
        th = state.threshold
        name = th.metric_name
        points = state.points
        cutoff = now - th.window_seconds
        while points and points[0][0] <= cutoff:
            if points.popleft()[1]:
                state.points_beyond -= 1
        value, n = reading.value, reading.samples
        judged = n >= th.min_samples and math.isfinite(value)
        if judged and state.is_rate:
            # a rate is the window's total over the window's length: before the monitor has
            # watched a whole window it reads low (25 s of tokens over 300 s: a twelfth)
            judged = self._watched_s(now) >= th.window_seconds
        bound = state.bound
        breached = judged and (value > bound if state.upper else value < bound)
        if judged:
            points.append((now, breached))
            if breached:
                state.points_beyond += 1
                self._breach_counts[name] = self._breach_counts.get(name, 0) + 1
        n_points = len(points)
        ratio = state.points_beyond / n_points if n_points else 0.0
        score: float | None = None
        z: float | None = None
        if reading.fresh_samples > 0 or state.is_rate:
            z = state.zscore.zscore(reading.fresh_value)
            state.zscore.append(reading.fresh_value)
            if state.detector is not None:
                score = state.detector.update(reading.fresh_value, now)
        state._reading, state._ratio, state._points, state._score, state._z = reading, ratio, n_points, score, z
        lifecycle = state.lifecycle
        if breached or lifecycle.violation is not None or lifecycle.state is not LifecycleState.INACTIVE:
            recovery = state.recovery_bound
            point = EvaluationPoint(
                at=now, breached=breached,
                recovered=not judged or (value <= recovery if state.upper else value >= recovery),
                sustained=breached and th.is_sustained(state.points_beyond, n_points, self._watched_s(now), self.evaluation_interval_s),
                severity=th.severity(value) if breached else None,
            )
            for event in lifecycle.observe(point):
                events.append(event)
                if isinstance(event, (ViolationRaised, ViolationEscalated)):
                    key = (name, event.violation.worst_severity.value)
                    self._violation_counts[key] = self._violation_counts.get(key, 0) + 1
        active = lifecycle.violation
        status = SLAStatus(
            metric_name=name, statistic=th.statistic, value=value if math.isfinite(value) else None, bound=bound,
            breached=breached, violated=active is not None, severity=active.severity if active is not None else None,
            sample_count=n, evaluation_points=n_points, sustained_ratio=ratio,
            compliance_percent=100.0 * (n_points - state.points_beyond) / n_points if n_points else None,
            anomaly_score=score, zscore=z, evaluated_at=now, regression=self.regression.result(name),
        )
        state.status = status
        # a warning once the change holds (sla.warning_policy): one per episode, one per story
        if score is not None and state.warning is not None:
            kind = state.warning.observe(now, score, getattr(state.detector, "last_explanation", None), reading.fresh_value, value)
            if kind is not None:
                fp = state.anomaly_fingerprint
                # the score the change reached since its onset (it decays while the change is confirmed)
                events.append(AnomalyDetected(fp, episode_id(fp, now), now, status, state.warning.peak_score, kind))
        return status

    def _reset_after_fork(self) -> None:
        self.lock = threading.Lock()


__all__ = ["ANOMALY_HEADROOM_SHARE", "ANOMALY_REARM_FRACTION", "QUANTILE_STATISTICS", "Evaluator", "SLAState", "toward_bound"]
