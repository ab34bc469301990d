"""``aphrodite-sla rca list|show EPISODE|analyze SLA``: root-cause analyses of a running server.

Why only over HTTP: the analyses live in the monitor's process (an hour of binned series and the
last analyses); a separate process has neither. Same style and exit codes as ``incidents``: 0 done;
1 not found (404); 2 bad input (400, usage); 3 unreachable or not authorised (connection refused,
401, 403); 4 other (429 busy, 504 timeout, 5xx).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote, urlencode

from aphrodite_sla.incidents.cli import _EXIT_BY_STATUS, EXIT_OTHER, CliError, _print_json, _since, _table, _when, http_json

DEFAULT_SERVER = "http://127.0.0.1:8000"
PREFIX = "/api/v1/rca"


class RCAClient:
    """Calls the RCA API of ``--server`` (default ``$APHRODITE_SLA_SERVER`` or the engine's port)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.server = (args.server or os.environ.get("APHRODITE_SLA_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.token = args.token or os.environ.get("APHRODITE_SLA_API_TOKEN", "")
        self.timeout_s = float(getattr(args, "timeout", 60.0))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None) -> Any:
        query = {k: str(v) for k, v in (query or {}).items() if v is not None}
        url = self.server + PREFIX + path + (f"?{urlencode(query)}" if query else "")
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        data = json.dumps(body).encode() if body is not None else None
        status, payload = http_json(url, method, data, headers, self.timeout_s, self.server)
        if status >= 400:
            message = payload.get("error", payload) if isinstance(payload, dict) else payload
            raise CliError(_EXIT_BY_STATUS.get(status, EXIT_OTHER), f"{status}: {message}")
        return payload


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value:.0%}"


def _list(c: RCAClient, a: argparse.Namespace) -> int:
    page = c.call("GET", "/analyses", query={"sla": a.sla, "cause": a.cause, "since": _since(a.since), "limit": a.limit,
                                             "offset": a.offset})
    if a.json:
        _print_json(page)
        return 0
    rows = [[r["episode"], r["sla"], r["cause"], r["category"] or "—", _pct(r["confidence"]), r["metric"] or "—",
             _when(r["analyzed_at"]), ", ".join(r["recommendations"]) or "—"] for r in page["analyses"]]
    _table(f"root-cause analyses ({page['total']} matching)",
           ["episode", "sla", "cause", "category", "confidence", "root metric", "analysed (UTC)", "recommended"], rows)
    return 0


def _show(c: RCAClient, a: argparse.Namespace) -> int:
    path = f"/analyses/{quote(a.episode, safe='')}"
    if a.markdown:
        print(c.call("GET", path, query={"format": "markdown"})["markdown"], end="")
        return 0
    report = c.call("GET", path)
    if a.json:
        _print_json(report)
    else:
        _print_summary(report)
    return 0


def _print_summary(report: dict[str, Any]) -> None:
    p = report["primary_root_cause"]
    print(f"{report.get('episode') or '—'}: {report.get('sla_name') or report['sla']}")
    if report.get("insufficient_evidence"):
        print("  insufficient evidence — no cause is named:")
        for reason in report.get("insufficient_reasons", []):
            print(f"    - {reason}")
    else:
        print(f"  cause: {p['cause']} ({p['category']}, confidence {_pct(p['confidence'])}), root metric {p['metric']}")
        print(f"  {p['description']}")
        for e in p.get("evidence_for", []):
            print(f"    + {e}")
        for e in p.get("evidence_against", []):
            print(f"    - {e}")
    for li in report.get("leading_indicators", [])[:3]:
        print(f"  leading indicator: {li['metric']} moved {li['lead_s']:.0f} s before the SLI")
    for r in report.get("recommendations", []):
        print(f"  recommended: {r['action']} — {r['reason']}")


def _analyze(c: RCAClient, a: argparse.Namespace) -> int:
    report = c.call("POST", "/analyze", {"sla": a.sla, **({"by": a.by} if a.by else {})})
    if a.json:
        _print_json(report)
    elif a.markdown:
        print(c.call("GET", f"/analyses/{quote(report['episode'], safe='')}", query={"format": "markdown"})["markdown"], end="")
    else:
        _print_summary(report)
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.action(RCAClient(args), args) or 0)
    except CliError as err:
        print(f"aphrodite-sla rca: {err}", file=sys.stderr)
        return err.code


def register_rca_commands(sub: Any) -> None:
    rca = sub.add_parser("rca", help="root-cause analyses of a running server: list, show, analyse now")
    rsub = rca.add_subparsers(dest="rca_command", required=True)

    def cmd(name: str, action: Any, help_text: str) -> argparse.ArgumentParser:
        p = rsub.add_parser(name, help=help_text)
        p.add_argument("--server", help=f"the server's base URL (default: $APHRODITE_SLA_SERVER or {DEFAULT_SERVER})")
        p.add_argument("--token", help="the API token (default: $APHRODITE_SLA_API_TOKEN)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=_run, action=action)
        return p

    p = cmd("list", _list, "recent analyses, newest first")
    p.add_argument("--sla")
    p.add_argument("--cause")
    p.add_argument("--since", help="epoch seconds or a duration ago (30m, 2h, 7d)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p = cmd("show", _show, "one analysis (by its episode)")
    p.add_argument("episode")
    p.add_argument("--markdown", action="store_true", help="the markdown report")
    p = cmd("analyze", _analyze, "run an analysis now for an SLA (needs the token)")
    p.add_argument("sla")
    p.add_argument("--markdown", action="store_true", help="print the markdown report")
    p.add_argument("--by", help="who asks (kept in the analysis)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
