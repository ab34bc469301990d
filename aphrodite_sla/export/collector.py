"""A prometheus_client Collector over the SLA manager's state, read at scrape time.

Why a custom collector: nothing is done per recorded sample (the hot path stays a copy), and every
value is the manager's current one. Names never use the engines' ``vllm:`` / ``aphrodite:``
prefixes (vLLM's own logger deletes collectors with those). Each family is built in its own
guarded step, so one failing part never breaks the whole scrape.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from aphrodite_sla.sla.manager import BURN_RATE_WINDOWS_S, SLAManager

logger = logging.getLogger(__name__)

# Raw series exported as exact window quantiles (seconds-free units as recorded: ms).
QUANTILE_SERIES = ("request_latency_ms", "ttft_ms", "itl_ms", "tpot_ms", "queue_time_ms")
QUANTILES = (0.5, 0.95, 0.99)
_QUANTILE_LABELS = {0.5: "0.5", 0.95: "0.95", 0.99: "0.99"}
QUANTILE_WINDOW_S = 300.0
GOODPUT_WINDOW_S = 60.0


class SLACollector(Collector):
    """Exports ``sla_*`` families for one manager; ``model_name`` becomes a constant label."""

    def __init__(
        self, manager: SLAManager, *, model_name: str = "", stall: Any | None = None,
        extra: Callable[[], Iterator[Metric]] | None = None,
    ) -> None:
        for series in QUANTILE_SERIES:  # computed by the evaluator, read here at scrape time
            manager.watch_quantiles(series, QUANTILES, QUANTILE_WINDOW_S)
        self.manager = manager
        self.model_name = model_name
        self.stall = stall
        self.extra = extra
        self.scrape_errors = 0

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families are only known at scrape time

    def collect(self) -> Iterator[Metric]:
        for part in (
            self._sla_families, self._budget_families, self._quantile_families, self._engine_families,
            self._store_families, self._evaluator_families,
        ):
            try:
                yield from part()
            except Exception:  # a failing component must not break the scrape
                self.scrape_errors += 1
                logger.exception("aphrodite-sla: collector part %s failed", part.__name__)
        if self.extra is not None:
            try:
                yield from self.extra()
            except Exception:
                self.scrape_errors += 1
                logger.exception("aphrodite-sla: extra collector failed")
        errors = GaugeMetricFamily("sla_scrape_errors", "Collector parts that failed since start", labels=["model_name"])
        errors.add_metric([self.model_name], self.scrape_errors)
        yield errors

    def _sla_families(self) -> Iterator[Metric]:
        m = self.manager
        labels = ["model_name", "sla"]
        compliance = GaugeMetricFamily("sla_compliance_rate", "Percent of the SLA window's evaluation points within bounds", labels=labels)
        value = GaugeMetricFamily("sla_value", "The SLA statistic over its window (unit of the series)", labels=labels + ["statistic"])
        bound = GaugeMetricFamily("sla_bound", "Value beyond which the SLA is breached: target x (1 +/- tolerance)", labels=labels)
        target = GaugeMetricFamily("sla_target", "The SLA's target value", labels=labels)
        active = GaugeMetricFamily("sla_violation_active", "1 while a sustained violation is active", labels=labels + ["severity"])
        anomaly = GaugeMetricFamily("sla_anomaly_score", "Streaming anomaly score of the newest interval, 0..1", labels=labels)
        ratio = GaugeMetricFamily("sla_sustained_ratio", "Fraction of the window's evaluation points beyond the bound", labels=labels)
        regression = GaugeMetricFamily("sla_regression_percent", "Median change of the last window vs the one before (%)", labels=labels)
        for name, st in m.get_status().items():
            key = [self.model_name, name]
            if st.compliance_percent is not None:
                compliance.add_metric(key, st.compliance_percent)
            if st.value is not None:
                value.add_metric(key + [st.statistic.value], st.value)
            bound.add_metric(key, st.bound)
            th = m.thresholds.get(name)
            if th is not None:
                target.add_metric(key, th.target_value)
            active.add_metric(key + [st.severity.value if st.severity else "none"], 1.0 if st.violated else 0.0)
            if st.anomaly_score is not None:
                anomaly.add_metric(key, st.anomaly_score)
            ratio.add_metric(key, st.sustained_ratio)
            if st.regression is not None and st.regression.percent_change == st.regression.percent_change:
                regression.add_metric(key, st.regression.percent_change)
        violations = CounterMetricFamily("sla_violations", "SLA violations (new or escalated) by severity", labels=["model_name", "metric", "severity"])
        for (name, severity), n in sorted(m.violation_counts.items()):
            violations.add_metric([self.model_name, name, severity], n)
        breaches = CounterMetricFamily("sla_threshold_breaches", "Evaluation points at which the SLA statistic was beyond its bound", labels=["model_name", "metric"])
        for name, n in sorted(m.breach_counts.items()):
            breaches.add_metric([self.model_name, name], n)
        yield from (compliance, value, bound, target, active, anomaly, ratio, regression, violations, breaches)

    def _budget_families(self) -> Iterator[Metric]:
        m = self.manager
        events = CounterMetricFamily(
            "sla_events", "Samples classified against an SLA bound (for error budgets and burn-rate rules)",
            labels=["model_name", "sla", "outcome"],
        )
        objective = GaugeMetricFamily("sla_objective_ratio", "Fraction of samples that must be within the bound", labels=["model_name", "sla"])
        burn = GaugeMetricFamily("sla_burn_rate", "Error-budget burn rate of this replica (bad fraction / (1 - objective))", labels=["model_name", "sla", "window"])
        for name, (good, bad) in sorted(m.event_counts().items()):
            events.add_metric([self.model_name, name, "good"], good)
            events.add_metric([self.model_name, name, "bad"], bad)
            objective.add_metric([self.model_name, name], m.thresholds[name].objective or 0.0)
            for window_s in BURN_RATE_WINDOWS_S:
                rate = m.burn_rate(name, window_s)
                if rate is not None:
                    burn.add_metric([self.model_name, name, f"{window_s / 60:.0f}m"], rate)
        yield from (events, objective, burn)

    def _engine_families(self) -> Iterator[Metric]:
        m = self.manager
        goodput = GaugeMetricFamily(
            "sla_goodput_requests_per_second",
            "Requests per second over the last minute that met both the TTFT and the TPOT objectives (DistServe goodput)",
            labels=["model_name"],
        )
        if m.store.buffer("goodput_requests") is not None:
            rate, _ = m.window_statistic("goodput_requests", "rate", GOODPUT_WINDOW_S)
            goodput.add_metric([self.model_name], rate if rate == rate else 0.0)
        yield goodput
        if self.stall is not None:
            stalled = GaugeMetricFamily("sla_engine_stalled", "1 while the engine makes no progress with requests in flight", labels=["model_name"])
            stalled.add_metric([self.model_name], 1.0 if getattr(self.stall.state, "value", "") == "stalled" else 0.0)
            without = GaugeMetricFamily("sla_engine_seconds_without_progress", "Seconds since the engine last made progress while busy", labels=["model_name"])
            without.add_metric([self.model_name], float(self.stall.stalled_for_s))
            yield from (stalled, without)

    def _quantile_families(self) -> Iterator[Metric]:
        # The label is "q", not "quantile": Prometheus reserves that one for summaries.
        fam = GaugeMetricFamily(
            "sla_window_quantile", "Exact quantile over the last 5 minutes of raw samples (ms), as of the last evaluation",
            labels=["model_name", "metric", "q"],
        )
        for series, (_at, n, values) in sorted(self.manager.watched_quantiles().items()):
            if n <= 0:
                continue
            for q, v in sorted(values.items()):
                if v == v:
                    fam.add_metric([self.model_name, series, _QUANTILE_LABELS.get(q, repr(q))], v)
        yield fam

    def _store_families(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily("sla_dropped_samples", "Samples refused by the store, by metric and reason", labels=["model_name", "metric", "reason"])
        for (metric, reason), n in sorted(self.manager.store.dropped().items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            dropped.add_metric([self.model_name, metric, reason.value], n)
        nbytes = GaugeMetricFamily("sla_store_bytes", "Bytes held by the ring buffers", labels=["model_name"])
        nbytes.add_metric([self.model_name], self.manager.store.nbytes)
        yield from (dropped, nbytes)

    def _evaluator_families(self) -> Iterator[Metric]:
        stats = self.manager.evaluator_stats
        evals = CounterMetricFamily("sla_evaluations", "Evaluations run", labels=["model_name"])
        evals.add_metric([self.model_name], stats.evaluations)
        duration = GaugeMetricFamily("sla_evaluation_duration_seconds", "Duration of the last evaluation", labels=["model_name"])
        duration.add_metric([self.model_name], stats.last_duration_s)
        errors = CounterMetricFamily("sla_callback_errors", "Callbacks and hooks that raised", labels=["model_name"])
        errors.add_metric([self.model_name], stats.callback_errors)
        yield from (evals, duration, errors)
