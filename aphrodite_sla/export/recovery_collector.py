"""Prometheus families of recovery (the seed's recovery metrics), read from one
``RecoveryMetricsView`` per scrape.

``recovery_executions_total{procedure,status}``, ``recovery_duration_seconds`` (histogram),
``recovery_active``, ``recovery_success_rate`` (percent), ``recovery_approvals_pending``,
``recovery_escalations_total``, ``recovery_desired_replicas`` (an autoscaler such as KEDA or an
HPA on external metrics reads it), ``circuit_breaker_state{service}`` (0 closed, 1 half-open,
2 open, 3 forced open, 4 disabled), ``circuit_breaker_rejected_total{service}``,
``degradation_level`` (0 none … 4 emergency) and ``monitoring_mode{mode}`` (1 for the current one).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from aphrodite_sla.recovery.metrics_view import RecoveryMetricsView

logger = logging.getLogger(__name__)

MONITORING_MODES = ("normal", "high_alert", "emergency", "maintenance")


class RecoveryCollector(Collector):
    """Reads ``view()`` (the recovery system's ``metrics_view``) on each scrape."""

    def __init__(self, view: Callable[[], RecoveryMetricsView], model_name: str = "") -> None:
        self.view = view
        self.model_name = model_name

    def collect(self) -> Iterator[Any]:
        try:
            v = self.view()
        except Exception:  # a scrape must not fail because recovery did
            logger.exception("aphrodite-sla: reading recovery metrics failed")
            return
        m = self.model_name
        executions = CounterMetricFamily("recovery_executions", "Recovery executions by procedure and final status",
                                         labels=["model_name", "procedure", "status"])
        for (procedure, status), count in sorted(v.executions.items()):
            executions.add_metric([m, procedure, status], count)
        yield executions
        duration = HistogramMetricFamily("recovery_duration_seconds", "Duration of finished recovery executions", labels=["model_name"])
        if v.duration_buckets:
            duration.add_metric([m], [(_le(b), c) for b, c in v.duration_buckets], v.duration_sum_s)
        yield duration
        yield _gauge("recovery_active", "Recovery executions running or awaiting approval", m, v.active)
        rate = GaugeMetricFamily("recovery_success_rate", "Percent of finished recovery executions that were verified", labels=["model_name"])
        if v.success_rate_percent is not None:
            rate.add_metric([m], v.success_rate_percent)
        yield rate
        yield _gauge("recovery_approvals_pending", "Risky recovery actions waiting for a person", m, v.approvals_pending)
        escalations = CounterMetricFamily("recovery_escalations", "Automated responses that kept failing and were escalated",
                                          labels=["model_name"])
        escalations.add_metric([m], v.escalations)
        yield escalations
        decisions = CounterMetricFamily("recovery_root_cause_decisions", "RCA root causes recovery heard, by cause and whether it switched "
                                        "to the procedure the cause recommends", labels=["model_name", "cause", "acted"])
        for (cause, acted), count in sorted(v.root_cause_decisions.items()):
            decisions.add_metric([m, cause, "true" if acted else "false"], count)
        yield decisions
        yield _gauge("recovery_desired_replicas", "Replicas recovery asks an autoscaler for", m, v.desired_replicas)
        state = GaugeMetricFamily("circuit_breaker_state", "0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled",
                                  labels=["model_name", "service"])
        rejected = CounterMetricFamily("circuit_breaker_rejected", "Calls a circuit breaker refused", labels=["model_name", "service"])
        for name, b in sorted(v.breakers.items()):
            state.add_metric([m, name], b.code)
            rejected.add_metric([m, name], b.rejected)
        yield state
        yield rejected
        level = GaugeMetricFamily("degradation_level", "Graceful degradation: 0 none, 1 minimal, 2 moderate, 3 severe, 4 emergency",
                                  labels=["model_name", "level"])
        level.add_metric([m, v.degradation_name], v.degradation_level)
        yield level
        mode = GaugeMetricFamily("monitoring_mode", "1 for the production monitor's current mode", labels=["model_name", "mode"])
        for name in MONITORING_MODES:
            mode.add_metric([m, name], 1.0 if name == v.monitoring_mode else 0.0)
        yield mode


def _gauge(name: str, doc: str, model_name: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["model_name"])
    g.add_metric([model_name], value)
    return g


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
