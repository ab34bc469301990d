"""The console's HTML: the layout, each section and the incident page, as escaped fragments.

Why fragments: the live update (``console.js``) fetches the same fragment a page embeds and
swaps it in place every refresh interval, so there is one renderer per section and no full
reload. Every value from an incident, a label or a person passes through ``h``."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aphrodite_sla.console import views
from aphrodite_sla.console.charts import Chart, Line, render_chart
from aphrodite_sla.console.filters import COMPONENT_LABELS, SEVERITIES, SORT_KEYS, STATUSES, IncidentFilter
from aphrodite_sla.console.html import Safe, h, join, minutes, severity_badge, status_badge, tag, time_tag
from aphrodite_sla.console.markdown import render_markdown
from aphrodite_sla.console.notifications import deliveries_of
from aphrodite_sla.incidents.model import Incident
from aphrodite_sla.recovery.model import RecoveryAction

SECTIONS = (("overview", "Overview", "/"), ("incidents", "Active incidents", "/incidents"), ("timeline", "Timeline", "/timeline"),
            ("metrics", "Metrics", "/metrics"), ("components", "Components", "/components"))


@dataclass(frozen=True)
class PageContext:
    """Who is looking and what the page may offer."""

    prefix: str
    who: str  # "" when not signed in
    csrf: str
    can_act: bool
    refresh_s: float
    actions_enabled: bool  # a token is configured at all
    flash: tuple[bool, str] | None = None

    def url(self, path: str, query: str = "") -> str:
        return f"{self.prefix}{path}" + (f"?{query}" if query else "")


def layout(ctx: PageContext, title: str, current: str, body: Safe, live: str = "", query: str = "") -> Safe:
    nav = join(tag("a", label, href=ctx.url(path), aria_current="page" if key == current else None) for key, label, path in SECTIONS)
    if ctx.who:
        account = Safe(f'<form method="post" action="{h(ctx.url("/sign-out"))}" class="inline">{csrf_input(ctx)}'
                       f'<span class="who">Signed in as {h(ctx.who)}</span> <button type="submit">Sign out</button></form>')
    else:
        account = tag("a", "Sign in to act", href=ctx.url("/sign-in"), class_="button")
    flash = Safe("")
    if ctx.flash is not None:
        ok, message = ctx.flash
        flash = tag("p", message, class_="flash ok" if ok else "flash err", role="status" if ok else "alert")
    return Safe(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{h(title)} · aphrodite-sla console</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="{h(ctx.url('/static/console.css'))}">
<script src="{h(ctx.url('/static/console.js'))}" defer></script></head>
<body data-refresh="{ctx.refresh_s:g}" data-live-url="{h(ctx.url('/fragment/' + live, query) if live else '')}">
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">aphrodite-sla · incidents</span><nav aria-label="Sections">{nav}</nav>{account}</header>
<main id="main" tabindex="-1">{flash}<h1>{h(title)}</h1>
<div id="live" aria-live="polite">{body}</div>
<p class="refresh">Updates every {ctx.refresh_s:g} s. <span id="live-state" role="status"></span></p></main></body></html>""")


def csrf_input(ctx: PageContext) -> Safe:
    return tag("input", type="hidden", name="csrf", value=ctx.csrf)


def _notice_filters(flt: IncidentFilter) -> Safe:
    if not flt.errors:
        return Safe("")
    return tag("div", [tag("p", "Some filters were ignored:"), tag("ul", [tag("li", e) for e in flt.errors])], class_="flash err", role="alert")


