"""Prometheus families of notifications, read from the notifier's published ``NotificationStats``
(rebuilt by the dispatcher thread; a scrape never queries the outbox's database).

``notifications_sent_total{receiver}``, ``notifications_failed_total{receiver}`` (given up),
``notifications_pending{receiver}``, ``notification_attempts_failed_total{receiver}`` (each
failed attempt, retried or not), ``notification_resends_total{receiver}`` (Alertmanager
re-sends of firing alerts) and ``notifications_dropped_total{reason}`` (changes not enqueued).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aphrodite_sla.notify.stats import NotificationStats

logger = logging.getLogger(__name__)


class NotificationCollector(Collector):
    def __init__(self, stats: Callable[[], NotificationStats], model_name: str = "") -> None:
        self.stats = stats
        self.model_name = model_name

    def collect(self) -> Iterator[Any]:
        try:
            s = self.stats()
        except Exception:  # a scrape must not fail because notifications did
            logger.exception("aphrodite-sla: reading notification metrics failed")
            return
        m = self.model_name
        labels = ["model_name", "receiver"]
        sent = CounterMetricFamily("notifications_sent", "Notifications delivered, by receiver", labels=labels)
        failed = CounterMetricFamily("notifications_failed", "Notifications given up on (attempts exhausted or refused)", labels=labels)
        pending = GaugeMetricFamily("notifications_pending", "Notifications waiting in the outbox for an attempt", labels=labels)
        attempts = CounterMetricFamily("notification_attempts_failed", "Delivery attempts that failed", labels=labels)
        resends = CounterMetricFamily("notification_resends", "Firing alerts re-sent to Alertmanager", labels=labels)
        for name, r in sorted(s.receivers.items()):
            sent.add_metric([m, name], r.sent)
            failed.add_metric([m, name], r.failed)
            pending.add_metric([m, name], r.pending)
            attempts.add_metric([m, name], r.failed_attempts)
            resends.add_metric([m, name], r.resends)
        dropped = CounterMetricFamily("notifications_dropped", "Incident changes not enqueued, by reason", labels=["model_name", "reason"])
        for reason, count in sorted(s.dropped.items()):
            dropped.add_metric([m, reason], count)
        yield from (sent, failed, pending, attempts, resends, dropped)
