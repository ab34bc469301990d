"""Generates grafana/sla-compliance.json, engine-overview.json and incident-response.json (Grafana
import format, schemaVersion 39): ``python grafana/build_dashboards.py`` rewrites them; ``--check``
exits 1 when the committed files differ from what this script produces (tests/test_dashboards.py
checks that).

Why a generator: three dashboards with ~50 panels share one datasource input, one pair of template
variables, unit and threshold conventions; writing them out by hand drifts. The panels, queries,
field configs and variables are built with Grafana's typed builders (``grafana-foundation-sdk``,
generated from Grafana 10.4's schema, so a misspelt option is an AttributeError here rather than a
silently ignored key in Grafana). What that schema does not model is added to the JSON afterwards,
in ``export_envelope`` only: the import envelope (``__inputs``, ``__requires``), the variables'
``definition`` and the Prometheus annotation's format fields (grafana/README.md says why).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge as bargauge_b
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import heatmap as heatmap_b
from grafana_foundation_sdk.builders import prometheus as prometheus_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as statetimeline_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as heatmap_m
from grafana_foundation_sdk.models import prometheus as prom_m

HERE = Path(__file__).resolve().parent
# The SDK's 10.4 models default to schemaVersion 36; the panels below use 10.4's options (39).
SCHEMA_VERSION = 39
GRAFANA_VERSION = "10.4.0"
DS = dm.DataSourceRef(type_val="prometheus", uid="${DS_PROMETHEUS}")
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

PanelBuilder = Builder[dm.Panel]
Item = PanelBuilder | dash_b.Row
Override = tuple[dm.MatcherConfig, list[dm.DynamicConfigValue]]
ThresholdSteps = dash_b.ThresholdsConfig


# --------------------------------------------------------------------------------- building blocks
def thresholds(*steps: tuple[str, float | None]) -> ThresholdSteps:
    """Absolute thresholds: the first step is the base colour (value None)."""
    return dash_b.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for c, v in steps])


def good_high_percent() -> ThresholdSteps:
    return thresholds(("red", None), ("orange", 95), ("green", 99))


def neutral() -> ThresholdSteps:
    return thresholds(("green", None))


def target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False) -> prometheus_b.Dataquery:
    q = prometheus_b.Dataquery().datasource(DS).editor_mode(prom_m.QueryEditorMode.CODE).expr(expr).legend_format(legend).ref_id(ref)
    return q.instant() if instant else q.range()


def targets(*pairs: tuple[str, str], instant: bool = False) -> list[prometheus_b.Dataquery]:
    return [target(expr, legend, chr(ord("A") + i), instant=instant) for i, (expr, legend) in enumerate(pairs)]


def hist_quantile(q: str, metric: str) -> str:
    """vLLM's own estimate: histogram_quantile over its bucket counters, in ms."""
    return (
        f"histogram_quantile({q}, sum by (le, instance) "
        f"(rate({metric}_bucket{{{SEL}}}[{HIST_WINDOW}]))) * 1000"
    )


def exact_quantile(metric: str, q: str) -> str:
    return f'sla_window_quantile{{{SEL}, series="{metric}", {QUANTILE_LABEL}="{q}"}}'