# -- overview ---------------------------------------------------------------------------------------
def overview_fragment(ctx: PageContext, ov: views.Overview) -> Safe:
    health_word = {"healthy": "✔ Healthy", "degraded": "▲ Degraded", "critical": "‼ Critical", "unknown": "? Unknown"}[ov.health]
    reasons = tag("ul", [tag("li", r) for r in ov.health_reasons]) if ov.health_reasons else Safe("")
    sev_cells = join(tag("li", Safe(f"{severity_badge(s)} {h(ov.open_by_severity.get(s, 0))}")) for s in reversed(SEVERITIES))
    cards = Safe(f"""<section class="cards" aria-label="At a glance">
<div class="card health-{h(ov.health)}"><h2>Health</h2><p class="big">{h(health_word)}</p>{reasons}</div>
<div class="card"><h2>Monitoring mode</h2><p class="big">{h(ov.mode)}</p></div>
<div class="card"><h2>Active incidents</h2><p class="big"><a href="{h(ctx.url('/incidents', 'status=active'))}">{h(ov.open_total)}</a></p>
<ul class="sevs">{sev_cells}</ul></div>
<div class="card"><h2>MTTD / MTTA / MTTR</h2><p class="big">{h(minutes(ov.mttd_minutes))} / {h(minutes(ov.mtta_minutes))}
 / {h(minutes(ov.mttr_minutes))}</p>
<p class="hint">over the incidents of the last 7 days</p></div></section>""")
    if ov.slas:
        rows = []
        for r in ov.slas:
            burn = ", ".join(f"{k} {v:.2f}×" for k, v in r.burn.items() if v is not None and math.isfinite(v)) or "—"
            state = f"‼ violated ({r.severity})" if r.violated else "✔ within bounds"
            rows.append(Safe(f"<tr class=\"{'bad' if r.violated else ''}\"><th scope=\"row\">{h(r.name)}</th>"
                             f"<td>{h('—' if r.value is None else f'{r.value:.4g}')}</td><td>{h(f'{r.bound:.4g}')}</td>"
                             f"<td>{h('—' if r.compliance is None else f'{r.compliance:.1f}%')}</td><td>{h(state)}</td><td>{h(burn)}</td></tr>"))
        slas = Safe(f"""<section><h2>SLA compliance</h2><p class="hint">Evaluated {time_tag(ov.evaluated_at)}.</p>
<div class="scroll"><table><thead><tr><th scope="col">SLA</th><th scope="col">Value</th><th scope="col">Bound</th>
<th scope="col">Compliance</th><th scope="col">State</th><th scope="col">Error-budget burn</th></tr></thead>
<tbody>{join(rows)}</tbody></table></div></section>""")
    elif ov.monitored:
        slas = Safe('<section><h2>SLA compliance</h2><p class="empty">No SLA evaluation yet: the first arrives within one evaluation '
                    "interval of the engine's first requests.</p></section>")
    else:
        slas = Safe('<section><h2>SLA compliance</h2><p class="empty">No SLA evaluations in this process. This console reads the '
                    "incident store only; open the engine's <code>/console</code> (or the exporter's) for live SLA compliance.</p></section>")
    return Safe(cards + slas)


# -- incidents ---------------------------------------------------------------------------------------
def filter_form(ctx: PageContext, flt: IncidentFilter, path: str) -> Safe:
    def options(values: tuple[str, ...], chosen: str, blank: str) -> Safe:
        return join([tag("option", blank, value="")] + [tag("option", v, value=v, selected=v == chosen) for v in values])
    status_values = ("active", *STATUSES)
    return Safe(f"""<form method="get" action="{h(ctx.url(path))}" class="filters" role="search">
<label>Severity <select name="severity">{options(SEVERITIES, ",".join(flt.severities), "any")}</select></label>
<label>Status <select name="status">{options(status_values, flt.status_word, "any")}</select></label>
<label>Component <input name="component" value="{h(flt.component)}" placeholder="e.g. api"></label>
<label>Since <input name="since" value="{h(flt.since_text)}" placeholder="1h, 7d" size="6"></label>
<button type="submit">Filter</button> <a href="{h(ctx.url(path))}">Clear</a>
<span class="exports">Export: <a href="{h(ctx.url('/export.json', flt.query()))}">JSON</a> ·
<a href="{h(ctx.url('/export.csv', flt.query()))}">CSV</a></span></form>""")


