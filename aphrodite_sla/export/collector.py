"""A prometheus_client Collector over the latest ``MonitorSnapshot``, read at scrape time.

Why a custom collector: nothing is done per recorded sample (the hot path stays a copy), and a
scrape only reads the snapshot the evaluator published: no kernel, no lock against the evaluator,
nothing computed on the engine's event loop. Names never use the engines' ``vllm:`` /
``aphrodite:`` prefixes (vLLM's own logger deletes collectors with those). Label names: ``sla``
for an SLA, ``series`` for a recorded series. Each part is built in its own guarded step, so one
failing part never breaks the whole scrape (the failure is counted as a ``collector`` error).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from aphrodite_sla.integrations.engine_stats import GOODPUT_SERIES, GOODPUT_WINDOW_S
from aphrodite_sla.integrations.stall import STALL_SLA
from aphrodite_sla.self_metrics import Component, SelfMetrics
from aphrodite_sla.snapshot import MonitorSnapshot

SnapshotSource = Callable[[], MonitorSnapshot]

# Raw series exported as exact window quantiles (units as recorded: ms).
QUANTILE_SERIES = ("request_latency_ms", "ttft_ms", "itl_ms", "tpot_ms", "queue_time_ms")
QUANTILES = (0.5, 0.95, 0.99)
_QUANTILE_LABELS = {0.5: "0.5", 0.95: "0.95", 0.99: "0.99"}
QUANTILE_WINDOW_S = 300.0


def watch_exported_windows(manager: object) -> None:
    """Ask the evaluator for what the collector exports: exact quantiles of QUANTILE_SERIES over
    5 minutes and the goodput rate over a minute (computed every evaluation, read at scrape)."""
    watch = manager.watch_window  # type: ignore[attr-defined]
    for series in QUANTILE_SERIES:
        watch(series, QUANTILE_WINDOW_S, quantiles=QUANTILES)
    watch(GOODPUT_SERIES, GOODPUT_WINDOW_S, rate=True)


class SLACollector(Collector):
    """Exports ``sla_*`` families from a snapshot source; ``model_name`` becomes a constant label."""

    def __init__(self, snapshots: SnapshotSource, *, model_name: str = "", self_metrics: SelfMetrics | None = None) -> None:
        if not callable(snapshots):
            raise TypeError(f"SLACollector: expected a snapshot source (e.g. manager.snapshot), got {type(snapshots).__name__}")
        self.snapshots = snapshots
        self.model_name = model_name
        self.self_metrics = self_metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families are only known at scrape time

    def collect(self) -> Iterator[Metric]:
        yield from self.families(self.snapshots())

    def families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        """Every family for one snapshot (the multiprocess mirror renders published ones)."""
        for part in (self._sla_families, self._budget_families, self._page_families, self._window_families,
                     self._engine_families, self._monitor_families):
            try:
                yield from part(snap)
            except Exception as exc:  # a failing part must not break the scrape
                if self.self_metrics is not None:
                    self.self_metrics.error(Component.COLLECTOR, f"{part.__name__}: {type(exc).__name__}: {exc}", exc_info=True)

    def _sla_families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        labels = ["model_name", "sla"]
        compliance = GaugeMetricFamily("sla_compliance_rate", "Percent of the SLA window's evaluation points within bounds", labels=labels)
        value = GaugeMetricFamily("sla_value", "The SLA statistic over its window (unit of the series)", labels=labels + ["statistic"])
        bound = GaugeMetricFamily("sla_bound", "Value beyond which the SLA is breached: target x (1 +/- tolerance)", labels=labels)
        target = GaugeMetricFamily("sla_target", "The SLA's target value", labels=labels)
        active = GaugeMetricFamily("sla_violation_active", "1 while a violation is active", labels=labels + ["severity"])
        anomaly = GaugeMetricFamily("sla_anomaly_score", "Streaming anomaly score of the newest interval, 0..1", labels=labels)
        ratio = GaugeMetricFamily("sla_sustained_ratio", "Fraction of the window's evaluation points beyond the bound", labels=labels)
        regression = GaugeMetricFamily("sla_regression_percent", "Median change of the last window vs the one before (%)", labels=labels)
        for name, st in snap.statuses.items():
            key = [self.model_name, name]
            if st.compliance_percent is not None:
                compliance.add_metric(key, st.compliance_percent)
            if st.value is not None:
                value.add_metric(key + [st.statistic.value], st.value)
            bound.add_metric(key, st.bound)
            th = snap.thresholds.get(name)
            if th is not None:
                target.add_metric(key, th.target_value)
            active.add_metric(key + [st.severity.value if st.severity else "none"], 1.0 if st.violated else 0.0)
            if st.anomaly_score is not None:
                anomaly.add_metric(key, st.anomaly_score)
            ratio.add_metric(key, st.sustained_ratio)
            if st.regression is not None and st.regression.percent_change == st.regression.percent_change:
                regression.add_metric(key, st.regression.percent_change)
        violations = CounterMetricFamily(
            "sla_violations", "SLA violations raised or escalated, by severity", labels=["model_name", "sla", "severity"]
        )
        for (name, severity), n in sorted(snap.violation_counts.items()):
            violations.add_metric([self.model_name, name, severity], n)
        breaches = CounterMetricFamily(
            "sla_threshold_breaches", "Evaluation points at which the SLA statistic was beyond its bound", labels=["model_name", "sla"]
        )
        for name, n in sorted(snap.breach_counts.items()):
            breaches.add_metric([self.model_name, name], n)
        yield from (compliance, value, bound, target, active, anomaly, ratio, regression, violations, breaches)

    def _budget_families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "sla_events", "Samples classified against an SLA bound (for error budgets and burn-rate rules)",
            labels=["model_name", "sla", "outcome"],
        )
        objective = GaugeMetricFamily("sla_objective_ratio", "Fraction of samples that must be within the bound", labels=["model_name", "sla"])
        burn = GaugeMetricFamily(
            "sla_burn_rate", "Error-budget burn rate of this replica (bad fraction / (1 - objective))", labels=["model_name", "sla", "window"]
        )
        for name, budget in sorted(snap.budgets.items()):
            events.add_metric([self.model_name, name, "good"], budget.good)
            events.add_metric([self.model_name, name, "bad"], budget.bad)
            objective.add_metric([self.model_name, name], budget.objective)
            for window, rate in budget.burn_rates.items():
                if rate is not None:
                    burn.add_metric([self.model_name, name, window], rate)
        yield from (events, objective, burn)

    def _page_families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        labels = ["model_name", "sla", "rule"]
        active = GaugeMetricFamily("sla_page_active", "1 while a fast page rule (or the stall page) fires for the SLA", labels=labels)
        total = CounterMetricFamily("sla_pages", "Pages raised by the fast page rules and the stall detector", labels=labels)
        for (sla, rule), on in sorted(snap.page_states.items()):
            active.add_metric([self.model_name, sla, rule], 1.0 if on else 0.0)
        for (sla, rule), n in sorted(snap.page_counts.items()):
            total.add_metric([self.model_name, sla, rule], n)
        if snap.stall is not None:
            active.add_metric([self.model_name, STALL_SLA, "stall"], 1.0 if snap.stall.stalled else 0.0)
            total.add_metric([self.model_name, STALL_SLA, "stall"], snap.stall.stalls_total)
        yield from (active, total)

    def _window_families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        # The label is "q", not "quantile": Prometheus reserves that one for summaries.
        fam = GaugeMetricFamily(
            "sla_window_quantile", "Exact quantile over the last 5 minutes of raw samples (ms), as of the last evaluation",
            labels=["model_name", "series", "q"],
        )
        for (series, window_s), w in sorted(snap.windows.items()):
            if window_s != QUANTILE_WINDOW_S or w.samples <= 0:
                continue
            for q, v in sorted(w.quantiles.items()):
                if q in _QUANTILE_LABELS and v == v:
                    fam.add_metric([self.model_name, series, _QUANTILE_LABELS[q]], v)
        yield fam
        coverage = GaugeMetricFamily(
            "sla_window_coverage_ratio",
            "Share of each evaluated window its ring still holds (below 1: samples inside the window were overwritten)",
            labels=["model_name", "series", "window"],
        )
        for (series, window_s), ratio in sorted(snap.coverage.items()):
            coverage.add_metric([self.model_name, series, f"{window_s:g}s"], ratio)
        yield coverage

    def _engine_families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        goodput = GaugeMetricFamily(
            "sla_goodput_requests_per_second",
            "Requests per second over the last minute that met both the TTFT and the TPOT objectives (DistServe goodput)",
            labels=["model_name"],
        )
        window = snap.window(GOODPUT_SERIES, GOODPUT_WINDOW_S)
        if window is not None:
            goodput.add_metric([self.model_name], window.rate if window.rate == window.rate else 0.0)
        yield goodput
        if snap.stall is not None:
            stalled = GaugeMetricFamily(
                "sla_engine_stalled", "1 while the engine makes no progress with requests in flight", labels=["model_name"]
            )
            stalled.add_metric([self.model_name], 1.0 if snap.stall.stalled else 0.0)
            without = GaugeMetricFamily(
                "sla_engine_seconds_without_progress", "Seconds the engine has gone without progress while busy", labels=["model_name"]
            )
            without.add_metric([self.model_name], snap.stall.seconds_without_progress)
            yield from (stalled, without)

    def _monitor_families(self, snap: MonitorSnapshot) -> Iterator[Metric]:
        health = snap.health
        m = [self.model_name]
        errors = CounterMetricFamily(
            "sla_monitor_errors", "Failures of the monitor's own components since start", labels=["model_name", "component"]
        )
        for component, n in sorted(health.errors.items()):
            errors.add_metric(m + [component], n)
        dropped_events = CounterMetricFamily(
            "sla_dropped_events", "Events dropped because a subscriber's queue was full", labels=["model_name", "subscriber"]
        )
        for subscriber, n in sorted(health.dropped_events.items()):
            dropped_events.add_metric(m + [subscriber], n)
        dropped = CounterMetricFamily(
            "sla_dropped_samples", "Samples refused by the store, by series and reason", labels=["model_name", "series", "reason"]
        )
        for (series, reason), n in sorted(health.dropped_samples.items()):
            dropped.add_metric(m + [series, reason], n)
        thinned = CounterMetricFamily(
            "sla_thinned_samples",
            "Arrivals of a fast distribution series not kept (a uniform share is kept so its window keeps its length)",
            labels=["model_name", "series"],
        )
        for series, n in sorted(health.thinned_samples.items()):
            thinned.add_metric(m + [series], n)
        failing = GaugeMetricFamily(
            "sla_evaluation_failing", "1 while the latest evaluation attempt failed (the SLA figures are stale)", labels=["model_name"]
        )
        failing.add_metric(m, 1.0 if health.evaluation_failing else 0.0)
        nbytes = GaugeMetricFamily("sla_store_bytes", "Bytes held by the ring buffers", labels=["model_name"])
        nbytes.add_metric(m, health.store_bytes)
        evals = CounterMetricFamily("sla_evaluations", "Evaluations run", labels=["model_name"])
        evals.add_metric(m, health.evaluations)
        running = GaugeMetricFamily("sla_evaluator_running", "1 while the background evaluator thread runs", labels=["model_name"])
        running.add_metric(m, 1.0 if health.evaluator_running else 0.0)
        duration = HistogramMetricFamily("sla_evaluation_duration_seconds", "Duration of evaluations", labels=["model_name"])
        durations = health.durations
        if durations.buckets:
            duration.add_metric(m, [(_le(b), n) for b, n in durations.buckets], durations.total_s)
        yield from (errors, dropped_events, dropped, thinned, failing, nbytes, evals, running, duration)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
