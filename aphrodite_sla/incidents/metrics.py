"""Prometheus families of incidents, read from one ``IncidentMetricsView`` per scrape.

``incidents_open{severity}``, ``incidents{status}``, ``incident_mttd_seconds``,
``incident_mtta_seconds``, ``incident_mttr_seconds`` (means over the last 30 days),
``incident_escalations_total{level}``, ``incident_rule_events_dropped_total``.

Why a view: a scrape of the engine's ``/metrics`` runs on its event loop, so it must not query the
store; the incident system rebuilds the view off the loop at every tick and the collector only
reads the reference.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aphrodite_sla.incidents.model import IncidentSeverity, IncidentStatus

logger = logging.getLogger(__name__)
STATS_WINDOW_S = 30 * 86_400.0


@dataclass(frozen=True)
class IncidentMetricsView:
    open_by_severity: Mapping[str, int] = field(default_factory=dict)
    by_status: Mapping[str, int] = field(default_factory=dict)
    mttd_minutes: float | None = None
    mtta_minutes: float | None = None
    mttr_minutes: float | None = None
    escalations_by_level: Mapping[int, int] = field(default_factory=dict)
    levels: int = 5
    rule_events_dropped: int = 0


class IncidentCollector(Collector):
    def __init__(self, view: Callable[[], IncidentMetricsView], model_name: str = "") -> None:
        self.view = view
        self.model_name = model_name

    def collect(self) -> Iterator[Any]:
        try:
            v = self.view()
        except Exception:  # a scrape must not fail because incidents did
            logger.exception("aphrodite-sla: reading incident metrics failed")
            return
        m = self.model_name
        open_ = GaugeMetricFamily("incidents_open", "Open incidents by severity", labels=["model_name", "severity"])
        for sev in IncidentSeverity:
            open_.add_metric([m, sev.value], v.open_by_severity.get(sev.value, 0))
        yield open_
        status = GaugeMetricFamily("incidents", "Incidents in the store by status", labels=["model_name", "status"])
        for st in IncidentStatus:
            status.add_metric([m, st.value], v.by_status.get(st.value, 0))
        yield status
        for name, value, doc in (("incident_mttd_seconds", v.mttd_minutes, "Mean time to detect (first bad sample to detection), 30 days"),
                                 ("incident_mtta_seconds", v.mtta_minutes, "Mean time to acknowledge, 30 days"),
                                 ("incident_mttr_seconds", v.mttr_minutes, "Mean time to resolve (first bad sample to resolution), 30 days")):
            g = GaugeMetricFamily(name, doc, labels=["model_name"])
            if value is not None:
                g.add_metric([m], value * 60.0)
            yield g
        esc = CounterMetricFamily("incident_escalations", "Incident escalations by level (this process)", labels=["model_name", "level"])
        for level in range(1, v.levels + 1):
            esc.add_metric([m, f"L{level}"], v.escalations_by_level.get(level, 0))
        yield esc
        dropped = CounterMetricFamily("incident_rule_events_dropped", "Detection-rule events refused or pushed out by the bound",
                                      labels=["model_name"])
        dropped.add_metric([m], v.rule_events_dropped)
        yield dropped