def incidents_fragment(ctx: PageContext, flt: IncidentFilter, items: list[Incident]) -> Safe:
    if not items:
        what = "match these filters" if flt.active else "are recorded"
        return Safe(_notice_filters(flt) + tag("p", f"No incidents {what}. " + ("Clear the filters to see every incident."
                                                                                  if flt.active else "Incidents open here when an SLA is violated, "
                                                                                  "a detection rule fires or someone reports one."),
                                                class_="empty"))

    def head(key: str, label: str) -> Safe:
        desc = not (flt.sort == key and flt.descending)
        arrow = (" ▼" if flt.descending else " ▲") if flt.sort == key else ""
        sort = "ascending" if flt.sort == key and not flt.descending else "descending" if flt.sort == key else "none"
        return Safe(f'<th scope="col" aria-sort="{sort}"><a href="{h(ctx.url("/incidents", flt.query(sort=key, order="desc" if desc else "asc")))}">'
                    f"{h(label)}{h(arrow)}</a></th>")
    rows = []
    for i in items:
        comp = ", ".join(dict.fromkeys(i.labels[k] for k in COMPONENT_LABELS if i.labels.get(k))) or i.source or "—"
        rows.append(Safe(f"<tr class=\"sevrow-{h(i.severity.value)}\"><td><a href=\"{h(ctx.url('/incidents/' + i.incident_id))}\">"
                         f"{h(i.incident_id)}</a></td><td class=\"title\">{h(i.title)}</td><td>{severity_badge(i.severity.value)}</td>"
                         f"<td>{status_badge(i.status.value)}</td><td>{h(comp)}</td><td>{time_tag(i.detected_at)}</td>"
                         f"<td>{time_tag(i.updated_at)}</td><td>{h(i.assigned_to or '—')}</td></tr>"))
    return Safe(_notice_filters(flt) + Safe(f"""<p class="hint">{len(items)} incident(s).</p><div class="scroll"><table class="incidents">
<thead><tr>{head('id', 'ID')}{head('title', 'Title')}{head('severity', 'Severity')}{head('status', 'Status')}<th scope="col">Component</th>
{head('detected', 'Detected')}{head('updated', 'Updated')}<th scope="col">Assigned</th></tr></thead><tbody>{join(rows)}</tbody></table></div>"""))


def timeline_fragment(ctx: PageContext, flt: IncidentFilter, rows: list[views.TimelineRow]) -> Safe:
    if not rows:
        return Safe(_notice_filters(flt) + tag("p", "No activity yet for these incidents.", class_="empty"))
    items = [Safe(f"<li>{time_tag(r.at)} {severity_badge(r.severity)} <a href=\"{h(ctx.url('/incidents/' + r.incident_id))}\">"
                  f"{h(r.incident_id)}</a> <span class=\"title\">{h(r.title)}</span> — <span class=\"kind\">{h(r.kind)}</span>"
                  f" <span class=\"actor\">by {h(r.actor)}</span>"
                  f"<div class=\"msg\">{h(r.message)}</div></li>") for r in rows]
    return Safe(_notice_filters(flt) + tag("ol", items, class_="timeline"))


def metrics_fragment(ctx: PageContext, stats: dict[str, Any], trend: list[tuple[float, float]], now: float) -> Safe:
    rows = [("Total", stats.get("total")), ("Open", stats.get("open")), ("Resolved", stats.get("resolved")),
            ("Acknowledged", stats.get("acknowledged")), ("Escalated", stats.get("escalated")),
            ("Resolved automatically", stats.get("auto_resolved")),
            ("MTTD", minutes(stats.get("mttd_minutes"))), ("MTTA", minutes(stats.get("mtta_minutes"))), ("MTTR", minutes(stats.get("mttr_minutes")))]
    table = join(Safe(f"<tr><th scope=\"row\">{h(k)}</th><td>{h('—' if v is None else v)}</td></tr>") for k, v in rows)
    by_type = stats.get("by_type") or {}
    types = join(Safe(f"<tr><th scope=\"row\">{h(k)}</th><td>{h(v)}</td></tr>") for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]))
    chart = render_chart(Chart("Incidents opened per day (last 14 days)", "incidents", [Line("opened", trend, "l1")], (), now - 14 * 86_400, now))
    return Safe(f"""<section class="cols"><div><h2>Statistics</h2><table>{table}</table></div>
<div><h2>By type</h2>{tag('table', [types]) if by_type else tag('p', 'No incidents yet.', class_='empty')}</div></section>
<section><h2>Trend</h2>{chart}</section>""")


