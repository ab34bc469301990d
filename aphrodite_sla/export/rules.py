"""Prometheus rules for the SLAs: fleet-wide error ratios, multi-window multi-burn-rate alerts and
alerts on the in-process violation and stall gauges, rendered as a rules YAML file.

Why rules at all when the process already computes burn rates: ``sla_burn_rate`` is per replica,
while an error budget belongs to the whole fleet serving a model. The recording rules add up
``sla_events_total`` across replicas (``sum without (instance, pod, outcome)``) and derive the bad
fraction over 5m, 30m, 1h, 2h, 6h, 1d and 3d; the alerts follow the Google SRE workbook's table
(page: 1h & 5m at 14.4x, 6h & 30m at 6x; ticket: 1d & 2h at 3x, 3d & 6h at 1x for a 30-day SLO).

Two failures of the usual generators are designed out:
  * NaN budgets at zero traffic: the ratio divides by ``clamp_min(total, 1e-9)`` and a missing
    ``outcome="bad"`` series counts as 0, so with no events the ratio is 0, never NaN;
  * false pages at low traffic: a burn-rate alert also needs the long window to have seen at least
    ``min_events_per_second`` events per second (default one a minute), so one bad request among
    three in an hour does not page anyone.

The YAML is written by hand (PromQL in literal block scalars, every other scalar a JSON string,
which YAML reads as a double-quoted scalar), so nothing beyond the standard library is needed.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aphrodite_sla.sla.threshold import SLAThreshold

__all__ = [
    "BURN_RATE_ALERTS",
    "RATIO_WINDOWS",
    "BurnRateAlert",
    "burn_rate_factor",
    "render_rules",
    "rules_document",
    "slo_objective",
    "write_rules",
]

# Windows of the recorded error ratios, shortest first.
RATIO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

EVENTS_METRIC = "sla_events_total"
VIOLATION_METRIC = "sla_violation_active"
STALL_METRIC = "sla_engine_stalled"
PAGE_METRIC = "sla_page_active"
PAGE_RULES = ("severe_breach", "burn_rate_page")  # ViolationRule values that page
TICKET_RULES = ("burn_rate_ticket",)


@dataclass(frozen=True)
class BurnRateAlert:
    """One row of the burn-rate table: alert when both windows burn faster than
    ``factor × (1 − objective)``, where factor = budget_percent × period_hours / 100 / long hours."""

    severity: str  # "page" or "ticket"
    long_window: str
    short_window: str
    budget_percent: float  # share of the period's budget spent in ``long_window`` at this rate
    for_: str  # how long the condition must hold before the alert fires


# Google SRE workbook ch. 5 (also Sloth, Pyrra): 14.4 / 6 / 3 / 1 for a 30-day period.
BURN_RATE_ALERTS: tuple[BurnRateAlert, ...] = (
    BurnRateAlert("page", "1h", "5m", 2.0, "2m"),
    BurnRateAlert("page", "6h", "30m", 5.0, "15m"),
    BurnRateAlert("ticket", "1d", "2h", 10.0, "1h"),
    BurnRateAlert("ticket", "3d", "6h", 10.0, "3h"),
)

# Alert routing of the in-process sustained violations, by the SLA's severity.
DEFAULT_VIOLATION_ROUTING: Mapping[str, str] = {"critical": "page", "major": "ticket", "minor": "info"}

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _duration_seconds(text: str) -> int:
    """Seconds of a Prometheus duration made of d/h/m/s parts ("1h", "90s", "1h30m")."""
    m = _DURATION_RE.match(text)
    if not text or m is None:
        raise ValueError(f"not a Prometheus duration (d/h/m/s parts): {text!r}")
    d, h, mi, s = (int(x or 0) for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def burn_rate_factor(budget_percent: float, long_window: str, slo_period_days: float = 30.0) -> float:
    """factor = budget% × period_hours / 100 / long_window_hours (14.4 for 2% in 1h of 30 days)."""
    long_h = _duration_seconds(long_window) / 3600.0
    return budget_percent * slo_period_days * 24.0 / 100.0 / long_h


def slo_objective(threshold: SLAThreshold, objectives: Mapping[str, float] | None = None) -> float | None:
    """The fraction of events that must be within the bound (the SLO behind an SLA), or None for
    SLAs without an error budget (gauges such as throughput or utilisation). ``objectives``
    (by SLA name) overrides ``threshold.objective`` (``objective_percent``, else a pXX quantile)."""
    if objectives and threshold.metric_name in objectives:
        obj: float | None = float(objectives[threshold.metric_name])
    else:
        obj = threshold.objective
    if obj is None:
        return None
    if not (0.0 < obj < 1.0 and math.isfinite(obj)):
        raise ValueError(f"objective of SLA {threshold.metric_name!r} must be in (0, 1), got {obj!r}")
    return obj


def _num(x: float) -> str:
    """A PromQL number literal, 10 significant digits (0.72, not 0.7200000000000001)."""
    return f"{x:.10g}"


def _q(s: str) -> str:
    """A PromQL string literal (Go-style double-quoted; JSON's escaping is a subset)."""
    return json.dumps(s)


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _ratio_record(window: str) -> str:
    return f"sla:sla_events_error_ratio:rate{window}"


def _total_record(window: str) -> str:
    return f"sla:sla_events:rate{window}"


def _bad_record(window: str) -> str:
    return f"sla:sla_events_bad:rate{window}"


def rules_document(
    thresholds: Iterable[SLAThreshold] | None = None,
    *,
    slo_period_days: float = 30.0,
    min_events_per_second: float = 1.0 / 60.0,
    objectives: Mapping[str, float] | None = None,
    burn_rate_alerts: Sequence[BurnRateAlert] = BURN_RATE_ALERTS,
    aggregate_without: Sequence[str] = ("instance", "pod"),
    violation_routing: Mapping[str, str] = DEFAULT_VIOLATION_ROUTING,
    violation_for: str = "1m",
    violation_keep_firing_for: str = "10m",
    stall_for: str = "30s",
    stall_keep_firing_for: str = "5m",
    runbook_url: str = "https://runbooks.example.com/aphrodite-sla",
    group_prefix: str = "aphrodite-sla",
) -> dict[str, Any]:
    """The rules file as plain data (``{"groups": [...]}``); :func:`render_rules` formats it."""
    if thresholds is None:
        from aphrodite_sla.sla.defaults import default_thresholds

        thresholds = default_thresholds()
    if not (slo_period_days > 0 and math.isfinite(slo_period_days)):
        raise ValueError(f"slo_period_days must be a finite number > 0, got {slo_period_days!r}")
    if not (min_events_per_second >= 0 and math.isfinite(min_events_per_second)):
        raise ValueError(f"min_events_per_second must be a finite number >= 0, got {min_events_per_second!r}")
    for d in (violation_for, violation_keep_firing_for, stall_for, stall_keep_firing_for, *RATIO_WINDOWS):
        _duration_seconds(d)
    for a in burn_rate_alerts:
        for w in (a.long_window, a.short_window):
            if w not in RATIO_WINDOWS:
                raise ValueError(f"burn-rate window {w!r} has no recording rule; use one of {', '.join(RATIO_WINDOWS)}")
        _duration_seconds(a.for_)
    for name in aggregate_without:
        if not _LABEL_NAME_RE.match(name) or name in ("sla", "model_name", "outcome"):
            raise ValueError(f"cannot aggregate away label {name!r}")
    without = ", ".join([*aggregate_without, "outcome"])
    runbook = runbook_url.rstrip("/")

    # -- recording rules: fleet-wide event rates and the bad fraction, per (model_name, sla, job...)
    records: list[dict[str, Any]] = []
    for w in RATIO_WINDOWS:
        records.append({
            "record": _total_record(w),
            "expr": f"sum without ({without}) (rate({EVENTS_METRIC}[{w}]))",
        })
        records.append({
            "record": _bad_record(w),
            "expr": f'sum without ({without}) (rate({EVENTS_METRIC}{{outcome="bad"}}[{w}]))',
        })
        # 0 (not NaN, not absent) when there were no events; bad = 0 when no bad series exists yet.
        records.append({
            "record": _ratio_record(w),
            "expr": (
                f"(\n  {_bad_record(w)}\n  or\n  0 * {_total_record(w)}\n)\n"
                f"/\nclamp_min({_total_record(w)}, 1e-9)"
            ),
        })

    # -- burn-rate alerts, per SLA with an objective and per row of the table
    burn_alerts: list[dict[str, Any]] = []
    by_name: dict[str, SLAThreshold] = {}
    for th in thresholds:  # a later threshold of the same name replaces an earlier one (as in the manager)
        by_name[th.metric_name] = th
    for th in by_name.values():
        if not th.enabled:
            continue
        objective = slo_objective(th, objectives)
        if objective is None:
            continue
        budget = 1.0 - objective
        sel = f"{{sla={_q(th.metric_name)}}}"
        for row in burn_rate_alerts:
            factor = burn_rate_factor(row.budget_percent, row.long_window, slo_period_days)
            limit = factor * budget
            if limit >= 1.0:
                # a bad fraction cannot exceed 1: this row could never fire for this objective
                continue
            expr = (
                f"(\n  {_ratio_record(row.long_window)}{sel} > {_num(limit)}\n"
                f"  and\n  {_ratio_record(row.short_window)}{sel} > {_num(limit)}\n)\n"
                f"and\n{_total_record(row.long_window)}{sel} >= {_num(min_events_per_second)}"
            )
            burn_alerts.append({
                "alert": "SLAErrorBudgetBurn",
                "expr": expr,
                "for": row.for_,
                "labels": {
                    "sla": th.metric_name,  # the series' own value; keeps the rules distinct
                    "severity": row.severity,
                    "long_window": row.long_window,
                    "short_window": row.short_window,
                },
                "annotations": {
                    "summary": (
                        f"{{{{ $labels.sla }}}} on {{{{ $labels.model_name }}}}: error budget burning "
                        f"{factor:.3g}x too fast ({row.long_window} and {row.short_window} windows)"
                    ),
                    "description": (
                        f"{{{{ $value | humanizePercentage }}}} of {th.metric_name} events were beyond the SLA bound "
                        f"over the last {row.long_window} (and over the last {row.short_window}); the objective is "
                        f"{_pct(objective)} within the bound, so the alert limit is {factor:.3g} x {_pct(budget)} = "
                        f"{_pct(limit)}. At this rate {row.budget_percent:g}% of the {slo_period_days:g}-day error "
                        f"budget is spent every {row.long_window}."
                    ),
                    "runbook_url": f"{runbook}#sla-error-budget-burn",
                },
            })

    # -- in-process sustained violations (per replica) and the stall detector
    other_alerts: list[dict[str, Any]] = []
    for sla_severity, route in violation_routing.items():
        other_alerts.append({
            "alert": "SLAViolation",
            "expr": (
                f'label_replace({VIOLATION_METRIC}{{severity={_q(sla_severity)}}} == 1, '
                f'"sla_severity", "$1", "severity", "(.*)")'
            ),
            "for": violation_for,
            "keep_firing_for": violation_keep_firing_for,
            "labels": {"severity": route},
            "annotations": {
                "summary": "{{ $labels.sla }} SLA violated ({{ $labels.sla_severity }}) on {{ $labels.model_name }} at {{ $labels.instance }}",
                "description": (
                    "The in-process SLA monitor of {{ $labels.instance }} reports a sustained "
                    f"{sla_severity} violation of {{{{ $labels.sla }}}}: its windowed statistic is beyond "
                    "the bound at most evaluation points of the window. Compare sla_value with sla_bound."
                ),
                "runbook_url": f"{runbook}#sla-violation",
            },
        })
    # the in-process fast page rules (sla.pages): already confirmed and held in the process, so no
    # "for"; the stall page is SLAEngineStalled's. Tickets (the slow burn) route as tickets.
    for rules, route in ((PAGE_RULES, "page"), (TICKET_RULES, "ticket")):
        other_alerts.append({
            "alert": "SLAFastPage",
            "expr": f'{PAGE_METRIC}{{rule=~{_q("|".join(rules))}}} == 1',
            "for": "0s",
            "keep_firing_for": stall_keep_firing_for,
            "labels": {"severity": route},
            "annotations": {
                "summary": "{{ $labels.sla }} on {{ $labels.model_name }} at {{ $labels.instance }}: {{ $labels.rule }}",
                "description": (
                    "A fast page rule of the in-process SLA monitor fired for {{ $labels.sla }}: severe_breach (the "
                    "statistic far beyond its bound over the last minute) or a multi-window error-budget burn; the "
                    "health endpoint's reasons give the figures."
                ),
                "runbook_url": f"{runbook}#sla-fast-page",
            },
        })
    other_alerts.append({
        "alert": "SLAEngineStalled",
        "expr": f"{STALL_METRIC} == 1",
        "for": stall_for,
        "keep_firing_for": stall_keep_firing_for,
        "labels": {"severity": "page"},
        "annotations": {
            "summary": "Engine of {{ $labels.model_name }} at {{ $labels.instance }} makes no progress",
            "description": (
                "Requests are in flight but the engine has produced no tokens for longer than the stall "
                "threshold, while its health check may still answer 200."
            ),
            "runbook_url": f"{runbook}#engine-stalled",
        },
    })
    other_alerts.append({
        "alert": "SLAMonitorErrors",
        "expr": (
            "sum without (component) (increase(sla_monitor_errors_total[15m])) > 0\nor\n"
            "sum without (subscriber) (increase(sla_dropped_events_total[15m])) > 0"
        ),
        "for": "0s",
        "labels": {"severity": "ticket"},
        "annotations": {
            "summary": "The SLA monitor of {{ $labels.model_name }} at {{ $labels.instance }} reports internal errors",
            "description": (
                "Components of aphrodite-sla failed, or subscribers dropped events, in the last 15 minutes "
                "(sla_monitor_errors_total by component); see the engine's log."
            ),
            "runbook_url": f"{runbook}#monitor-errors",
        },
    })
    other_alerts.append({
        "alert": "SLAMonitorNotEvaluating",
        "expr": (
            "sla_evaluation_failing == 1\nor\nsla_evaluator_running == 0\nor\n"
            "increase(sla_evaluations_total[5m]) == 0"
        ),
        "for": "5m",
        "labels": {"severity": "ticket"},
        "annotations": {
            "summary": "The SLA monitor of {{ $labels.model_name }} at {{ $labels.instance }} is not evaluating",
            "description": (
                "Its evaluations fail, its evaluator thread is not running, or it ran no evaluation in 5 minutes: "
                "the SLA figures and alerts of this replica are stale. The health endpoint's monitor block and the "
                "engine's log say why."
            ),
            "runbook_url": f"{runbook}#monitor-not-evaluating",
        },
    })
    other_alerts.append({
        "alert": "SLAWindowNotCovered",
        "expr": "sla_window_coverage_ratio < 0.9",
        "for": "10m",
        "labels": {"severity": "ticket"},
        "annotations": {
            "summary": (
                "The {{ $labels.window }} window of {{ $labels.series }} on {{ $labels.instance }} "
                "covers {{ $value | humanizePercentage }} of its length"
            ),
            "description": (
                "Samples arrive faster than the series' ring holds for a whole window, so its quantiles describe "
                "a shorter time than they say. Raise the series' sample_rate_hz (or declare it thin)."
            ),
            "runbook_url": f"{runbook}#window-not-covered",
        },
    })

    return {
        "groups": [
            {"name": f"{group_prefix}-slo", "rules": records + burn_alerts},
            {"name": f"{group_prefix}-alerts", "rules": other_alerts},
        ]
    }


# ------------------------------------------------------------------------------------ YAML
_KEY_ORDER = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return json.dumps(str(value))
    return json.dumps(str(value), ensure_ascii=False)


def _block(text: str, indent: str) -> str:
    """A literal block scalar (``|-``) of ``text``; every line indented by ``indent``."""
    lines = text.split("\n")
    if text[:1] in (" ", "\t") or any(line != line.rstrip() or "\t" in line for line in lines):
        return json.dumps(text, ensure_ascii=False)  # edge whitespace: a quoted scalar keeps it exact
    return "|-\n" + "\n".join(indent + line if line else "" for line in lines)


def _rule_yaml(rule: Mapping[str, Any], indent: str) -> list[str]:
    out: list[str] = []
    first = True
    keys = [k for k in _KEY_ORDER if k in rule] + [k for k in rule if k not in _KEY_ORDER]
    for key in keys:
        value = rule[key]
        prefix = indent + ("- " if first else "  ")
        first = False
        if isinstance(value, Mapping):
            out.append(f"{prefix}{key}:")
            for k, v in value.items():
                out.append(f"{indent}    {k}: {_scalar(v)}")
        elif key == "expr" and "\n" in str(value):
            out.append(f"{prefix}{key}: {_block(str(value), indent + '    ')}")
        else:
            out.append(f"{prefix}{key}: {_scalar(value)}")
    return out


def _yaml(doc: Mapping[str, Any], header: Sequence[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append("groups:")
    for group in doc["groups"]:
        lines.append(f"  - name: {_scalar(group['name'])}")
        for k, v in group.items():
            if k not in ("name", "rules"):
                lines.append(f"    {k}: {_scalar(v)}")
        lines.append("    rules:")
        for rule in group["rules"]:
            lines.extend(_rule_yaml(rule, "      "))
    return "\n".join(lines) + "\n"


def render_rules(thresholds: Iterable[SLAThreshold] | None = None, **options: Any) -> str:
    """The Prometheus rules file (YAML text) for ``thresholds`` (default: the production SLAs);
    ``options`` are :func:`rules_document`'s keywords.

    ``slo_period_days``: the error-budget period (the burn factors scale with it: 14.4/6/3/1 at
    30). ``min_events_per_second``: a burn-rate alert also needs at least this event rate over its
    long window (low-traffic guard; 0 disables). ``objectives``: SLA name -> objective in (0, 1),
    overriding ``SLAThreshold.objective``. Needs Prometheus >= 2.42 (``keep_firing_for``)."""
    thresholds = list(thresholds) if thresholds is not None else None
    doc = rules_document(thresholds, **options)
    resolved = inspect.signature(rules_document).bind(thresholds, **options)
    resolved.apply_defaults()
    period = resolved.arguments["slo_period_days"]
    factors = ", ".join(
        f"{a.severity} {a.long_window}&{a.short_window} {burn_rate_factor(a.budget_percent, a.long_window, period):.3g}x"
        for a in resolved.arguments["burn_rate_alerts"]
    )
    header = (
        "Prometheus rules for aphrodite-sla, generated by `aphrodite-sla rules export`",
        "(aphrodite_sla.export.rules.render_rules); regenerate rather than edit. Needs Prometheus >= 2.42.",
        "",
        f"SLO period {period:g} days; burn-rate alerts: {factors};",
        f"low-traffic guard: >= {resolved.arguments['min_events_per_second']:.4g} events/s over the long window.",
    )
    return _yaml(doc, header)


def write_rules(path: str | os.PathLike[str], thresholds: Iterable[SLAThreshold] | None = None, **kwargs: Any) -> Path:
    """Write :func:`render_rules` to ``path`` atomically (temporary file + rename); returns the path."""
    text = render_rules(thresholds, **kwargs)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target
