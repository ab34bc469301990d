"""An analysis as JSON (``RCAAnalysis.to_dict``) or as markdown for an incident or a post-mortem."""
from __future__ import annotations

import json

from aphrodite_sla.rca.model import RCAAnalysis

MAX_ROWS = 8


def to_json(analysis: RCAAnalysis) -> str:
    return json.dumps(analysis.to_dict(), default=str, sort_keys=True)


def to_markdown(analysis: RCAAnalysis) -> str:
    a = analysis
    p = a.primary_root_cause
    lines = [f"## Root cause analysis: {a.sla}", ""]
    if a.insufficient_evidence:
        lines += ["**Insufficient evidence** — no cause is named:", *[f"- {r}" for r in a.insufficient_reasons], ""]
    else:
        lines += [f"**{p.cause}** ({p.category}, confidence {p.confidence:.0%}) — root metric `{p.metric}`", "",
                  p.description, ""]
        if p.evidence_for:
            lines += ["Evidence for:", *[f"- {e}" for e in p.evidence_for], ""]
        if p.evidence_against:
            lines += ["Evidence against:", *[f"- {e}" for e in p.evidence_against], ""]
    lines.append(f"Onset {a.onset_at:.0f}, detected {a.detected_at:.0f} (analysis {1000 * a.duration_s:.0f} ms).")
    lines.append("")
    if a.alternatives:
        lines += ["| alternative | category | metric | score |", "|---|---|---|---|"]
        lines += [f"| {c.cause} | {c.category} | {c.metric} | {c.score:.2f} |" for c in a.alternatives[:MAX_ROWS]]
        lines.append("")
    if a.leading_indicators:
        lines += ["| leading indicator | lead (s) |", "|---|---|"]
        lines += [f"| {li.metric} | {li.lead_s:.0f} |" for li in a.leading_indicators[:MAX_ROWS]]
        lines.append("")
    sig = [c for c in a.correlations if c.significant]
    if sig:
        lines += ["| correlated with the SLI | Pearson r | Spearman rho | p (BH) |", "|---|---|---|---|"]
        lines += [f"| {c.metric} | {c.pearson:.2f} | {c.spearman:.2f} | {c.p_adjusted:.1e} |" for c in sig[:MAX_ROWS]]
        lines += ["", "_Correlation is reported, not used to name the cause: symptoms correlate with each other._", ""]
    if a.recommendations:
        lines += ["Recommendations:", *[f"- `{r.action}`: {r.reason}" for r in a.recommendations]]
    return "\n".join(lines) + "\n"