def components_fragment(ctx: PageContext, items: list[views.Component]) -> Safe:
    word = {"ok": "✔ OK", "degraded": "▲ Degraded", "down": "‼ Down", "off": "○ Off", "unknown": "? Unknown"}
    rows = join(Safe(f"<tr class=\"comp-{h(c.state)}\"><th scope=\"row\">{h(c.name)}</th><td>{h(word.get(c.state, c.state))}</td>"
                     f"<td>{h(c.detail)}</td></tr>") for c in items)
    return Safe(f"""<div class="scroll"><table><thead><tr><th scope="col">Component</th><th scope="col">State</th>
<th scope="col">Detail</th></tr></thead><tbody>{rows}</tbody></table></div>""")


# -- one incident ------------------------------------------------------------------------------------
def incident_summary(ctx: PageContext, i: Incident) -> Safe:
    labels = join(tag("li", Safe(f"<code>{h(k)}</code> = <code>{h(v)}</code>")) for k, v in sorted(i.labels.items())) or h("none")
    facts = [("Status", status_badge(i.status.value)), ("Severity", severity_badge(i.severity.value)), ("Type", h(i.incident_type.value)),
             ("Stage", h(i.stage)), ("Onset", time_tag(i.first_bad_at)), ("Detected", time_tag(i.detected_at)),
             ("Acknowledged", Safe(f"{time_tag(i.acknowledged_at)} {h(('by ' + i.acknowledged_by) if i.acknowledged_by else '')}")),
             ("Assigned to", h(i.assigned_to or "nobody")),
             ("Resolved", Safe(f"{time_tag(i.resolved_at)} {h(('by ' + i.resolved_by) if i.resolved_by else '')}")),
             ("MTTD / MTTA / MTTR", h(f"{minutes(i.mttd_minutes)} / {minutes(i.mtta_minutes)} / {minutes(i.mttr_minutes)}")),
             ("Escalation level", h(f"L{i.escalation_level}")), ("Source", h(i.source or "—")), ("Labels", Safe(f"<ul class='labels'>{labels}</ul>"))]
    dl = join(Safe(f"<dt>{h(k)}</dt><dd>{v}</dd>") for k, v in facts)
    desc = tag("p", i.description, class_="desc") if i.description else Safe("")
    notes = tag("p", f"Resolution notes: {i.resolution_notes}", class_="desc") if i.resolution_notes else Safe("")
    return Safe(f'<section class="summary"><dl>{dl}</dl>{desc}{notes}</section>')


def incident_timeline(i: Incident) -> Safe:
    if not i.timeline:
        return tag("p", "No events yet.", class_="empty")
    items = [Safe(f"<li>{time_tag(t.at)} <span class=\"kind\">{h(t.kind)}</span> <span class=\"actor\">by {h(t.actor)}</span>"
                  f"{(' <span class=stage>[' + h(t.stage) + ']</span>') if t.stage else ''}<div class=\"msg\">{h(t.message)}</div></li>")
             for t in i.timeline]
    audit = join(Safe(f"<tr><td>{time_tag(a.at)}</td><td>{h(a.actor)}</td><td>{h(a.action)}</td><td>{h(a.detail)}</td></tr>") for a in i.audit)
    return Safe(tag("ol", items, class_="timeline") + Safe(
        f"<details><summary>Audit trail ({len(i.audit)})</summary><div class=\"scroll\"><table><thead><tr><th scope=\"col\">When</th>"
        f"<th scope=\"col\">Who</th><th scope=\"col\">Action</th><th scope=\"col\">Detail</th></tr></thead>"
        f"<tbody>{audit}</tbody></table></div></details>"))


