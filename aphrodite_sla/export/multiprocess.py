"""Our families under prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set; vLLM
sets it when it runs more than one API server).

Why a mirror: in that mode the engine's ``/metrics`` is a fresh registry with a
``MultiProcessCollector`` that reads only the metric files processes write; a custom collector
(ours) registered in the default registry is never asked. So the mirror subscribes to
``SnapshotPublished`` and, after each evaluation, copies what our collector renders for that
snapshot into multiprocess-mode gauges (``liveall``: one series per live process, labelled
``pid``, so replicas of the API server are never merged wrongly). A label set that disappears (a
violation's old severity) is set to NaN, which no alert matches.
"""
from __future__ import annotations

import logging
import math
import os

from prometheus_client import Gauge

from aphrodite_sla.events import SnapshotPublished
from aphrodite_sla.export.collector import SLACollector
from aphrodite_sla.self_metrics import Component, SelfMetrics
from aphrodite_sla.snapshot import MonitorSnapshot

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_this_process_dead() -> None:
    """Remove this process's live-gauge files so the engine's ``/metrics`` stops serving its series
    (registered with ``atexit``). A process killed without running it leaves them behind: the
    parent that reaps it should call ``prometheus_client.multiprocess.mark_process_dead(pid)``
    (gunicorn: in its ``child_exit`` hook)."""
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(os.getpid())
    except Exception:  # never fail an interpreter's exit
        logger.debug("aphrodite-sla: mark_process_dead failed", exc_info=True)


class MultiprocessMirror:
    """Publishes the collector's samples of each published snapshot as multiprocess gauges, on
    its subscription's thread (never per recorded sample, never on the engine's loop)."""

    def __init__(self, collector: SLACollector, self_metrics: SelfMetrics | None = None) -> None:
        self.collector = collector
        self.self_metrics = self_metrics
        self._gauges: dict[str, Gauge] = {}
        self._live: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.errors = 0

    def on_event(self, event: SnapshotPublished) -> None:
        self.publish(event.snapshot)

    def publish(self, snapshot: MonitorSnapshot) -> int:
        """Copy the samples of ``snapshot``; returns how many were written."""
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        written = 0
        for family in self.collector.families(snapshot):
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted(sample.labels.items()))
                try:
                    gauge = self._gauge(sample.name, family.documentation, tuple(k for k, _ in labels))
                    child = gauge.labels(**dict(labels)) if labels else gauge
                    child.set(sample.value)
                except (ValueError, TypeError) as exc:  # a label set that changed shape: skip, count
                    self.errors += 1
                    if self.self_metrics is not None:
                        self.self_metrics.error(Component.MIRROR, f"{sample.name}: {exc}")
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
