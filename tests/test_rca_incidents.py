"""RCA in incidents: the post-mortem carries the primary cause, its root metric, the evidence for
and against, the leading indicator and the recommendations; a procedure a root cause chose is
on the incident's timeline with the cause and its confidence."""
from __future__ import annotations

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.events import RecoveryStarted, RootCauseFound
from aphrodite_sla.incidents.postmortem import render_postmortem
from aphrodite_sla.rca.model import LeadingIndicator, RCAAnalysis, Recommendation, RootCause
from tests.test_incidents import T0, build, drive


def _analysis() -> RCAAnalysis:
    primary = RootCause("kv_cache_exhaustion", "infrastructure", "kv_cache_usage_percent",
                        "KV-cache usage rose from 36% to 97% with no rise in load to explain it", 0.86, 5.1,
                        evidence_for=("kv_cache_usage_percent +6.2 IQRs, saturated",), evidence_against=("arrival rate unchanged",))
    return RCAAnalysis("ttft_ms", T0 + 60, T0 - 30, T0, primary,
                       leading_indicators=[LeadingIndicator("kv_cache_usage_percent", 45.0, T0 - 75)],
                       recommendations=[Recommendation("cache_invalidation", "Free KV blocks (reset the prefix cache)", "kv_cache_exhaustion")])


def test_the_postmortem_has_the_cause_evidence_leading_indicator_and_recommendations(tmp_path):
    clock = ManualClock(T0)
    ctx, system, _ = build(tmp_path, clock)
    drive(ctx, clock, 1000.0, 60)
    inc = system.store.page().items[0]
    ctx.events.publish([
        RootCauseFound(inc.fingerprint, "ep", clock(), "lat_p95", "kv_cache_exhaustion", "infrastructure", 0.86, _analysis()),
        RecoveryStarted(inc.fingerprint, "ep", clock(), "rec-1", "rca_kv_cache_exhaustion", "lat_p95",
                        reason="root cause kv_cache_exhaustion (infrastructure, confidence 86%): runs cache_invalidation"),
    ])
    ctx.events.drain()
    done = system.store.get(inc.incident_id)
    started = next(t for t in done.timeline if t.kind == "recovery_started")
    assert "rca_kv_cache_exhaustion" in started.message and "confidence 86%" in started.message
    assert started.data["reason"].startswith("root cause kv_cache_exhaustion")
    post = render_postmortem(done)
    root = post[post.index("## Root cause"):post.index("## Resolution and recovery")]
    assert "**kv_cache_exhaustion** (infrastructure, confidence 86%)" in root
    assert "Root metric `kv_cache_usage_percent`: KV-cache usage rose from 36% to 97%" in root
    assert "- Evidence for: kv_cache_usage_percent +6.2 IQRs, saturated" in root
    assert "- Evidence against: arrival rate unchanged" in root
    assert "- Leading indicator: `kv_cache_usage_percent` moved 45 s before the SLI" in root
    assert "- Recommendation: `cache_invalidation` — Free KV blocks (reset the prefix cache)" in root
    assert "rca_kv_cache_exhaustion" in post[post.index("## Resolution and recovery"):]  # what recovery did, and why
    system.close()
