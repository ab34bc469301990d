"""Prometheus families of root-cause analysis (the seed's RCA metrics), read from one
``RCAMetricsView`` per scrape.

``rca_analyses_total{cause,category}``, ``rca_duration_seconds`` (histogram),
``rca_correlations_found`` (significant correlations in the latest analysis) and
``rca_correlations_significant_total``, ``rca_confidence`` (histogram of the primary cause's calibrated
confidence), ``rca_recommendations_total{action}``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from aphrodite_sla.rca.stats import RCAMetricsView

logger = logging.getLogger(__name__)


class RCACollector(Collector):
    def __init__(self, view: Callable[[], RCAMetricsView], model_name: str = "") -> None:
        self.view = view
        self.model_name = model_name

    def collect(self) -> Iterator[Any]:
        try:
            v = self.view()
        except Exception:  # a scrape must not fail because RCA did
            logger.exception("aphrodite-sla: reading RCA metrics failed")
            return
        m = self.model_name
        analyses = CounterMetricFamily("rca_analyses", "Root-cause analyses by primary cause and category",
                                       labels=["model_name", "cause", "category"])
        for (cause, category), n in sorted(v.analyses.items()):
            analyses.add_metric([m, cause, category], n)
        yield analyses
        duration = HistogramMetricFamily("rca_duration_seconds", "Duration of root-cause analyses", labels=["model_name"])
        duration.add_metric([m], [(_le(b), c) for b, c in v.duration_buckets] or [("+Inf", 0)], v.duration_sum_s)
        yield duration
        confidence = HistogramMetricFamily("rca_confidence", "Calibrated confidence of the primary cause", labels=["model_name"])
        confidence.add_metric([m], [(_le(b), c) for b, c in v.confidence_buckets] or [("+Inf", 0)], v.confidence_sum)
        yield confidence
        found = GaugeMetricFamily("rca_correlations_found", "Significant correlations (BH-corrected) in the latest analysis",
                                  labels=["model_name"])
        found.add_metric([m], v.correlations_found)
        yield found
        total = CounterMetricFamily("rca_correlations_significant", "Significant correlations found over all analyses",
                                    labels=["model_name"])
        total.add_metric([m], v.correlations_found_total)
        yield total
        recs = CounterMetricFamily("rca_recommendations", "Recommended recovery actions", labels=["model_name", "action"])
        for action, n in sorted(v.recommendations.items()):
            recs.add_metric([m, action], n)
        yield recs


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
