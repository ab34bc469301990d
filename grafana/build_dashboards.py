"""Generates grafana/sla-compliance.json and grafana/engine-overview.json (Grafana import format,
schemaVersion 39): ``python grafana/build_dashboards.py`` rewrites them; ``--check`` exits 1 when
the committed files differ from what this script produces (tests/test_dashboards.py checks that).

Why a generator: two dashboards with ~35 panels share one datasource input, one pair of template
variables, unit and threshold conventions; writing them out by hand drifts. Standard library only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
GRAFANA_VERSION = "10.4.0"
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
SEL = 'model_name=~"$model_name", instance=~"$instance"'
MODEL_SEL = 'model_name=~"$model_name"'
# The histogram estimate uses the same 5-minute window as the exact quantiles (QUANTILE_WINDOW_S).
HIST_WINDOW = "5m"
# Label of sla_window_quantile that holds the quantile level ("0.95"). promtool's lint reserves
# `quantile` for summaries: when the collector renames it, change it here and regenerate.
QUANTILE_LABEL = "q"

PANEL_NAMES = {
    "timeseries": "Time series",
    "stat": "Stat",
    "state-timeline": "State timeline",
    "heatmap": "Heatmap",
    "bargauge": "Bar gauge",
}


# --------------------------------------------------------------------------------- building blocks
def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    """Absolute thresholds: the first step is the base colour (value None)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


GOOD_HIGH_PERCENT = thresholds(("red", None), ("orange", 95), ("green", 99))
NEUTRAL = thresholds(("green", None))


def target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def targets(*pairs: tuple[str, str], instant: bool = False) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i), instant=instant) for i, (expr, legend) in enumerate(pairs)]


def hist_quantile(q: str, metric: str) -> str:
    """vLLM's own estimate: histogram_quantile over its bucket counters, in ms."""
    return (
        f"histogram_quantile({q}, sum by (le, instance) "
        f"(rate({metric}_bucket{{{SEL}}}[{HIST_WINDOW}]))) * 1000"
    )


def exact_quantile(metric: str, q: str) -> str:
    return f'sla_window_quantile{{{SEL}, series="{metric}", {QUANTILE_LABEL}="{q}"}}'


def _panel(kind: str, title: str, description: str, tgts: list[dict[str, Any]], w: int, h: int,
           defaults: dict[str, Any], options: dict[str, Any], overrides: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
        "_size": (w, h),
    }


def _legend(calcs: list[str] | None = None) -> dict[str, Any]:
    return {"calcs": calcs if calcs is not None else ["lastNotNull", "max"], "displayMode": "table",
            "placement": "bottom", "showLegend": True}