def rca_section(i: Incident) -> Safe:
    if not i.root_cause:
        return tag("p", "No root-cause analysis for this incident yet. It appears here when the RCA engine reports one "
                   "(it runs when an SLA violation opens an incident).", class_="empty")
    d = i.root_cause_detail or {}
    analysis = d.get("analysis") if isinstance(d.get("analysis"), dict) else {}
    conf = d.get("confidence")
    conf_text = f"{conf:.0%}" if isinstance(conf, (int, float)) else str(conf)
    parts = [Safe(f"<p><strong>Primary cause:</strong> {h(i.root_cause)}"
                  + (f" <span class=\"hint\">({h(d.get('category', ''))}, confidence {h(conf_text)})</span>" if d else "")
                  + "</p>")]
    for key, title in (("evidence", "Evidence"), ("leading_indicators", "Leading indicators"), ("hypotheses", "Other hypotheses"),
                       ("recommendations", "Recommendations")):
        value = analysis.get(key) if analysis else None
        if value:
            items = value if isinstance(value, list) else [value]
            parts.append(Safe(f"<h3>{h(title)}</h3>" + tag("ul", [tag("li", _describe(v)) for v in items[:20]])))
    return join(parts)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return str(value)


def executions_section(rows: list[Any], recovery_present: bool) -> Safe:
    if not recovery_present:
        return tag("p", "Recovery is not running in this process; its executions are listed on the engine's console.", class_="empty")
    if not rows:
        return tag("p", "No recovery execution for this incident.", class_="empty")
    out = []
    for e in rows:
        acts = join(tag("li", Safe(f"<code>{h(a.action.value)}</code> {h(a.outcome.value)}"
                                   f"{_verification(a)}"
                                   f"{' (rolled back)' if a.rolled_back else ''}")) for a in e.actions) or h("no action yet")
        out.append(Safe(f"<li><strong>{h(e.procedure_id)}</strong> {h(e.status.value)}{' (advisory)' if e.advisory else ''} "
                        f"started {time_tag(e.started_at)}{h(' — ' + e.reason) if e.reason else ''}"
                        f"{_chosen_by(e)}<ul>{acts}</ul></li>"))
    return tag("ul", out, class_="executions")


def _chosen_by(e: Any) -> Safe:
    """Why a root cause's procedure ran (recovery.root_cause), with the evidence RCA gave."""
    basis = getattr(e, "root_cause", None)
    if basis is None:
        return Safe("")
    evidence = "; ".join(basis.evidence)
    return Safe(f"<br>chosen by {h(basis.summary())}{h(' — evidence: ' + evidence) if evidence else ''}")


def _verification(a: Any) -> Safe:
    if a.verified:
        return Safe(" — verified: " + h(a.verification))
    return Safe(" — not verified: " + h(a.verification)) if a.verification else Safe("")


def approvals_section(ctx: PageContext, i: Incident, rows: list[views.ApprovalRow]) -> Safe:
    if not rows:
        return tag("p", "No action is waiting for approval.", class_="empty")
    out = []
    for r in rows:
        forms = Safe("")
        if ctx.can_act:
            base = ctx.url(f"/incidents/{i.incident_id}/approvals/{r.request_id}")
            forms = Safe(f"""<form method="post" action="{h(base + '/approve')}" class="inline">{csrf_input(ctx)}
<button type="submit" class="primary">Approve {h(r.action)}</button></form>
<form method="post" action="{h(base + '/deny')}" class="inline">{csrf_input(ctx)}<label class="sr">Reason
<input name="reason" placeholder="reason (optional)"></label> <button type="submit">Deny</button></form>""")
        expires = time_tag(r.expires_at) if math.isfinite(r.expires_at) else h("—")
        where = "" if r.linked else " (waiting on this engine, not linked to an incident)"
        out.append(Safe(f"<li class=\"approval\"><strong>{h(r.action or r.request_id)}</strong> <code>{h(r.request_id)}</code> "
                        f"{h(r.detail)}{h(where)} — denied automatically at {expires}<div>{forms}</div></li>"))
    return tag("ul", out, class_="approvals")