class _FieldPanel(Protocol):
    """The methods every SDK panel class has (each panel kind is its own class; they share no base)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: dm.DataSourceRef) -> Self: ...
    def targets(self, targets: list[Builder[Any]]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def thresholds(self, thresholds: Builder[dm.ThresholdsConfig]) -> Self: ...
    def mappings(self, mappings: list[dm.ValueMapping]) -> Self: ...
    def min(self, min_val: float) -> Self: ...
    def max(self, max_val: float) -> Self: ...
    def decimals(self, decimals: float) -> Self: ...


P = TypeVar("P", bound=_FieldPanel)


def _common(p: P, title: str, description: str, tgts: Sequence[prometheus_b.Dataquery], w: int, h: int, unit: str,
            th: ThresholdSteps | None, min_: float | None = None, max_: float | None = None, decimals: int | None = None,
            mappings: list[dm.ValueMapping] | None = None) -> P:
    """Title, queries, size, unit, thresholds, mappings and range: what the tests require of every panel."""
    p.title(title).description(description).datasource(DS).targets(list(tgts)).span(w).height(h)
    p.unit(unit).thresholds(th or neutral()).mappings(mappings or [])
    if min_ is not None:
        p.min(min_)
    if max_ is not None:
        p.max(max_)
    if decimals is not None:
        p.decimals(decimals)
    return p


def _legend(calcs: list[str] | None = None) -> common_b.VizLegendOptions:
    return (common_b.VizLegendOptions().calcs(calcs if calcs is not None else ["lastNotNull", "max"])
            .display_mode(common.LegendDisplayMode.TABLE).placement(common.LegendPlacement.BOTTOM).show_legend(True))


def _hide_from() -> common_b.HideSeriesConfig:
    return common_b.HideSeriesConfig().legend(False).tooltip(False).viz(False)


def _reduce_last() -> common_b.ReduceDataOptions:
    return common_b.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def timeseries(title: str, description: str, tgts: Sequence[prometheus_b.Dataquery], unit: str, *, w: int = 12, h: int = 8,
                     th: ThresholdSteps | None = None, min_: float | None = None, max_: float | None = None,
                     bars: bool = False, threshold_lines: bool = True, overrides: list[Override] | None = None,
                     decimals: int | None = None) -> timeseries_b.Panel:
    p = _common(timeseries_b.Panel(), title, description, tgts, w, h, unit, th, min_, max_, decimals)
    p.color_scheme(dash_b.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
    (p.axis_border_show(False).axis_centered_zero(False).axis_color_mode(common.AxisColorMode.TEXT).axis_label("")
     .axis_placement(common.AxisPlacement.AUTO).bar_alignment(common.BarAlignment.CENTER)
     .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE).fill_opacity(60 if bars else 10)
     .gradient_mode(common.GraphGradientMode.NONE).hide_from(_hide_from()).insert_nulls(False)
     .line_interpolation(common.LineInterpolation.LINEAR).line_width(1).point_size(4)
     .scale_distribution(common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
     .show_points(common.VisibilityMode.NEVER).span_nulls(False)
     .stacking(common_b.StackingConfig().group("A").mode(common.StackingMode.NORMAL if bars else common.StackingMode.NONE))
     .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(
         common.GraphThresholdsStyleMode.LINE_AND_AREA if threshold_lines and th is not None else common.GraphThresholdsStyleMode.OFF)))
    p.legend(_legend()).tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    for matcher, props in overrides or []:
        p.with_override(matcher, props)
    return p


def stat(title: str, description: str, tgts: Sequence[prometheus_b.Dataquery], unit: str, *, w: int = 6, h: int = 5,
               th: ThresholdSteps | None = None, mappings: list[dm.ValueMapping] | None = None, decimals: int | None = None,
               min_: float | None = None, max_: float | None = None,
               text_mode: common.BigValueTextMode = common.BigValueTextMode.VALUE_AND_NAME) -> stat_b.Panel:
    p = _common(stat_b.Panel(), title, description, tgts, w, h, unit, th, min_, max_, decimals, mappings)
    p.color_scheme(dash_b.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    return (p.color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.AREA)
            .justify_mode(common.BigValueJustifyMode.AUTO).orientation(common.VizOrientation.AUTO).reduce_options(_reduce_last())
            .show_percent_change(False).text_mode(text_mode).wide_layout(True))


def bargauge(title: str, description: str, tgts: Sequence[prometheus_b.Dataquery], unit: str, *, w: int = 12, h: int = 8,
                   th: ThresholdSteps | None = None, min_: float | None = None, max_: float | None = None,
                   decimals: int | None = None) -> bargauge_b.Panel:
    p = _common(bargauge_b.Panel(), title, description, tgts, w, h, unit, th, min_, max_, decimals)
    p.color_scheme(dash_b.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    return (p.display_mode(common.BarGaugeDisplayMode.LCD).max_viz_height(300).min_viz_height(16).min_viz_width(8)
            .name_placement(common.BarGaugeNamePlacement.AUTO).orientation(common.VizOrientation.HORIZONTAL)
            .reduce_options(_reduce_last()).show_unfilled(True).sizing(common.BarGaugeSizing.AUTO).value_mode(common.BarGaugeValueMode.COLOR))


def state_timeline(title: str, description: str, tgts: Sequence[prometheus_b.Dataquery], mappings: list[dm.ValueMapping],
                         *, w: int = 12, h: int = 8, th: ThresholdSteps | None = None) -> statetimeline_b.Panel:
    p = _common(statetimeline_b.Panel(), title, description, tgts, w, h, "none", th or thresholds(("green", None), ("red", 1)),
                      mappings=mappings)
    p.color_scheme(dash_b.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    return (p.fill_opacity(75).hide_from(_hide_from()).line_width(0)
            .align_value(common.TimelineValueAlignment.LEFT)
            .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM).show_legend(True))
            .merge_values(True).row_height(0.9).show_value(common.VisibilityMode.AUTO)
            .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE).sort(common.SortOrder.NONE)))


def heatmap(title: str, description: str, tgts: Sequence[prometheus_b.Dataquery], unit: str, *, w: int = 12, h: int = 8) -> heatmap_b.Panel:
    p = _common(heatmap_b.Panel(), title, description, tgts, w, h, unit, None)
    return (p.hide_from(_hide_from()).scale_distribution(common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
            .calculate(False).cell_gap(1).cell_values(heatmap_b.CellValues().unit(unit))
            .color(heatmap_b.HeatmapColorOptions().exponent(0.5).fill("dark-red").mode(heatmap_m.HeatmapColorMode.SCHEME).reverse(False)
                   .scale(heatmap_m.HeatmapColorScale.EXPONENTIAL).scheme("Reds").steps(64))
            .exemplars_color("rgba(255,0,255,0.7)").filter_values(heatmap_b.FilterValueRange().le(1e-9)).show_legend()
            .rows_frame(heatmap_b.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO)).show_value(common.VisibilityMode.NEVER)
            .mode(common.TooltipDisplayMode.SINGLE).show_color_scale(False).hide_y_histogram()
            .y_axis(heatmap_b.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).reverse(False)))

def value_map(entries: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [dm.ValueMap(options={k: dm.ValueMappingResult(text=t, color=c, index=i) for i, (k, (t, c)) in enumerate(entries.items())})]


def dashed(regex: str) -> Override:
    """Override: series whose name matches ``regex`` drawn dashed (the engine's estimates)."""
    return (dm.MatcherConfig(id_val="byRegexp", options=regex),
            [dm.DynamicConfigValue(id_val="custom.lineStyle", value=common.LineStyle(fill="dash", dash=[10, 10]))])


def row(title: str) -> dash_b.Row:
    return dash_b.Row(title).collapsed(False)


def _size(item: Item) -> tuple[int, int]:
    if isinstance(item, dash_b.Row):
        return 24, 1
    pos = item.build().grid_pos
    assert pos is not None, "every panel gets span() and height() from its helper"
    return pos.w, pos.h


def layout(items: list[Item]) -> list[Item]:
    """Assign ids and gridPos the way Grafana's gravity settles them: each panel goes to the
    highest free spot (then the leftmost) below the last row; rows span the width. (The SDK's own
    placement fills left to right and starts a new line under the tallest panel, leaving holes that
    Grafana would close on load, so the committed JSON would not be what Grafana shows.)"""
    heights = [0] * 24  # lowest occupied y per column
    for pid, item in enumerate(items, start=1):
        w, h = _size(item)
        if isinstance(item, dash_b.Row):
            x, y = 0, max(heights)
        else:
            y, x = min((max(heights[x:x + w]), x) for x in range(0, 25 - w))
        for c in range(x, x + w):
            heights[c] = y + h
        pos = dm.GridPos(h=h, w=w, x=x, y=y)
        if isinstance(item, dash_b.Row):
            item.id(pid).grid_pos(pos)
        else:  # the panel builders share no base class with id(); build() hands back the model they fill
            model = item.build()
            model.id_val, model.grid_pos = pid, pos
    return items


def variable(name: str, label: str, metric: str, label_name: str, selector: str = "") -> dash_b.QueryVariable:
    query = f"label_values({metric}{selector}, {label_name})"
    return (dash_b.QueryVariable(name).label(label).datasource(DS).hide(dm.VariableHide.DONT_HIDE)
            .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .include_all(True).all_value(".*").multi(True).options([]).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .regex("").sort(dm.VariableSort.ALPHABETICAL_ASC))


# Fields Grafana's 10.4 schema has no place for, merged into the SDK's JSON by export_envelope.
ALERT_ANNOTATION = "Firing SLA alerts"
ALERT_ANNOTATION_FORMAT = {"step": "30s", "titleFormat": "{{alertname}} {{severity}}",
                           "textFormat": "{{sla}} {{long_window}} {{sla_severity}} {{instance}}", "useValueForTime": False}


def dashboard(uid: str, title: str, description: str, tags: list[str], panels: list[Item], var_metric: str) -> dash_b.Dashboard:
    d = (dash_b.Dashboard(title).uid(uid).description(description).tags(tags).editable().tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .time("now-1h", "now").timepicker(dash_b.TimePicker()).timezone("").week_start("").fiscal_year_start_month(0)
         .refresh("10s").version(1)
         .link(dash_b.DashboardLink("aphrodite-sla dashboards").type(dm.DashboardLinkType.DASHBOARDS).icon("external link")
               .include_vars(True).keep_time(True).tags(["aphrodite-sla"]).target_blank(False).as_dropdown(False).tooltip("").url(""))
         .annotation(dash_b.AnnotationQuery().built_in(1).datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                     .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)").name("Annotations & Alerts").type("dashboard"))
         .annotation(dash_b.AnnotationQuery().datasource(DS).enable(True).hide(False).icon_color("red").name(ALERT_ANNOTATION)
                     .expr(f'ALERTS{{alertstate="firing", alertname=~"SLA.*", {MODEL_SEL}}}'))
         .with_variable(variable("model_name", "Model", var_metric, "model_name"))
         .with_variable(variable("instance", "Instance", var_metric, "instance", f"{{{MODEL_SEL}}}")))
    for item in layout(panels):
        if isinstance(item, dash_b.Row):
            d.with_row(item)
        else:
            d.with_panel(item)
    return d


def export_envelope(model: dm.Dashboard) -> dict[str, Any]:
    """The SDK's dashboard JSON plus what Grafana's *Export → for sharing externally* adds (the
    datasource input and the plugins required) and the fields the 10.4 schema lacks."""
    model.schema_version = SCHEMA_VERSION
    body: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    for v in body["templating"]["list"]:
        v["definition"] = v["query"]["query"]  # shown in Grafana's variable list; not in the schema
        v["current"] = {}
    for a in body["annotations"]["list"]:
        if a["name"] == ALERT_ANNOTATION:  # the Prometheus annotation's legend fields: not in the schema
            a.update(ALERT_ANNOTATION_FORMAT)
    kinds = sorted({p["type"] for p in body["panels"] if p["type"] != "row"})
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
        **body,
        "id": None,
    }


