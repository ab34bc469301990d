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
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from aphrodite_sla.events import DeploymentEvent, RootCauseFound, SnapshotPublished, ViolationRaised
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
# The history is extended this often (the rings hold at least a minute of every series; an
# analysis reads the bins since the last extension from the rings directly).
HISTORY_EVERY_S = 15.0


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
        self._durations: deque[float] = deque(maxlen=KEPT_SAMPLES)
        self._confidences: deque[float] = deque(maxlen=KEPT_SAMPLES)
        self._counts: dict[tuple[str, str], int] = {}
        self._recs: dict[str, int] = {}
        self._corr_total = 0
        self._lock = threading.Lock()
        self._view = RCAMetricsView()
        # one subscription for both: the history is updated in order with the violations
        self.subscription = manager.subscribe(self._on_event, ViolationRaised, SnapshotPublished, name="rca")
        self.event_subscription = manager.subscribe(self._on_deployment, DeploymentEvent, name="rca-events")

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
        self._remember(analysis)
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

    def metrics_view(self) -> RCAMetricsView:
        return self._view

    # -- internals ----------------------------------------------------------------------------------------
    def _remember(self, a: RCAAnalysis) -> None:
        p = a.primary_root_cause
        with self._lock:
            self._analyses[a.episode or str(len(self._analyses))] = a
            while len(self._analyses) > KEPT_ANALYSES:
                self._analyses.popitem(last=False)
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