def timeseries(title: str, description: str, tgts: list[dict[str, Any]], unit: str, *, w: int = 12, h: int = 8,
               th: dict[str, Any] | None = None, min_: float | None = None, max_: float | None = None,
               bars: bool = False, threshold_lines: bool = True, overrides: list[dict[str, Any]] | None = None,
               decimals: int | None = None) -> dict[str, Any]:
    custom = {
        "axisBorderShow": False, "axisCenteredZero": False, "axisColorMode": "text", "axisLabel": "",
        "axisPlacement": "auto", "barAlignment": 0, "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10, "gradientMode": "none",
        "hideFrom": {"legend": False, "tooltip": False, "viz": False}, "insertNulls": False,
        "lineInterpolation": "linear", "lineWidth": 1, "pointSize": 4, "scaleDistribution": {"type": "linear"},
        "showPoints": "never", "spanNulls": False, "stacking": {"group": "A", "mode": "normal" if bars else "none"},
        "thresholdsStyle": {"mode": "line+area" if threshold_lines and th is not None else "off"},
    }
    defaults: dict[str, Any] = {
        "color": {"mode": "palette-classic"}, "custom": custom, "mappings": [],
        "thresholds": th or NEUTRAL, "unit": unit,
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {"legend": _legend(), "tooltip": {"mode": "multi", "sort": "desc"}}
    return _panel("timeseries", title, description, tgts, w, h, defaults, options, overrides)


def stat(title: str, description: str, tgts: list[dict[str, Any]], unit: str, *, w: int = 6, h: int = 5,
         th: dict[str, Any] | None = None, mappings: list[dict[str, Any]] | None = None, decimals: int | None = None,
         min_: float | None = None, max_: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"color": {"mode": "thresholds"}, "mappings": mappings or [], "thresholds": th or NEUTRAL, "unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    options = {
        "colorMode": "background", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False, "textMode": "value_and_name", "wideLayout": True,
    }
    return _panel("stat", title, description, tgts, w, h, defaults, options)


def bargauge(title: str, description: str, tgts: list[dict[str, Any]], unit: str, *, w: int = 12, h: int = 8,
             th: dict[str, Any] | None = None, min_: float | None = None, max_: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"color": {"mode": "thresholds"}, "mappings": [], "thresholds": th or NEUTRAL, "unit": unit}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    options = {
        "displayMode": "lcd", "maxVizHeight": 300, "minSizeStep": 1, "minVizHeight": 16, "minVizWidth": 8,
        "namePlacement": "auto", "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True, "sizing": "auto", "valueMode": "color",
    }
    return _panel("bargauge", title, description, tgts, w, h, defaults, options)


def state_timeline(title: str, description: str, tgts: list[dict[str, Any]], mappings: list[dict[str, Any]],
                   *, w: int = 12, h: int = 8, th: dict[str, Any] | None = None) -> dict[str, Any]:
    defaults = {
        "color": {"mode": "thresholds"},
        "custom": {"fillOpacity": 75, "hideFrom": {"legend": False, "tooltip": False, "viz": False}, "insertNulls": False, "lineWidth": 0, "spanNulls": False},
        "mappings": mappings, "thresholds": th or thresholds(("green", None), ("red", 1)), "unit": "none",
    }
    options = {
        "alignValue": "left", "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "mergeValues": True, "rowHeight": 0.9, "showValue": "auto", "tooltip": {"mode": "single", "sort": "none"},
    }
    return _panel("state-timeline", title, description, tgts, w, h, defaults, options)


def heatmap(title: str, description: str, tgts: list[dict[str, Any]], unit: str, *, w: int = 12, h: int = 8) -> dict[str, Any]:
    defaults = {
        "custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False}, "scaleDistribution": {"type": "linear"}},
        "thresholds": NEUTRAL, "unit": unit,
    }
    options = {
        "calculate": False, "cellGap": 1, "cellValues": {"unit": unit},
        "color": {"exponent": 0.5, "fill": "dark-red", "mode": "scheme", "reverse": False, "scale": "exponential", "scheme": "Reds", "steps": 64},
        "exemplars": {"color": "rgba(255,0,255,0.7)"}, "filterValues": {"le": 1e-9},
        "legend": {"show": True}, "rowsFrame": {"layout": "auto"}, "showValue": "never",
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
        "yAxis": {"axisPlacement": "left", "reverse": False},
    }
    return _panel("heatmap", title, description, tgts, w, h, defaults, options)


def value_map(entries: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"type": "value", "options": {k: {"color": c, "index": i, "text": t} for i, (k, (t, c)) in enumerate(entries.items())}}]