# ------------------------------------------------------------------------------ SLA compliance
def sla_compliance() -> dash_b.Dashboard:
    burn_th = thresholds(("green", None), ("yellow", 1), ("orange", 6), ("red", 14.4))

    def fleet_burn(w: str) -> str:
        return (
            f"sla:sla_events_error_ratio:rate{w}{{{MODEL_SEL}}} / on (model_name, sla) group_left () "
            f"(1 - max by (model_name, sla) (sla_objective_ratio{{{MODEL_SEL}}} > 0 < 1))"
        )
    panels: list[Item] = [
        row("Overview"),
        bargauge("SLA compliance (worst replica)",
                 "Percent of each SLA's window evaluation points within the bound (sla_compliance_rate), lowest replica.",
                 targets((f"min by (sla) (sla_compliance_rate{{{SEL}}})", "{{sla}}"), instant=True),
                 "percent", w=12, h=8, th=good_high_percent(), min_=0, max_=100),
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
             "ms", w=6, h=4, th=neutral()),

        row("Compliance and violations"),
        timeseries("SLA compliance", "sla_compliance_rate per SLA and replica.",
                   targets((f"sla_compliance_rate{{{SEL}}}", "{{sla}} ({{instance}})")),
                   "percent", th=good_high_percent(), min_=0, max_=100, threshold_lines=False),
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
def engine_overview() -> dash_b.Dashboard:
    def latency_panel(title: str, ours: str, theirs: str, what: str) -> timeseries_b.Panel:
        qs = {"0.5": "p50", "0.95": "p95", "0.99": "p99"}
        pairs = [(exact_quantile(ours, q), f"exact {p} ({{{{instance}}}})") for q, p in qs.items()]
        pairs += [(hist_quantile(q, theirs), f"vLLM histogram {p} ({{{{instance}}}})") for q, p in qs.items()]
        return timeseries(title, f"{what}: exact p50/p95/p99 over the last 5 minutes of raw samples (aphrodite-sla, solid) "
                                 f"beside histogram_quantile over vLLM's {theirs} buckets (same window, dashed).",
                          targets(*pairs), "ms", min_=0, overrides=[dashed("vLLM histogram.*")])

    panels: list[Item] = [
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
                 "percent", w=12, h=8, th=good_high_percent(), min_=0, max_=100),
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