def notifications_section(src: views.ConsoleSources, i: Incident) -> Safe:
    rows = deliveries_of(src.notifications, i.incident_id)
    if rows is None:
        return tag("p", "No notifier in this process: notifications are not configured here (see incident_response.notifications).",
                   class_="empty")
    if not rows:
        return tag("p", "No notification sent for this incident.", class_="empty")
    body = join(Safe(f"<tr><td>{h(d.channel)}</td><td>{h(d.receiver)}</td><td>{h(d.state)}</td><td>{h(d.attempts)}</td>"
                     f"<td>{time_tag(d.at)}</td><td>{h(d.detail)}</td></tr>") for d in rows)
    return Safe(f"""<div class="scroll"><table><thead><tr><th scope="col">Channel</th><th scope="col">Receiver</th><th scope="col">State</th>
<th scope="col">Attempts</th><th scope="col">When</th><th scope="col">Detail</th></tr></thead><tbody>{body}</tbody></table></div>""")


def actions_section(ctx: PageContext, i: Incident, risky: frozenset[str], recovery_present: bool) -> Safe:
    if not ctx.actions_enabled:
        return tag("p", "Actions are disabled: no API token is configured (set APHRODITE_SLA_API_TOKEN where the console runs).", class_="empty")
    if not ctx.can_act:
        return Safe(f'<p class="empty"><a href="{h(ctx.url("/sign-in", "next=" + ctx.url("/incidents/" + i.incident_id)))}">Sign in with the '
                    "API token</a> to acknowledge, assign, mitigate or resolve.</p>")
    if not i.is_open:
        return tag("p", f"This incident is {i.status.value}: no action is left.", class_="empty")
    base = ctx.url(f"/incidents/{i.incident_id}")
    opts = join(tag("option", f"{a.value}{' (needs approval)' if a.value in risky else ''}", value=a.value) for a in RecoveryAction)
    mitigate = Safe(f"""<form method="post" action="{h(base + '/mitigate')}">{csrf_input(ctx)}<label>Mitigate with
<select name="action" required>{opts}</select></label> <button type="submit">Mitigate</button>
<p class="hint">Actions marked “needs approval” wait for a second decision below before they run.</p></form>""") if recovery_present else \
        tag("p", "Mitigation runs recovery actions; recovery is not running in this process.", class_="hint")
    ack = Safe("") if i.acknowledged_at is not None else Safe(
        f'<form method="post" action="{h(base + "/acknowledge")}" class="inline">{csrf_input(ctx)}'
        '<button type="submit" class="primary">Acknowledge</button></form>')
    return Safe(f"""<div class="actions">{ack}
<form method="post" action="{h(base + '/assign')}" class="inline">{csrf_input(ctx)}<label>Assign to <input name="assignee" required
 value="{h(i.assigned_to or ctx.who)}" size="12"></label> <button type="submit">Assign</button></form>
{mitigate}
<form method="post" action="{h(base + '/resolve')}">{csrf_input(ctx)}<label>Resolution notes<br><textarea name="notes" rows="3" cols="40"
 placeholder="what fixed it"></textarea></label><br><button type="submit">Resolve</button></form></div>""")


