"""``SLAManager``: the seed's API as a thin façade over the parts that do the work.

* recording (``record_measurement``/``record_batch``) copies numbers into the store's rings;
* the ``Evaluator`` (background thread after ``start_monitoring()``, or ``evaluate(now)``) turns
  windows into statuses, violations and events;
* the latest ``MonitorSnapshot`` is published on ``board`` for every reader (``get_status``,
  ``active_violations``, the collector, the endpoints);
* events go out on ``events`` (an ``EventStream``): the seed's callbacks are subscriptions there.

Sustained violations: each evaluation is an *evaluation point* per SLA. A violation is raised
when the windowed statistic is beyond the bound and at least ``violation_threshold_percent`` of
the points inside the SLA's window were beyond it (and there are at least
``min_evaluation_points``); it escalates when its severity rises past the episode's peak and
resolves after ``resolve_after_s`` back inside the bound by ``resolve_margin_percent``
(``sla.lifecycle``).

Fast pages (``sla.pages``, set by ``page_rules``): beside the sustained rule, a severe breach over
60 s and multi-window burn rates raise ``PageRaised`` within an evaluation or two.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.event_stream import EventStream, Subscription
from aphrodite_sla.events import (
    AnomalyDetected,
    MonitorEvent,
    RegressionDetected,
    SnapshotPublished,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
)
from aphrodite_sla.forking import imports_in_progress
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.self_metrics import Component, SelfMetrics
from aphrodite_sla.sla.defaults import default_thresholds
from aphrodite_sla.sla.error_budget import BURN_RATE_WINDOWS_S
from aphrodite_sla.sla.evaluator import Evaluator
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.pages import FastPages
from aphrodite_sla.sla.regression import RegressionResult
from aphrodite_sla.sla.regression_watch import RegressionWatch
from aphrodite_sla.sla.threshold import SLAStatus, SLAThreshold, SLAViolation, Statistic
from aphrodite_sla.sla.warning_rules import WarningRulesConfig
from aphrodite_sla.sla.window_plan import QUANTILE_STATISTICS, WindowPlan
from aphrodite_sla.snapshot import MonitorHealth, MonitorSnapshot, frozen
from aphrodite_sla.snapshot_board import SnapshotBoard
from aphrodite_sla.store.metric_store import MetricStore
from aphrodite_sla.store.spec import MetricSpec

ViolationCallback = Callable[[SLAViolation], Any]
ResolutionCallback = Callable[[str, float], Any]
AnomalyCallback = Callable[[SLAStatus], Any]
RegressionCallback = Callable[[RegressionResult], Any]

# How long the synchronous ``evaluate()`` waits for subscribers to receive its events.
DRAIN_TIMEOUT_S = 5.0

__all__ = [
    "BURN_RATE_WINDOWS_S",
    "EvaluatorStats",
    "SLAManager",
    "create_production_sla_manager",
]


@dataclass(frozen=True)
class EvaluatorStats:
    """How the evaluator itself is doing (live counters)."""

    evaluations: int
    last_duration_s: float
    max_duration_s: float
    callback_errors: int  # subscribers (seed callbacks included) and pre-evaluation hooks that raised
    running: bool
    evaluation_errors: int = 0


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
        events: EventStream | None = None,
        page_rules: PageRulesConfig | None = None,
        warning_rules: WarningRulesConfig | None = None,
    ) -> None:
        if not (isinstance(evaluation_interval_s, (int, float)) and math.isfinite(evaluation_interval_s) and evaluation_interval_s > 0):
            raise ValueError(f"SLAManager.evaluation_interval_s: must be a finite number > 0, got {evaluation_interval_s!r}")
        self.clock = clock
        self.store = store if store is not None else MetricStore(clock)
        self.events = events if events is not None else EventStream()
        self.self_metrics: SelfMetrics = self.events.self_metrics
        self.board = SnapshotBoard()
        self.evaluation_interval_s = float(evaluation_interval_s)
        self.anomaly_alert_score = float(anomaly_alert_score)
        self.regression_interval_s = float(regression_interval_s)
        self._evaluator = Evaluator(
            self.store, self.self_metrics, evaluation_interval_s=self.evaluation_interval_s,
            anomaly_detection=anomaly_detection, anomaly_alert_score=self.anomaly_alert_score,
            regression=RegressionWatch(self.store, interval_s=regression_interval_s,
                                       min_effect_percent=regression_min_effect_percent, alpha=regression_alpha),
            pages=FastPages(page_rules), warning_rules=warning_rules,
        )
        self._route: dict[str, str] = {}  # SLA name or series name -> recorded series
        self._pre_evaluation_hooks: list[Callable[[], Any]] = []
        self._sequence = itertools.count(1)
        self._health_cache: dict[str, Any] = {}
        self._worker = PeriodicThread(
            "aphrodite-sla-evaluator", self._tick, self.evaluation_interval_s, setup=self._warm_up, on_error=self._failed,
        )
        for t in thresholds:
            self.add_threshold(t)

    # -- configuration ---------------------------------------------------------------------
    def add_threshold(self, threshold: SLAThreshold) -> None:
        """Add or replace (by ``metric_name``) an SLA; its source series is registered with a ring
        big enough for two windows (the window and the regression baseline before it), thinned
        when it arrives faster than the SLA's sample rate unless the SLA reads it as a rate."""
        if not isinstance(threshold, SLAThreshold):
            raise TypeError(f"add_threshold: expected SLAThreshold, got {type(threshold).__name__}")
        self.store.register(
            MetricSpec(
                threshold.source, 2 * threshold.window_seconds, threshold.sample_rate_hz, unit=threshold.unit,
                thin=threshold.statistic is not Statistic.RATE,
            )
        )
        with self._evaluator.lock:
            self._evaluator.set_threshold(threshold)
            self._rebuild_routes()

    def remove_threshold(self, metric_name: str) -> bool:
        """Remove an SLA; its recorded samples stay (another SLA or a later one may read them)."""
        with self._evaluator.lock:
            removed = self._evaluator.remove_threshold(metric_name)
            self._rebuild_routes()
        return removed

    def register_metric(
        self, name: str, window_seconds: float, sample_rate_hz: float = 10.0, *, allow_negative: bool = False,
        max_value: float = math.inf, unit: str = "", thin: bool = False,
    ) -> None:
        """Record a series no SLA reads yet (for regression checks, RCA or dashboards). ``thin``:
        a distribution read only as quantiles or means, thinned when it arrives faster than
        ``sample_rate_hz`` so its window keeps its length (see ``store.thinning``)."""
        self.store.register(MetricSpec(name, window_seconds, sample_rate_hz, allow_negative, max_value, unit, thin))
        with self._evaluator.lock:
            self._rebuild_routes()

    def _rebuild_routes(self) -> None:
        route = {name: name for name in self.store.names()}
        for name, th in self._evaluator.thresholds.items():
            route.setdefault(name, th.source)
        self._route = route  # replaced whole: the hot path reads it without a lock

    @property
    def thresholds(self) -> dict[str, SLAThreshold]:
        return dict(self._evaluator.thresholds)

    def watch_quantiles(self, metric: str, quantiles: tuple[float, ...], window_seconds: float) -> None:
        """Compute these exact quantiles of ``metric`` over ``window_seconds`` at every evaluation
        (sharing the selection pass of SLAs over the same window), for readers of the snapshot."""
        self.watch_window(metric, window_seconds, quantiles=quantiles)

    def watch_window(self, metric: str, window_seconds: float, *, quantiles: tuple[float, ...] = (), rate: bool = False) -> None:
        """Compute exact ``quantiles`` and (``rate=True``) the mean and rate of ``metric`` over
        ``window_seconds`` at every evaluation: ``snapshot().window(series, window_seconds)``."""
        unknown = [q for q in quantiles if q not in QUANTILE_STATISTICS]
        if unknown:
            raise ValueError(f"watch_quantiles: unsupported quantiles {unknown}; use {sorted(QUANTILE_STATISTICS)}")
        with self._evaluator.lock:
            self._evaluator.watch(self._route.get(metric, metric), float(window_seconds), tuple(quantiles), rate)

    # -- subscriptions -----------------------------------------------------------------------
    def subscribe(self, handler: Callable[[Any], Any], *kinds: type[MonitorEvent], name: str | None = None) -> Subscription:
        """Receive the events of ``kinds`` (default: all) on a thread of the subscription's own."""
        return self.events.subscribe(handler, *kinds, name=name)

    def register_violation_callback(self, callback: ViolationCallback) -> Subscription:
        """``callback(violation)`` on a new violation (an engine stall included) and on each
        escalation past its peak severity; on its own thread, never the evaluator's."""
        return self.events.subscribe(lambda e: callback(e.violation), ViolationRaised, ViolationEscalated,
                                     name=_callback_name("violation", callback))

    def register_resolution_callback(self, callback: ResolutionCallback) -> Subscription:
        """``callback(metric_name, resolved_at)`` when a violation episode ends."""
        return self.events.subscribe(lambda e: callback(e.sla, e.occurred_at), ViolationResolved,
                                     name=_callback_name("resolution", callback))

    def register_anomaly_callback(self, callback: AnomalyCallback) -> Subscription:
        """``callback(status)`` when an SLA's anomaly score rises past ``anomaly_alert_score``
        toward its bound and the change holds (``warning_rules``, ``sla.warning_policy``): an
        early warning, often before the sustained violation (once per episode)."""
        return self.events.subscribe(lambda e: callback(e.status), AnomalyDetected, name=_callback_name("anomaly", callback))

    def register_regression_callback(self, callback: RegressionCallback) -> Subscription:
        """``callback(result)`` once per regression episode found by the scheduled checks."""
        return self.events.subscribe(lambda e: callback(e.result), RegressionDetected, name=_callback_name("regression", callback))

    def register_pre_evaluation_hook(self, hook: Callable[[], Any]) -> None:
        """``hook()`` runs before every evaluation, on the evaluating thread: where staged samples
        (an engine StatLogger's) are flushed into the store."""
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
    def evaluate(self, now: float | None = None) -> list[SLAViolation]:
        """Evaluate every enabled SLA at ``now`` (default: the clock), publish the snapshot and the
        events, wait (up to ``DRAIN_TIMEOUT_S``) until subscribers have received them, and return
        the SLA violations active after this evaluation."""
        try:
            snapshot = self._evaluate(now)
        except Exception as exc:
            self._failed(exc)
            raise
        self.events.drain(DRAIN_TIMEOUT_S)
        return list(snapshot.violations)

    def _tick(self) -> None:
        """The background evaluator's tick: evaluate and publish; never waits for subscribers. A
        failure is counted, logged (rate-limited) and published as the monitor's health, so a
        monitor that cannot evaluate says so instead of reporting its last good state forever."""
        try:
            self._evaluate(None)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.self_metrics.error(Component.EVALUATOR, message, exc_info=True)
        health = self.board.latest.health
        self.board.publish_health(replace(
            health, evaluation_failing=True, last_error=self.self_metrics.last_error,
            errors=frozen(self.self_metrics.errors()), evaluator_running=self._worker.is_running,
        ))

    def _evaluate(self, now: float | None) -> MonitorSnapshot:
        for hook in list(self._pre_evaluation_hooks):
            try:
                hook()
            except Exception as exc:
                self.self_metrics.error(Component.HOOK, f"{hook!r} raised {type(exc).__name__}: {exc}", exc_info=True)
        ev = self._evaluator
        with ev.lock:
            at = self.clock() if now is None else float(now)
            snapshot, events = ev.evaluate(at, self._health, next(self._sequence))
            snapshot = self.board.publish_evaluation(snapshot)
        events.append(SnapshotPublished("", "", at, snapshot))
        self.events.publish(events)
        return snapshot

    def _health(self, now: float, duration_s: float) -> MonitorHealth:
        sm = self.self_metrics
        sm.observe_evaluation(duration_s)
        ev = self._evaluator
        cache = self._health_cache
        if cache.get("errors_version") != sm.version:  # copies only when something changed
            cache["errors_version"], cache["errors"] = sm.version, frozen(sm.errors())
        if cache.get("drops_version") != self.store.drops_version:
            cache["drops_version"] = self.store.drops_version
            cache["drops"] = frozen({(m, r.value): n for (m, r), n in self.store.dropped().items()})
        return MonitorHealth(
            evaluator_running=self._worker.is_running, evaluations=ev.evaluations, last_evaluation_at=now,
            last_duration_s=duration_s, max_duration_s=ev.max_duration_s, durations=sm.durations(),
            errors=cache["errors"], last_error=sm.last_error, dropped_events=frozen(self.events.dropped()),
            dropped_samples=cache["drops"], store_bytes=self.store.nbytes, thinned_samples=frozen(self.store.thinned()),
        )

    # -- reading (the latest snapshot) -----------------------------------------------------
    def snapshot(self) -> MonitorSnapshot:
        """The latest published snapshot (an immutable value; read it as often as you like)."""
        return self.board.latest

    def get_status(self) -> dict[str, SLAStatus]:
        """The latest evaluation of every SLA that has been evaluated."""
        return dict(self.board.latest.statuses)

    def active_violations(self) -> list[SLAViolation]:
        """Every active violation, an engine stall included."""
        return list(self.board.latest.active_violations)

    def compliance_rate(self, metric_name: str) -> float | None:
        """Percent of the evaluation points in the SLA's window that were within bounds."""
        status = self.board.latest.statuses.get(metric_name)
        return status.compliance_percent if status is not None else None

    def watched_quantiles(self) -> dict[str, tuple[float, int, dict[float, float]]]:
        """Per watched series: (evaluated_at, samples, {quantile: exact value}) from the last evaluation."""
        return {
            series: (w.evaluated_at, w.samples, dict(w.quantiles))
            for (series, _window), w in self.board.latest.windows.items() if w.quantiles or w.samples == 0
        }

    @property
    def violation_counts(self) -> dict[tuple[str, str], int]:
        """Violations raised or escalated, by (SLA, severity)."""
        return dict(self.board.latest.violation_counts)

    @property
    def breach_counts(self) -> dict[str, int]:
        """Evaluation points at which each SLA's statistic was beyond its bound."""
        return dict(self.board.latest.breach_counts)

    def event_counts(self) -> dict[str, tuple[int, int]]:
        """(good, bad) samples per SLA with an objective, since start."""
        return {name: (b.good, b.bad) for name, b in self.board.latest.budgets.items()}

    def burn_rate(self, metric_name: str, window_s: float) -> float | None:
        """Error-budget burn rate of an SLA over the last ``window_s`` (up to the longest of
        BURN_RATE_WINDOWS_S): bad fraction / (1 - objective). None without an objective or events."""
        state = self._evaluator.states.get(metric_name)
        if state is None or state.budget is None:
            return None
        return state.budget.burn_rate(window_s)

    def window_statistic(self, metric: str, statistic: Statistic | str, window_seconds: float, now: float | None = None) -> tuple[float, int]:
        """Any statistic of any recorded series over the last ``window_seconds``: (value, samples).
        Computed now, on the caller's thread, with scratch of its own (readers that must not compute
        read ``snapshot()`` instead)."""
        stat = Statistic(statistic)
        series = self._route.get(metric, metric)
        at = self.clock() if now is None else float(now)
        q = stat.quantile
        plan = WindowPlan(self.store, [], {(series, float(window_seconds)): ((q,) if q is not None else (), q is None)})
        window = plan.compute(at, 0.0).windows[(series, float(window_seconds))]
        if q is not None:
            return window.quantiles.get(q, math.nan), window.samples
        return (window.rate if stat is Statistic.RATE else window.mean), window.samples

    @property
    def evaluator_stats(self) -> EvaluatorStats:
        ev, sm = self._evaluator, self.self_metrics
        return EvaluatorStats(
            ev.evaluations, ev.last_duration_s, ev.max_duration_s,
            sm.errors_of(Component.SUBSCRIBER) + sm.errors_of(Component.HOOK), self.is_monitoring,
            sm.errors_of(Component.EVALUATOR),
        )

    # -- regression --------------------------------------------------------------------------
    def detect_regression(self, metric_name: str, *, baseline_name: str | None = None, now: float | None = None) -> RegressionResult:
        """Compare an SLA's last window with the window before it, or with a named baseline
        captured earlier (e.g. ``capture_baseline("v1.2", ...)`` before a deployment)."""
        th = self._evaluator.thresholds.get(metric_name)
        if th is None:
            raise KeyError(f"detect_regression: no SLA named {metric_name!r}")
        return self._evaluator.regression.detect(th, self.clock() if now is None else now, baseline_name)

    def capture_baseline(self, baseline_name: str, metric_name: str, *, now: float | None = None) -> int:
        """Keep a copy (thinned to at most MAX_TEST_SAMPLES) of an SLA's current window as a named
        baseline. Returns the number of samples kept."""
        th = self._evaluator.thresholds.get(metric_name)
        if th is None:
            raise KeyError(f"capture_baseline: no SLA named {metric_name!r}")
        return self._evaluator.regression.capture(baseline_name, th, self.clock() if now is None else now)

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

    def _warm_up(self) -> None:
        """On the evaluator thread before its first tick: compile (or load) the kernels, and import
        scipy for the regression checks now, at start-up, not mid-serving (its import holds the GIL
        for ~50 ms, which the engine's event loop would wait out)."""
        with imports_in_progress():  # a fork meanwhile would leave its child a half-done import
            from aphrodite_sla.store import kernels

            kernels.warm_up()
            if math.isfinite(self.regression_interval_s):
                import scipy.stats  # noqa: F401


def _callback_name(kind: str, callback: Callable[..., Any]) -> str:
    return f"{kind}:{getattr(callback, '__qualname__', type(callback).__name__)}"


def create_production_sla_manager(**kwargs: Any) -> SLAManager:
    """An ``SLAManager`` with the seven production SLAs of the seed (see ``defaults``)."""
    return SLAManager(default_thresholds(), **kwargs)