# ---------------------------------------------------------------------------- incident response
# Recovery's families (aphrodite_sla/export/collector.py); each series carries model_name.
BREAKER_STATES = {"0": ("closed", "green"), "1": ("half_open", "yellow"), "2": ("open", "red"),
                  "3": ("forced_open", "purple"), "4": ("disabled", "text")}
DEGRADATION_LEVELS = {"0": ("none", "green"), "1": ("minimal", "yellow"), "2": ("moderate", "orange"),
                      "3": ("severe", "red"), "4": ("emergency", "dark-red")}


def incident_panels() -> list[Item]:
    """The incidents' row (aphrodite_sla.incidents.metrics): open incidents by severity, the
    lifecycle, MTTD/MTTA/MTTR and escalations by level."""
    sev_th = thresholds(("green", None), ("orange", 1))
    return [
        row("Incidents and escalation"),
        stat("Open incidents", "Open incidents by severity (incidents_open), fleet total: a replica's store is shared on PostgreSQL, "
             "so the largest replica's count is taken.", targets((f"max by (severity) (incidents_open{{{SEL}}})", "{{severity}}")),
             "none", w=8, h=5, th=sev_th, decimals=0, text_mode=common.BigValueTextMode.VALUE_AND_NAME),
        stat("MTTD / MTTA / MTTR", "Means over 30 days: first bad sample to detection, detection to acknowledgement, first bad sample "
             "to resolution (incident_mttd/mtta/mttr_seconds).",
             targets((f"max(incident_mttd_seconds{{{SEL}}})", "MTTD"), (f"max(incident_mtta_seconds{{{SEL}}})", "MTTA"),
                     (f"max(incident_mttr_seconds{{{SEL}}})", "MTTR")),
             "s", w=8, h=5, th=thresholds(("green", None), ("orange", 900), ("red", 3600)), text_mode=common.BigValueTextMode.VALUE_AND_NAME),
        bargauge("Escalations by level", "Incident escalations over the dashboard's time range by level, L1 monitoring to L5 executive "
                 "(increase of incident_escalations_total).",
                 targets((f"sum by (level) (increase(incident_escalations_total{{{SEL}}}[$__range]))", "{{level}}"), instant=True),
                 "short", w=8, h=5, min_=0, decimals=0),
        timeseries("Open incidents by severity", "incidents_open over time, by severity (largest replica).",
                   targets((f"max by (severity) (incidents_open{{{SEL}}})", "{{severity}}")), "none", min_=0, decimals=0),
        timeseries("Incidents by status", "Incidents in the store by lifecycle status (incidents), detected to closed.",
                   targets((f"max by (status) (incidents{{{SEL}}})", "{{status}}")), "none", min_=0, decimals=0),
        row("Notifications"),
        bargauge("Notifications by receiver", "Notifications delivered and given up over the dashboard's time range, by receiver "
                 "(increase of notifications_sent_total / notifications_failed_total, from the durable outbox).",
                 targets((f"sum by (receiver) (increase(notifications_sent_total{{{SEL}}}[$__range]))", "{{receiver}} sent"),
                         (f"sum by (receiver) (increase(notifications_failed_total{{{SEL}}}[$__range]))", "{{receiver}} failed"),
                         instant=True),
                 "short", w=12, min_=0, decimals=0),
        timeseries("Notifications pending", "Outbox rows waiting for delivery or a retry, by receiver (notifications_pending): a "
                   "receiver that is down shows here while the outbox keeps its notifications.",
                   targets((f"max by (receiver) (notifications_pending{{{SEL}}})", "{{receiver}}")), "none", w=12, min_=0, decimals=0),
    ]