def incident_live(ctx: PageContext, src: views.ConsoleSources, i: Incident) -> Safe:
    """The parts of the incident page that change: summary, approvals, timeline, executions, RCA,
    charts, notifications (the forms that people type into stay outside)."""
    charts = views.incident_charts(src, i)
    if charts is None:
        chart_html = tag("p", "SLI charts are drawn from the monitor's in-process series: open this incident on the engine's "
                         "/console (or the exporter's) to see them.", class_="empty")
    else:
        chart_html = Safe('<div class="charts">' + join(render_chart(c) for c in charts) + "</div>")
    return Safe(f"""{incident_summary(ctx, i)}
<section><h2>Waiting for approval</h2>{approvals_section(ctx, i, views.pending_approvals(src, i))}</section>
<section><h2>Root cause</h2>{rca_section(i)}</section>
<section><h2>SLIs around the incident</h2>{chart_html}</section>
<section><h2>Timeline</h2>{incident_timeline(i)}</section>
<section><h2>Recovery executions</h2>{executions_section(views.executions(src, i), src.recovery is not None)}</section>
<section><h2>Notifications</h2>{notifications_section(src, i)}</section>""")


def incident_page(ctx: PageContext, src: views.ConsoleSources, i: Incident, risky: frozenset[str], postmortem: str | None) -> Safe:
    live = incident_live(ctx, src, i)
    pm = (Safe(f'<section><h2>Post-mortem</h2><div class="markdown">{render_markdown(postmortem)}</div></section>') if postmortem
          else Safe('<section><h2>Post-mortem</h2><p class="empty">Written when the incident is resolved.</p></section>'))
    actions = Safe(f"<section><h2>Actions</h2>{actions_section(ctx, i, risky, src.recovery is not None)}</section>")
    exports = Safe(f'<p class="exports">Export: <a href="{h(ctx.url("/incidents/" + i.incident_id + ".json"))}">JSON</a></p>')
    page = layout(ctx, f"{i.incident_id}: {i.title}", "incidents", live, live=f"incident/{i.incident_id}")
    # actions and the post-mortem sit outside the live region (a refresh must not wipe what someone types)
    return Safe(page.replace('<p class="refresh">', actions + pm + exports + '<p class="refresh">', 1))


def trend_points(incidents: list[Incident], now: float, days: int = 14) -> list[tuple[float, float]]:
    start_day = math.floor(now / 86_400) - days + 1
    counts = Counter(math.floor(i.detected_at / 86_400) for i in incidents)
    return [((start_day + d) * 86_400 + 43_200, float(counts.get(start_day + d, 0))) for d in range(days)]


def sign_in_page(ctx: PageContext, next_url: str, message: str = "", retry_after: float = 0.0) -> Safe:
    err = tag("p", message, class_="flash err", role="alert") if message else Safe("")
    disabled = "" if ctx.actions_enabled else tag("p", "No API token is configured where the console runs: sign-in and every action are "
                                                   "disabled. Set APHRODITE_SLA_API_TOKEN and restart.", class_="flash err")
    body = Safe(f"""{err}{disabled}<form method="post" action="{h(ctx.url('/sign-in'))}" class="signin">{csrf_input(ctx)}
<input type="hidden" name="next" value="{h(next_url)}">
<p><label>Your name (recorded in the audit trail)<br><input name="who" required autocomplete="username" maxlength="80"></label></p>
<p><label>API token<br><input name="token" type="password" required autocomplete="current-password"></label></p>
<p><button type="submit" class="primary">Sign in</button></p>
<p class="hint">The token is the server's APHRODITE_SLA_API_TOKEN. Signing in sets a session cookie (HttpOnly, SameSite=Strict).</p></form>""")
    return layout(ctx, "Sign in", "", body)


def error_page(ctx: PageContext, status: int, message: str) -> Safe:
    return layout(ctx, f"{status}", "", Safe(tag("p", message, class_="flash err", role="alert")
                                             + Safe(f'<p><a href="{h(ctx.url("/"))}">Back to the overview</a></p>')))


SORT_HELP = ", ".join(SORT_KEYS)
