"""The RCA REST API under ``/api/v1/rca``: the analyses RCA made (recent first, filtered, paged),
one analysis as JSON or markdown, and an analysis run now for an SLA.

Why on recovery's router (``recovery.api_routing``): the same rules as every other route of ours —
127.0.0.1 by default, a bearer token compared in constant time for anything that changes state or
costs work (``POST /analyze``; no token configured: refused), validated query and body with 4xx
naming the field, and the OpenAPI description from the route table. ``POST /analyze`` runs on
RCA's own worker thread, one at a time (429 while one runs); the ASGI middleware and the
standalone exporter call ``handle`` on a worker thread, never on the engine's event loop.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aphrodite_sla.rca.model import RCAAnalysis
from aphrodite_sla.rca.report import to_markdown
from aphrodite_sla.recovery.api_routing import ApiError, ApiRequest, Field, Route, Router
from aphrodite_sla.recovery.model import plain

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.export.endpoints import Response
    from aphrodite_sla.rca.service import RCAService

RCA_PREFIX = "/api/v1/rca"
MAX_PAGE = 200

_LIST_QUERY = {
    "sla": Field(str, description="the SLA (or the SLI series) analysed"),
    "cause": Field(str, description="the primary cause's name, e.g. kv_cache_exhaustion, or insufficient_evidence"),
    "since": Field(float, minimum=0, description="analysed at or after (the monitor's clock, epoch seconds)"),
    "limit": Field(int, minimum=1, maximum=MAX_PAGE, description="page size (default 50)"),
    "offset": Field(int, minimum=0, maximum=1_000_000),
}


def summary(analysis: RCAAnalysis, sla: str) -> dict[str, Any]:
    """One line of the listing: what was found, how sure, what to do."""
    p = analysis.primary_root_cause
    return {"episode": analysis.episode, "sla": sla or analysis.sla, "sli": analysis.sla, "cause": p.cause, "category": p.category,
            "metric": p.metric, "confidence": _finite(p.confidence), "insufficient_evidence": analysis.insufficient_evidence,
            "analyzed_at": _finite(analysis.analyzed_at), "detected_at": _finite(analysis.detected_at),
            "onset_at": _finite(analysis.onset_at), "duration_s": _finite(analysis.duration_s),
            "recommendations": [r.action for r in analysis.recommendations]}


class RCAApi:
    """The routes of one ``RCAService``; ``handle(request)`` answers one request."""

    def __init__(self, service: RCAService, token: str | None) -> None:
        self.service = service
        self.router = Router(RCA_PREFIX, self._routes(), token)

    def owns(self, path: str) -> bool:
        return self.router.owns(path)

    def handle(self, request: ApiRequest) -> Response:
        return self.router.handle(request)

    def openapi_paths(self) -> dict[str, Any]:
        return self.router.openapi_paths()

    def _routes(self) -> list[Route]:
        s = self.service

        def listing(p: dict[str, str], b: dict[str, Any]) -> Any:
            sla, cause = p.get("sla"), p.get("cause")
            since = float(p["since"]) if "since" in p else None
            limit, offset = int(p.get("limit", 50)), int(p.get("offset", 0))
            rows = []
            for a in reversed(s.analyses()):  # newest first
                name = s.sla_of(a.episode)
                if sla and sla not in (name, a.sla):
                    continue
                if cause and a.primary_root_cause.cause != cause:
                    continue
                if since is not None and not a.analyzed_at >= since:
                    continue
                rows.append(summary(a, name))
            page = rows[offset:offset + limit]
            return {"analyses": page, "total": len(rows), "limit": limit, "offset": offset,
                    "next_offset": offset + limit if offset + limit < len(rows) else None}

        def one(p: dict[str, str], b: dict[str, Any]) -> Any:
            a = s.analysis(p["episode"])
            if a is None:
                raise ApiError(404, f"no analysis of episode {p['episode']!r} (kept: the last {len(s.analyses())})")
            if p.get("format") == "markdown":
                return {"episode": a.episode, "sla": s.sla_of(a.episode), "markdown": to_markdown(a)}
            return plain({**a.to_dict(), "sla_name": s.sla_of(a.episode)})

        def analyze(p: dict[str, str], b: dict[str, Any]) -> Any:
            from aphrodite_sla.rca.service import AnalysisBusy

            sla = b["sla"]
            try:
                a = s.analyze_now(sla, by=str(b.get("by") or "api"))
            except KeyError:
                known = ", ".join(sorted(s.context.manager.thresholds))
                raise ApiError(404, f"unknown SLA {sla!r}; known: {known}") from None
            except AnalysisBusy as err:
                raise ApiError(429, str(err)) from None
            except TimeoutError:
                raise ApiError(504, "the analysis did not finish in time; it goes on and will be listed") from None
            return plain({**a.to_dict(), "sla_name": sla})

        return [
            Route("GET", "/analyses", listing, "Recent root-cause analyses, newest first (filter by SLA, cause, time; paged)",
                  query=_LIST_QUERY),
            Route("GET", "/analyses/{episode}", one, "One analysis: the JSON report, or ?format=markdown",
                  query={"format": Field(str, choices=("json", "markdown"), description="json (default) or markdown")}),
            Route("POST", "/analyze", analyze, "Run an analysis now for an SLA (one at a time: 429 while one runs)", mutating=True,
                  body={"sla": Field(str, required=True, description="an SLA name (GET /api/v1/rca/analyses lists analysed ones)"),
                        "by": Field(str, description="who asks (kept in the analysis's diagnostics)")}),
        ]


def _finite(value: float) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def with_rca_routes(rca: Any, fallback: Any) -> Any:
    """One API handler for the standalone exporter: ``/api/v1/rca`` to RCA, the rest to ``fallback``."""
    if rca is None:
        return fallback

    def handle(request: ApiRequest) -> Response:
        if rca.api.owns(request.path):
            return rca.api.handle(request)
        return fallback(request)

    return handle


__all__ = ["RCA_PREFIX", "RCAApi", "summary", "with_rca_routes"]
