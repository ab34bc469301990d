"""``RCAService``: root-cause analysis attached to one monitor's event stream.

Why a subscriber: the analysis reads up to an hour of rings and runs numpy for tens of
milliseconds; on its own subscription thread it never delays the evaluator, the engine's event
loop or another subscriber. On every ``ViolationRaised`` (stalls and fast pages included: they are
subclasses) it analyses the episode and publishes ``RootCauseFound``. It also records the events
the causal graph needs as series: deployments (``DeploymentEvent`` "tracked") and configuration
changes, so "what changed just before?" is answerable from the same rings. A violation is
analysed ``settle_s`` after its detection (see :data:`SETTLE_S`).
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from aphrodite_sla.events import DeploymentEvent, RootCauseFound, SnapshotPublished, ViolationRaised
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.rca.engine import RCAEngine, create_production_rca_engine
from aphrodite_sla.rca.model import RCAAnalysis
from aphrodite_sla.rca.stats import CONFIDENCE_BUCKETS, DURATION_BUCKETS, RCAMetricsView, cumulative

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.context import MonitorContext

logger = logging.getLogger(__name__)

DEPLOYMENT_SERIES = "deployment_events"
CONFIG_CHANGE_SERIES = "config_change_events"
EVENT_WINDOW_S = 3600.0
KEPT_ANALYSES = 64
KEPT_SAMPLES = 1000
# A violation is analysed this long after its detection (at the first evaluation past it): a stall
# or a fast page is raised at the very start of an incident, when the window holds a bin or two of
# it; 30 s more give every metric a few incident bins (and RCA is still minutes ahead of a person).
SETTLE_S = 30.0
MAX_PENDING = 256
# An analysis asked for through the API waits this long for its worker (a slower one goes on and is
# kept; the caller gets a timeout and finds it in the listing later).
ON_DEMAND_TIMEOUT_S = 30.0
# The history is extended this often (the rings hold at least a minute of every series; an
# analysis reads the bins since the last extension from the rings directly).
HISTORY_EVERY_S = 15.0


class AnalysisBusy(RuntimeError):
    """An on-demand analysis is already running (one at a time: the API answers 429)."""


class RCAService:
    """RCA for one ``MonitorContext``; subscribing is all it needs (no thread of its own)."""

    def __init__(self, context: MonitorContext, *, engine: RCAEngine | None = None, settle_s: float = SETTLE_S) -> None:
        self.context = context
        self.settle_s = float(settle_s)
        self._pending: deque[ViolationRaised] = deque()
        self._history_at = -float("inf")
        manager = context.manager
        self.engine = engine or create_production_rca_engine(context, engine_state=self._engine_state)
        for name in (DEPLOYMENT_SERIES, CONFIG_CHANGE_SERIES):
            manager.register_metric(name, EVENT_WINDOW_S, 1.0, unit="events")
        self._analyses: OrderedDict[str, RCAAnalysis] = OrderedDict()
        self._sla_of: dict[str, str] = {}  # episode -> the SLA whose violation (or request) it analysed
        self._durations: deque[float] = deque(maxlen=KEPT_SAMPLES)
        self._confidences: deque[float] = deque(maxlen=KEPT_SAMPLES)
        self._counts: dict[tuple[str, str], int] = {}
        self._recs: dict[str, int] = {}
        self._corr_total = 0
        self._lock = threading.Lock()
        self._view = RCAMetricsView()
        self._on_demand = threading.Lock()  # held while an on-demand analysis runs
        from aphrodite_sla.rca.api import RCAApi

        self.api = RCAApi(self, context.config.api_token or None)
        # one subscription for both: the history is updated in order with the violations
        self.subscription = manager.subscribe(self._on_event, ViolationRaised, SnapshotPublished, name="rca")
        self.event_subscription = manager.subscribe(self._on_deployment, DeploymentEvent, name="rca-events")
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # a lock another thread held at fork() is held forever in the child
        self._lock = threading.Lock()
        self._on_demand = threading.Lock()

    # -- reactions (on the subscriptions' threads) -----------------------------------------------------
    def _on_event(self, event: ViolationRaised | SnapshotPublished) -> None:
        if isinstance(event, ViolationRaised):
            self._pending.append(event)
            now = float(self.engine.clock())
        else:
            now = event.occurred_at
            if self.engine.history is not None and now - self._history_at >= HISTORY_EVERY_S:
                self._history_at = now
                self.engine.history.update(now)
        while self._pending and (self._pending[0].violation.detected_at + self.settle_s <= now
                                 or len(self._pending) > MAX_PENDING):
            self._on_violation(self._pending.popleft())

    def _on_violation(self, event: ViolationRaised) -> None:
        v = event.violation
        analysis = self.engine.analyze(v.source_metric or v.metric_name, v.detected_at,
                                       fingerprint=event.fingerprint, episode=event.episode)
        self._remember(analysis, v.metric_name)
        p = analysis.primary_root_cause
        self.context.events.publish([RootCauseFound(event.fingerprint, event.episode, float(self.engine.clock()),
                                                    sla=v.metric_name, cause=p.cause, category=p.category,
                                                    confidence=p.confidence, analysis=analysis)])

    def _on_deployment(self, event: DeploymentEvent) -> None:
        if event.kind == "tracked":
            self.record_deployment()

    def record_deployment(self) -> None:
        self.context.manager.record_measurement(DEPLOYMENT_SERIES, 1.0)

    def record_config_change(self) -> None:
        self.context.manager.record_measurement(CONFIG_CHANGE_SERIES, 1.0)

    # -- readers -----------------------------------------------------------------------------------------
    def analyses(self) -> list[RCAAnalysis]:
        with self._lock:
            return list(self._analyses.values())

    def analysis(self, episode: str) -> RCAAnalysis | None:
        with self._lock:
            return self._analyses.get(episode)

    def sla_of(self, episode: str) -> str:
        """The SLA an analysis was made for (its ``sla`` field is the SLI node it analysed)."""
        with self._lock:
            return self._sla_of.get(episode, "")

    def metrics_view(self) -> RCAMetricsView:
        return self._view

    def sla_series(self, sla: str) -> str | None:
        """The series an SLA is analysed over (its source metric), or None for an unknown SLA."""
        threshold = self.context.manager.thresholds.get(sla)
        if threshold is None:
            return None
        return threshold.source_metric or threshold.metric_name

    def analyze_now(self, sla: str, *, by: str = "api", timeout_s: float = ON_DEMAND_TIMEOUT_S) -> RCAAnalysis:
        """Analyse ``sla`` as if it had been detected now, on a worker thread of its own (never
        the caller's loop), one at a time: ``AnalysisBusy`` while another runs, ``KeyError`` for an
        unknown SLA, ``TimeoutError`` past ``timeout_s`` (the analysis goes on and is kept). The
        result is kept and listed like the others; it publishes nothing (recovery acts on the
        monitor's violations, not on a question someone asked)."""
        series = self.sla_series(sla)
        if series is None:
            raise KeyError(sla)
        if not self._on_demand.acquire(blocking=False):
            raise AnalysisBusy("an on-demand analysis is running; try again when it has finished")
        episode = f"manual-{uuid.uuid4().hex[:12]}"
        future: Future[RCAAnalysis] = Future()

        def work() -> None:
            try:
                analysis = self.engine.analyze(series, float(self.engine.clock()), episode=episode)
                analysis.diagnostics["requested_by"] = by
                self._remember(analysis, sla)
                future.set_result(analysis)
            except BaseException as exc:  # the engine reports its own failures; this is a bug of ours
                future.set_exception(exc)
            finally:
                self._on_demand.release()

        try:
            threading.Thread(target=work, name="aphrodite-sla-rca-on-demand", daemon=True).start()
        except BaseException:
            self._on_demand.release()
            raise
        return future.result(timeout_s)

    # -- internals ----------------------------------------------------------------------------------------
    def _remember(self, a: RCAAnalysis, sla: str = "") -> None:
        p = a.primary_root_cause
        with self._lock:
            episode = a.episode or str(len(self._analyses))
            self._analyses[episode] = a
            self._sla_of[episode] = sla or a.sla
            while len(self._analyses) > KEPT_ANALYSES:
                old, _ = self._analyses.popitem(last=False)
                self._sla_of.pop(old, None)
            self._durations.append(a.duration_s)
            self._confidences.append(p.confidence)
            key = (p.cause, p.category)
            self._counts[key] = self._counts.get(key, 0) + 1
            for r in a.recommendations:
                self._recs[r.action] = self._recs.get(r.action, 0) + 1
            found = sum(1 for c in a.correlations if c.significant)
            self._corr_total += found
            durations, confidences = list(self._durations), list(self._confidences)
            self._view = RCAMetricsView(
                analyses=dict(self._counts), duration_buckets=cumulative(durations, DURATION_BUCKETS),
                duration_sum_s=sum(durations), confidence_buckets=cumulative(confidences, CONFIDENCE_BUCKETS),
                confidence_sum=sum(confidences), correlations_found=found, correlations_found_total=self._corr_total,
                recommendations=dict(self._recs), last_confidence=p.confidence,
            )

    def _engine_state(self) -> dict[str, Any]:
        """The engine and monitor state for the report's diagnostics (published views only)."""
        ctx = self.context
        out: dict[str, Any] = {"in_flight_requests": ctx.server.in_flight_requests()}
        snap = ctx.snapshot()
        out["stall"] = getattr(getattr(snap, "stall", None), "state", None)
        out["stall"] = str(out["stall"]) if out["stall"] is not None else None
        if ctx.recovery is not None:
            view = ctx.recovery.metrics_view()
            out["degradation_level"] = view.degradation_name
            out["monitoring_mode"] = view.monitoring_mode
            out["breakers"] = {name: str(getattr(b, "state", b)) for name, b in view.breakers.items()}
        return out