def incident_response() -> dash_b.Dashboard:
    level_th = thresholds(("green", None), ("yellow", 1), ("orange", 2), ("red", 3), ("dark-red", 4))
    panels: list[Item] = [
        row("Now"),
        stat("Active recoveries", "Recovery procedures executing right now, summed over replicas (recovery_active).",
             targets((f"sum(recovery_active{{{SEL}}})", "active")), "none", w=4, h=4,
             th=thresholds(("green", None), ("orange", 1)), decimals=0),
        stat("Approvals pending", "Recovery actions waiting for an operator's approval (recovery_approvals_pending).",
             targets((f"sum(recovery_approvals_pending{{{SEL}}})", "pending")), "none", w=4, h=4,
             th=thresholds(("green", None), ("orange", 1)), decimals=0),
        stat("Escalations", "Responses escalated over the dashboard's time range (increase of recovery_escalations_total).",
             targets((f"sum(increase(recovery_escalations_total{{{SEL}}}[$__range]))", "escalations")), "none", w=4, h=4,
             th=thresholds(("green", None), ("red", 1)), decimals=0),
        stat("Degradation level", "Highest graceful-degradation level over replicas (degradation_level).",
             targets((f"max(degradation_level{{{SEL}}})", "level")), "none", w=4, h=4,
             th=level_th, mappings=value_map(DEGRADATION_LEVELS), text_mode=common.BigValueTextMode.VALUE),
        stat("Monitoring mode", "The mode the monitors are in: the `mode` label of the monitoring_mode series at 1 (one per mode in use).",
             targets((f"max by (mode) (monitoring_mode{{{SEL}}}) == 1", "{{mode}}")), "none", w=4, h=4,
             th=thresholds(("blue", None)), text_mode=common.BigValueTextMode.NAME),
        stat("Desired replicas", "Replicas the recovery engine asks the autoscaler for (recovery_desired_replicas), largest over replicas.",
             targets((f"max(recovery_desired_replicas{{{SEL}}})", "desired")), "none", w=4, h=4, decimals=0),

        row("Recovery operations"),
        timeseries("Active recovery operations", "recovery_active per replica: procedures executing.",
                   targets((f"sum by (instance) (recovery_active{{{SEL}}})", "{{instance}}")), "none", min_=0, decimals=0),
        bargauge("Recovery executions by procedure and status",
                 "Executions finished over the dashboard's time range (increase of recovery_executions_total), by procedure and outcome.",
                 targets((f"sum by (procedure, status) (increase(recovery_executions_total{{{SEL}}}[$__range]))", "{{procedure}} {{status}}"),
                         instant=True),
                 "short", min_=0, decimals=0),
        timeseries("Recovery success rate", "Percent of recovery executions that succeeded (recovery_success_rate), per replica.",
                   targets((f"recovery_success_rate{{{SEL}}}", "__auto")),
                   "percent", th=thresholds(("red", None), ("orange", 80), ("green", 95)), min_=0, max_=100, threshold_lines=False),
        timeseries("Recovery duration", "p50 and p95 of a recovery execution's duration over 5 minutes (recovery_duration_seconds histogram).",
                   targets(*[(f"histogram_quantile({q}, sum by (le) (rate(recovery_duration_seconds_bucket{{{SEL}}}[5m])))", p)
                             for q, p in (("0.5", "p50"), ("0.95", "p95"))]),
                   "s", min_=0),

        row("Circuit breakers"),
        state_timeline("Circuit breaker state", "Each protected service's breaker (circuit_breaker_state), worst replica.",
                       targets((f"max by (service) (circuit_breaker_state{{{SEL}}})", "{{service}}")),
                       value_map(BREAKER_STATES), th=thresholds(("green", None), ("yellow", 1), ("red", 2))),
        timeseries("Rejected calls", "Calls a breaker refused over the last 5 minutes, by service (increase of circuit_breaker_rejected_total).",
                   targets((f"sum by (service) (increase(circuit_breaker_rejected_total{{{SEL}}}[5m]))", "{{service}}")),
                   "short", bars=True, min_=0, decimals=0),

        row("Degradation, mode and escalation"),
        state_timeline("Degradation level over time", "degradation_level per replica: none, minimal, moderate, severe, emergency.",
                       targets((f"max by (instance) (degradation_level{{{SEL}}})", "{{instance}}")),
                       value_map(DEGRADATION_LEVELS), th=level_th),
        state_timeline("Monitoring mode over time", "monitoring_mode: 1 for the mode each replica's monitor is in, 0 for the others.",
                       targets((f"max by (mode) (monitoring_mode{{{SEL}}})", "{{mode}}")),
                       value_map({"0": ("-", "transparent"), "1": ("current", "blue")}), th=thresholds(("transparent", None), ("blue", 1))),
        timeseries("Escalations", "ResponseEscalated events over 5 minutes (increase of recovery_escalations_total); incidents join later.",
                   targets((f"sum by (instance) (increase(recovery_escalations_total{{{SEL}}}[5m]))", "{{instance}}")),
                   "short", bars=True, min_=0, decimals=0),
        timeseries("Desired replicas and approvals",
                   "The autoscaler signal (recovery_desired_replicas) beside recovery actions waiting for approval (recovery_approvals_pending).",
                   targets((f"max by (instance) (recovery_desired_replicas{{{SEL}}})", "desired replicas ({{instance}})"),
                           (f"sum by (instance) (recovery_approvals_pending{{{SEL}}})", "approvals pending ({{instance}})")),
                   "short", min_=0, decimals=0),
        *incident_panels(),
    ]
    return dashboard(
        "aphrodite-sla-incidents", "aphrodite-sla: incident response",
        "Active recovery operations, recovery outcomes and durations, circuit breakers, graceful degradation, monitoring mode, "
        "approvals and escalations (aphrodite-sla recovery).",
        ["aphrodite-sla", "recovery", "incidents"], panels, "sla_compliance_rate",
    )


