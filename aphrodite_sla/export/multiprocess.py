"""Our families under prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set; vLLM
sets it when it runs more than one API server).

Why a mirror: in that mode the engine's ``/metrics`` is a fresh registry with a
``MultiProcessCollector`` that reads only the metric files processes write; a custom collector
(ours) registered in the default registry is never asked. So after each evaluation the mirror
copies what our collector would return into multiprocess-mode gauges (``liveall``: one series per
live process, labelled ``pid``, so replicas of the API server are never merged wrongly). A label
set that disappears (a violation's old severity) is set to NaN, which no alert matches.
"""
from __future__ import annotations

import logging
import math
import os

from prometheus_client import Gauge

from aphrodite_sla.export.collector import SLACollector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class MultiprocessMirror:
    """Publishes ``collector``'s samples as multiprocess gauges; ``publish()`` runs off the hot
    path (the manager's pre-evaluation hook), never per recorded sample."""

    def __init__(self, collector: SLACollector) -> None:
        self.collector = collector
        self._gauges: dict[str, Gauge] = {}
        self._live: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.errors = 0

    def publish(self) -> int:
        """Copy the current samples; returns how many were written."""
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        written = 0
        for family in self.collector.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted(sample.labels.items()))
                try:
                    gauge = self._gauge(sample.name, family.documentation, tuple(k for k, _ in labels))
                    child = gauge.labels(**dict(labels)) if labels else gauge
                    child.set(sample.value)
                except (ValueError, TypeError):  # a label set that changed shape: skip, count
                    self.errors += 1
                    continue
                seen.add((sample.name, labels))
                written += 1
        for name, labels in self._live - seen:
            gauge = self._gauges[name]
            (gauge.labels(**dict(labels)) if labels else gauge).set(math.nan)
        self._live = seen
        return written

    def _gauge(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> Gauge:
        gauge = self._gauges.get(name)
        if gauge is None:
            # registry=None: multiprocess values live in files the engine's collector reads
            gauge = Gauge(name, documentation or name, labelnames=labelnames, registry=None, multiprocess_mode="liveall")
            self._gauges[name] = gauge
        return gauge
