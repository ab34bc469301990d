"""Post-mortems: markdown generated from an incident with the seed's template sections (executive
summary, impact, timeline, root cause, resolution and recovery, lessons learned, action items,
metrics, approvals).

Why generated, not blank: everything the system knows — when the first bad sample came, what was
detected, what recovery did, what RCA found, who acknowledged and resolved — is already on the
incident; the people writing the review start from it and fill in the judgement (lessons, owners).
"""
from __future__ import annotations

import time
from typing import Any

from aphrodite_sla.incidents.model import Incident


def _when(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _minutes(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} min"


def _analysis_lines(analysis: dict[str, Any]) -> list[str]:
    """The RCA report's substance (``RCAAnalysis.to_dict()``): the root metric and what it did,
    the evidence for and against, the leading indicator, and the recommended recovery actions."""
    out: list[str] = []
    primary = analysis.get("primary_root_cause")
    primary = primary if isinstance(primary, dict) else {}
    if primary.get("metric"):
        out.append(f"Root metric `{primary['metric']}`: {primary.get('description') or '—'}")
    out += [f"- Evidence for: {e}" for e in (primary.get("evidence_for") or [])[:5]]
    out += [f"- Evidence against: {e}" for e in (primary.get("evidence_against") or [])[:5]]
    leads = [li for li in analysis.get("leading_indicators") or [] if isinstance(li, dict)]
    if leads:
        first = leads[0]
        out.append(f"- Leading indicator: `{first.get('metric')}` moved {float(first.get('lead_s') or 0.0):.0f} s before the SLI")
    for rec in (analysis.get("recommendations") or [])[:5]:
        if isinstance(rec, dict):
            out.append(f"- Recommendation: `{rec.get('action')}` — {rec.get('reason', '')}")
        else:
            out.append(f"- Recommendation: {rec}")
    return out


def render_postmortem(incident: Incident) -> str:
    i = incident
    kinds = [t.kind for t in i.timeline]
    recovery_lines = [t for t in i.timeline if t.kind in ("recovery_started", "recovery_finished", "approval_requested", "approval_decided",
                                                          "approval", "DegradationChanged", "deployment_rolled_back", "recovered", "resolved")]
    rca = i.root_cause_detail or {}
    lines = [
        f"# Post-mortem: {i.title}",
        "",
        f"*Incident {i.incident_id} · {i.severity.value.upper()} · {i.incident_type.value} · status {i.status.value}"
        + (f" · replica {i.replica}" if i.replica else "") + "*",
        "",
        "## Executive summary",
        "",
        f"{i.description or i.title}. Detected {_when(i.detected_at)} by {i.source or 'the monitor'}; "
        + (f"resolved {_when(i.resolved_at)} by {i.resolved_by or 'unknown'}." if i.resolved_at else "not resolved yet."),
        "",
        "## Impact",
        "",
        f"- Severity: **{i.severity.value}**; type: {i.incident_type.value}",
        f"- First bad sample: {_when(i.first_bad_at)}; resolved: {_when(i.resolved_at)}",
        f"- Duration of impact: {_minutes(i.mttr_minutes)}",
        f"- Events joined into this incident: {i.event_count}",
        f"- Labels: {', '.join(f'{k}={v}' for k, v in sorted(i.labels.items())) or 'none'}",
        f"- Highest escalation level: {'L' + str(i.escalation_level) if i.escalation_level else 'not escalated'}",
        "",
        "## Timeline",
        "",
        "| time (UTC) | stage | what | by |",
        "|---|---|---|---|",
        *(f"| {_when(t.at)} | {t.stage or '—'} | {t.message.replace('|', '/')} | {t.actor} |" for t in i.timeline),
        "",
        "## Root cause",
        "",
    ]
    if i.root_cause:
        lines.append(f"Root-cause analysis found **{i.root_cause}** ({rca.get('category', 'uncategorised')}, "
                     f"confidence {float(rca.get('confidence', 0.0)):.0%}).")
        analysis = rca.get("analysis")
        if isinstance(analysis, dict):
            lines += _analysis_lines(analysis)
    else:
        lines.append("No automated root-cause analysis was recorded for this incident: to be established by the review.")
    lines += [
        "",
        "## Resolution and recovery",
        "",
        *(f"- {_when(t.at)} — {t.message} ({t.actor})" for t in recovery_lines),
        *(() if recovery_lines else ("- No automated response was recorded.",)),
        f"- Resolution notes: {i.resolution_notes or '—'}",
        "",
        "## Lessons learned",
        "",
        "- What went well: " + ("detected automatically" if i.source and not i.source.startswith("manual") else "reported by a person")
        + ("; acknowledged" if i.acknowledged_at else "; never acknowledged"),
        "- What went wrong: " + ("the automatic response failed and was escalated" if "response_escalated" in kinds or i.escalation_level > 1
                                 else "to be completed by the review"),
        "- Where we got lucky: to be completed by the review",
        "",
        "## Action items",
        "",
        "| action | owner | due |",
        "|---|---|---|",
        f"| Review the {i.incident_type.value} detection thresholds against this incident | {i.assigned_to or 'unassigned'} | — |",
        f"| Add a regression test or runbook entry for {i.root_cause or i.incident_type.value} | {i.assigned_to or 'unassigned'} | — |",
        "",
        "## Metrics",
        "",
        f"- MTTD (first bad sample → detection): {_minutes(i.mttd_minutes)}",
        f"- MTTA (detection → acknowledgement): {_minutes(i.mtta_minutes)}",
        f"- MTTR (first bad sample → resolution): {_minutes(i.mttr_minutes)}",
        "",
        "## Approvals",
        "",
        *(f"- {_when(a.at)} {a.action} by {a.actor}: {a.detail}" for a in i.audit if a.action in ("approval", "resolved", "closed", "acknowledged")),
        "- Post-mortem reviewed by: ______",
        "",
    ]
    return "\n".join(lines)