def root_cause_analysis() -> dash_b.Dashboard:
    """The seed's Root Cause Analysis dashboard: causes found (historical incident patterns),
    hypothesis confidence distribution, correlations, recommendations, analysis time."""
    conf_th = thresholds(("red", None), ("orange", 0.5), ("green", 0.8))
    panels: list[Item] = [
        row("Root causes"),
        stat("Analyses", "Root-cause analyses over the dashboard's time range (increase of rca_analyses_total).",
             targets((f"sum(increase(rca_analyses_total{{{SEL}}}[$__range]))", "analyses")), "none", w=6, h=4, decimals=0),
        stat("Mean confidence", "Mean calibrated confidence of the primary cause over 1 hour (rca_confidence histogram).",
             targets((f"sum(increase(rca_confidence_sum{{{SEL}}}[1h])) / sum(increase(rca_confidence_count{{{SEL}}}[1h]))", "confidence")),
             "percentunit", w=6, h=4, th=conf_th),
        stat("Correlations found", "Significant correlations (Benjamini-Hochberg corrected) in the latest analysis (rca_correlations_found).",
             targets((f"max(rca_correlations_found{{{SEL}}})", "correlations")), "none", w=6, h=4, decimals=0),
        stat("Insufficient evidence", "Analyses that named no cause over the time range (cause=\"insufficient_evidence\").",
             targets((f"sum(increase(rca_analyses_total{{{SEL}, cause=\"insufficient_evidence\"}}[$__range])) or vector(0)", "none")),
             "none", w=6, h=4, decimals=0, th=thresholds(("green", None), ("orange", 1))),
        bargauge("Historical incident patterns", "Primary causes named over the dashboard's time range, by cause and category "
                 "(increase of rca_analyses_total).",
                 targets((f"sum by (cause, category) (increase(rca_analyses_total{{{SEL}}}[$__range]))", "{{category}}: {{cause}}"),
                         instant=True), "short", min_=0, decimals=0),
        timeseries("Analyses by category", "Analyses over 5 minutes by the seed's five categories (rca_analyses_total).",
                   targets((f"sum by (category) (increase(rca_analyses_total{{{SEL}}}[5m]))", "{{category}}")),
                   "short", bars=True, min_=0, decimals=0),
        row("Hypotheses and recommendations"),
        bargauge("Hypothesis confidence distribution", "How many primary causes were named at each calibrated confidence "
                 "(cumulative buckets of rca_confidence over the time range).",
                 targets((f"sum by (le) (increase(rca_confidence_bucket{{{SEL}}}[$__range]))", "<= {{le}}"), instant=True),
                 "short", min_=0, decimals=0),
        bargauge("Recommendations", "Recovery actions RCA recommended over the time range, by action (rca_recommendations_total).",
                 targets((f"sum by (action) (increase(rca_recommendations_total{{{SEL}}}[$__range]))", "{{action}}"), instant=True),
                 "short", min_=0, decimals=0),
        timeseries("Correlations per analysis", "Significant correlations of metrics with the violated SLI in the latest analysis "
                   "(reported, not used to pick the cause: symptoms correlate with each other).",
                   targets((f"max by (instance) (rca_correlations_found{{{SEL}}})", "{{instance}}")), "short", min_=0, decimals=0),
        timeseries("Analysis duration", "p50 and p95 of an analysis's duration over 5 minutes (rca_duration_seconds histogram).",
                   targets(*[(f"histogram_quantile({q}, sum by (le) (rate(rca_duration_seconds_bucket{{{SEL}}}[5m])))", p)
                             for q, p in (("0.5", "p50"), ("0.95", "p95"))]),
                   "s", min_=0),
    ]
    return dashboard(
        "aphrodite-sla-rca", "aphrodite-sla: root cause analysis",
        "Root causes RCA named for SLA violations (cause, category, calibrated confidence), the distribution of confidence, "
        "correlations with the violated SLI, recommended recovery actions and analysis time (aphrodite-sla rca).",
        ["aphrodite-sla", "rca", "incidents"], panels, "sla_compliance_rate",
    )


DASHBOARDS: dict[str, Callable[[], dash_b.Dashboard]] = {
    "sla-compliance.json": sla_compliance,
    "engine-overview.json": engine_overview,
    "incident-response.json": incident_response,
    "root-cause-analysis.json": root_cause_analysis,
}


def render(name: str) -> str:
    return json.dumps(export_envelope(DASHBOARDS[name]().build()), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


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