def dashed(regex: str) -> dict[str, Any]:
    """Override: series whose name matches ``regex`` drawn dashed (the engine's estimates)."""
    return {"matcher": {"id": "byRegexp", "options": regex},
            "properties": [{"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}}]}


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def layout(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assign ids and gridPos the way Grafana's gravity settles them: each panel goes to the
    highest free spot (then the leftmost) below the last row; rows span the width."""
    out: list[dict[str, Any]] = []
    heights = [0] * 24  # lowest occupied y per column
    for pid, item in enumerate(items, start=1):
        panel = dict(item)
        w, h = panel.pop("_size")
        if panel["type"] == "row":
            x, y = 0, max(heights)
        else:
            x, y = min(((max(heights[x:x + w]), x) for x in range(0, 25 - w)), key=lambda yx: (yx[0], yx[1]))[::-1]
        for c in range(x, x + w):
            heights[c] = y + h
        panel["id"] = pid
        panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        out.append(panel)
    return out


def variable(name: str, label: str, metric: str, label_name: str, selector: str = "") -> dict[str, Any]:
    query = f"label_values({metric}{selector}, {label_name})"
    return {
        "allValue": ".*", "current": {}, "datasource": DS, "definition": query, "hide": 0, "includeAll": True,
        "label": label, "multi": True, "name": name, "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1, "type": "query",
    }


def dashboard(uid: str, title: str, description: str, tags: list[str], panels: list[dict[str, Any]], var_metric: str) -> dict[str, Any]:
    laid = layout(panels)
    kinds = sorted({p["type"] for p in laid if p["type"] != "row"})
    return {
        "__inputs": [{
            "name": "DS_PROMETHEUS", "label": "Prometheus", "description": "Prometheus scraping aphrodite-sla and the engine",
            "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus",
        }],
        "__elements": {},
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": k, "name": PANEL_NAMES[k], "version": ""} for k in kinds),
        ],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
             "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
            {"datasource": DS, "enable": True, "hide": False, "iconColor": "red", "name": "Firing SLA alerts",
             "expr": 'ALERTS{alertstate="firing", alertname=~"SLA.*", model_name=~"$model_name"}',
             "step": "30s", "titleFormat": "{{alertname}} {{severity}}", "textFormat": "{{sla}} {{long_window}} {{sla_severity}} {{instance}}",
             "useValueForTime": False},
        ]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{"asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
                   "tags": ["aphrodite-sla"], "targetBlank": False, "title": "aphrodite-sla dashboards",
                   "tooltip": "", "type": "dashboards", "url": ""}],
        "panels": laid,
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": tags,
        "templating": {"list": [
            variable("model_name", "Model", var_metric, "model_name"),
            variable("instance", "Instance", var_metric, "instance", f"{{{MODEL_SEL}}}"),
        ]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# ------------------------------------------------------------------------------ SLA compliance
def sla_compliance() -> dict[str, Any]:
    burn_th = thresholds(("green", None), ("yellow", 1), ("orange", 6), ("red", 14.4))

    def fleet_burn(w: str) -> str:
        return (
            f"sla:sla_events_error_ratio:rate{w}{{{MODEL_SEL}}} / on (model_name, sla) group_left () "
            f"(1 - max by (model_name, sla) (sla_objective_ratio{{{MODEL_SEL}}} > 0 < 1))"
        )
    panels = [
        row("Overview"),
        bargauge("SLA compliance (worst replica)",
                 "Percent of each SLA's window evaluation points within the bound (sla_compliance_rate), lowest replica.",
                 targets((f"min by (sla) (sla_compliance_rate{{{SEL}}})", "{{sla}}"), instant=True),
                 "percent", w=12, h=8, th=GOOD_HIGH_PERCENT, min_=0, max_=100),
        stat("Active violations", "SLAs with a sustained violation right now, summed over replicas (sla_violation_active).",
             targets((f"sum(sla_violation_active{{{SEL}}})", "active")), "none", w=4, h=4,
             th=thresholds(("green", None), ("red", 1)), decimals=0),
        stat("Engine stalled", "1 while requests are in flight and the engine makes no progress (sla_engine_stalled).",
             targets((f"max(sla_engine_stalled{{{SEL}}})", "stalled")), "none", w=4, h=4,
             th=thresholds(("green", None), ("red", 1)),
             mappings=value_map({"0": ("OK", "green"), "1": ("STALLED", "red")})),
        stat("Goodput", "Requests/s meeting both the TTFT and TPOT objectives (DistServe goodput), summed over replicas.",
             targets((f"sum(sla_goodput_requests_per_second{{{SEL}}})", "goodput")), "reqps", w=4, h=4,
             th=thresholds(("red", None), ("green", 0.001))),
        stat("Fleet burn rate (1h)", "Fastest 1h error-budget burn over the SLAs with an objective (Prometheus rules); 14.4 pages.",
             targets(("max(" + fleet_burn("1h") + ")", "1h burn")), "suffix:x", w=6, h=4, th=burn_th, decimals=2),
        stat("Exact p99 e2e latency", "Exact p99 of end-to-end latency over the last 5 minutes (sla_window_quantile), worst replica.",
             targets((f"max({exact_quantile('request_latency_ms', '0.99')})", "p99")),
             "ms", w=6, h=4, th=NEUTRAL),

        row("Compliance and violations"),
        timeseries("SLA compliance", "sla_compliance_rate per SLA and replica.",
                   targets((f"sla_compliance_rate{{{SEL}}}", "{{sla}} ({{instance}})")),
                   "percent", th=GOOD_HIGH_PERCENT, min_=0, max_=100, threshold_lines=False),
        state_timeline("Violation state", "1 while an SLA has a sustained violation on any replica (sla_violation_active).",
                       targets((f"max by (sla) (sla_violation_active{{{SEL}}})", "{{sla}}")),
                       value_map({"0": ("ok", "green"), "1": ("violated", "red")})),
        timeseries("Violation trends", "New or escalated violations in the preceding hour, by SLA and severity (increase of sla_violations_total).",
                   targets((f"sum by (sla, severity) (increase(sla_violations_total{{{SEL}}}[1h]))", "{{sla}} {{severity}}")),
                   "short", bars=True, min_=0, decimals=0),
        heatmap("Threshold-breach heatmap", "Evaluation points at which each SLA's statistic was beyond its bound (increase of sla_threshold_breaches_total per interval).",
                targets((f"sum by (sla) (increase(sla_threshold_breaches_total{{{SEL}}}[$__rate_interval]))", "{{sla}}")),
                "short"),

        row("Latency: exact quantiles vs the engine's histogram estimate"),
        timeseries("E2E latency p95: exact vs histogram_quantile",
                   "Exact p95 over the last 5 minutes of raw samples (aphrodite-sla) beside vLLM's histogram_quantile "
                   "over its e2e buckets (same 5-minute window, dashed) and the SLA bound.",
                   targets((exact_quantile("request_latency_ms", "0.95"), "exact p95 ({{instance}})"),
                           (hist_quantile("0.95", "vllm:e2e_request_latency_seconds"), "vLLM histogram p95 ({{instance}})"),
                           (f'max(sla_bound{{{SEL}, sla="request_latency_p95"}})', "SLA bound (p95)")),
                   "ms", min_=0, overrides=[dashed("vLLM histogram.*")]),
        timeseries("E2E latency p99: exact vs histogram_quantile",
                   "Exact p99 (aphrodite-sla) beside vLLM's histogram_quantile estimate (dashed) and the SLA bound.",
                   targets((exact_quantile("request_latency_ms", "0.99"), "exact p99 ({{instance}})"),
                           (hist_quantile("0.99", "vllm:e2e_request_latency_seconds"), "vLLM histogram p99 ({{instance}})"),
                           (f'max(sla_bound{{{SEL}, sla="request_latency_p99"}})', "SLA bound (p99)")),
                   "ms", min_=0, overrides=[dashed("vLLM histogram.*")]),
        timeseries("Histogram estimate error",
                   "How far vLLM's histogram_quantile is from the exact quantile: 100 x (estimate / exact - 1), per replica.",
                   targets(*[(f"100 * ({hist_quantile(q, 'vllm:e2e_request_latency_seconds')} / on (instance) group_left () "
                              f"max by (instance) ({exact_quantile('request_latency_ms', q)}) - 1)",
                              f"p{q[2:]} estimate error ({{{{instance}}}})") for q in ("0.95", "0.99")]),
                   "percent", th=thresholds(("green", None), ("orange", 10), ("red", 25))),
        timeseries("Sustained breach ratio",
                   "Fraction of each SLA window's evaluation points beyond the bound (sla_sustained_ratio); a violation needs >= 80% by default.",
                   targets((f"sla_sustained_ratio{{{SEL}}}", "{{sla}} ({{instance}})")),
                   "percentunit", min_=0, max_=1, th=thresholds(("green", None), ("orange", 0.5), ("red", 0.8))),

        row("Error budget"),
        timeseries("Burn rate (fleet, Prometheus rules)",
                   "Bad-event fraction over 5m, 1h and 6h summed over replicas (recording rules) / (1 - objective). "
                   "Pages at 14.4 (1h & 5m) and 6 (6h & 30m) for a 30-day SLO.",
                   targets(*[(fleet_burn(w), f"{{{{sla}}}} {w}") for w in ("5m", "1h", "6h")]),
                   "suffix:x", th=burn_th, min_=0),
        timeseries("Burn rate (per replica, in-process)",
                   "sla_burn_rate: each replica's own bad fraction / (1 - objective) over 5 and 10 minutes.",
                   targets((f"sla_burn_rate{{{SEL}}}", "{{sla}} {{window}} ({{instance}})")),
                   "suffix:x", th=burn_th, min_=0),
        timeseries("SLA events", "Samples judged against each SLA's bound, per second (rate of sla_events_total), by outcome.",
                   targets((f"sum by (sla, outcome) (rate(sla_events_total{{{SEL}}}[$__rate_interval]))", "{{sla}} {{outcome}}")),
                   "ops", min_=0),
        timeseries("Objectives", "Fraction of events that must be within the bound (sla_objective_ratio).",
                   targets((f"max by (sla) (sla_objective_ratio{{{SEL}}} > 0)", "{{sla}}")),
                   "percentunit", min_=0, max_=1, decimals=3),

        row("Early warning and regressions"),
        timeseries("Anomaly scores", "Streaming anomaly score of the newest interval, 0..1 (sla_anomaly_score).",
                   targets((f"sla_anomaly_score{{{SEL}}}", "{{sla}} ({{instance}})")),
                   "percentunit", min_=0, max_=1, th=thresholds(("green", None), ("orange", 0.8), ("red", 0.95))),
        timeseries("Performance regression", "Median change of each SLA's last window vs the one before (sla_regression_percent).",
                   targets((f"sla_regression_percent{{{SEL}}}", "{{sla}} ({{instance}})")),
                   "percent", th=thresholds(("green", None), ("orange", 10), ("red", 25))),

        row("Throughput, stall and monitor health"),
        timeseries("Goodput vs finished requests",
                   "Requests/s meeting the TTFT and TPOT objectives (sla_goodput_requests_per_second) beside all finished requests (vllm:request_success_total).",
                   targets((f"sla_goodput_requests_per_second{{{SEL}}}", "goodput ({{instance}})"),
                           (f"sum by (instance) (rate(vllm:request_success_total{{{SEL}}}[$__rate_interval]))", "finished ({{instance}})")),
                   "reqps", min_=0),
        state_timeline("Engine stall", "sla_engine_stalled per replica: requests in flight, no progress.",
                       targets((f"max by (instance) (sla_engine_stalled{{{SEL}}})", "{{instance}}")),
                       value_map({"0": ("progressing", "green"), "1": ("STALLED", "red")})),
        timeseries("Evaluation duration", "p99 duration of an evaluation of all SLAs (sla_evaluation_duration_seconds histogram).",
                   targets((f"histogram_quantile(0.99, sum by (le, instance) (rate(sla_evaluation_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99 {{instance}}")),
                   "s", min_=0, w=8, th=thresholds(("green", None), ("orange", 0.05), ("red", 0.5))),
        timeseries("Ring-buffer memory", "Bytes held by the SLA windows' ring buffers (sla_store_bytes).",
                   targets((f"sla_store_bytes{{{SEL}}}", "{{instance}}")), "bytes", min_=0, w=8),
        stat("Monitor errors (last hour)", "Failures of the monitor's own components (sla_monitor_errors_total), events dropped by slow subscribers, samples refused (NaN, negative, out of order).",
             targets((f"sum(increase(sla_monitor_errors_total{{{SEL}}}[1h])) or vector(0)", "monitor errors"),
                     (f"sum(increase(sla_dropped_events_total{{{SEL}}}[1h])) or vector(0)", "dropped events"),
                     (f"sum(increase(sla_dropped_samples_total{{{SEL}}}[1h])) or vector(0)", "dropped samples")),
             "short", w=8, h=8, th=thresholds(("green", None), ("orange", 1)), decimals=0),
    ]
    return dashboard(
        "aphrodite-sla-compliance", "aphrodite-sla: SLA compliance",
        "SLA compliance, violations, threshold breaches, exact quantiles vs histogram estimates, error-budget burn, anomalies and regressions (aphrodite-sla).",
        ["aphrodite-sla", "sla", "vllm"], panels, "sla_compliance_rate",
    )


# ------------------------------------------------------------------------------ engine overview
def engine_overview() -> dict[str, Any]:
    def latency_panel(title: str, ours: str, theirs: str, what: str) -> dict[str, Any]:
        qs = {"0.5": "p50", "0.95": "p95", "0.99": "p99"}
        pairs = [(exact_quantile(ours, q), f"exact {p} ({{{{instance}}}})") for q, p in qs.items()]
        pairs += [(hist_quantile(q, theirs), f"vLLM histogram {p} ({{{{instance}}}})") for q, p in qs.items()]
        return timeseries(title, f"{what}: exact p50/p95/p99 over the last 5 minutes of raw samples (aphrodite-sla, solid) "
                                 f"beside histogram_quantile over vLLM's {theirs} buckets (same window, dashed).",
                          targets(*pairs), "ms", min_=0, overrides=[dashed("vLLM histogram.*")])

    panels = [
        row("Load"),
        timeseries("Requests running / waiting", "vllm:num_requests_running and vllm:num_requests_waiting per replica.",
                   targets((f"sum by (instance) (vllm:num_requests_running{{{SEL}}})", "running ({{instance}})"),
                           (f"sum by (instance) (vllm:num_requests_waiting{{{SEL}}})", "waiting ({{instance}})")),
                   "short", min_=0),
        timeseries("KV-cache usage", "vllm:kv_cache_usage_perc (1 = full); preemptions start near 1.",
                   targets((f"vllm:kv_cache_usage_perc{{{SEL}}}", "{{instance}}")),
                   "percentunit", min_=0, max_=1, th=thresholds(("green", None), ("orange", 0.8), ("red", 0.95))),
        timeseries("Token throughput", "Prompt and generation tokens/s (rate of vllm:*_tokens_total) beside aphrodite-sla's tokens_per_second SLA value (window mean).",
                   targets((f"sum by (instance) (rate(vllm:generation_tokens_total{{{SEL}}}[$__rate_interval]))", "generation ({{instance}})"),
                           (f"sum by (instance) (rate(vllm:prompt_tokens_total{{{SEL}}}[$__rate_interval]))", "prompt ({{instance}})"),
                           (f'sla_value{{{SEL}, sla="tokens_per_second"}}', "aphrodite-sla tokens/s ({{instance}})")),
                   "suffix: tok/s", min_=0),
        timeseries("Finished requests by reason", "Rate of vllm:request_success_total by finished_reason (stop, length, abort, error).",
                   targets((f"sum by (finished_reason) (rate(vllm:request_success_total{{{SEL}}}[$__rate_interval]))", "{{finished_reason}}")),
                   "reqps", min_=0, bars=False),

        row("Latency: exact (aphrodite-sla) vs histogram_quantile (vLLM)"),
        latency_panel("Time to first token", "ttft_ms", "vllm:time_to_first_token_seconds", "TTFT"),
        latency_panel("Inter-token latency", "itl_ms", "vllm:inter_token_latency_seconds", "ITL"),
        latency_panel("End-to-end request latency", "request_latency_ms", "vllm:e2e_request_latency_seconds", "E2E latency"),
        timeseries("Queue time and TPOT (exact)", "Exact p50/p95/p99 of queueing time and time per output token (aphrodite-sla).",
                   targets((f'sla_window_quantile{{{SEL}, series="queue_time_ms"}}', f"queue q{{{{{QUANTILE_LABEL}}}}} ({{{{instance}}}})"),
                           (f'sla_window_quantile{{{SEL}, series="tpot_ms"}}', f"TPOT q{{{{{QUANTILE_LABEL}}}}} ({{{{instance}}}})")),
                   "ms", min_=0),

        row("SLA state"),
        bargauge("SLA compliance", "sla_compliance_rate, lowest replica.",
                 targets((f"min by (sla) (sla_compliance_rate{{{SEL}}})", "{{sla}}"), instant=True),
                 "percent", w=12, h=8, th=GOOD_HIGH_PERCENT, min_=0, max_=100),
        state_timeline("Violations and stall", "Sustained SLA violations (any SLA) and the stall detector, per replica.",
                       targets((f"max by (instance) (sla_violation_active{{{SEL}}})", "violation ({{instance}})"),
                               (f"max by (instance) (sla_engine_stalled{{{SEL}}})", "stall ({{instance}})")),
                       value_map({"0": ("ok", "green"), "1": ("ACTIVE", "red")})),
    ]
    return dashboard(
        "aphrodite-sla-engine", "aphrodite-sla: engine overview",
        "The engine's own vllm: series (load, KV cache, tokens, histogram latency estimates) beside aphrodite-sla's exact quantiles and SLA state.",
        ["aphrodite-sla", "vllm", "engine"], panels, "vllm:num_requests_running",
    )


DASHBOARDS = {"sla-compliance.json": sla_compliance, "engine-overview.json": engine_overview}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in DASHBOARDS:
        path = HERE / name
        text = render(name)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python grafana/build_dashboards.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
