"""``aphrodite-sla incidents ...`` and ``aphrodite-sla rules list|show|enable|disable|update|create|test``.

Why every command goes through the incidents API: against a running server (``--server URL``,
token from ``--token`` or ``APHRODITE_SLA_API_TOKEN``) it is an HTTP call; against the store
directly (``--store PATH`` / ``--database-url``, or the configuration's) the same router answers
in-process, so validation, the lifecycle and the audit trail are the same either way.

Exit codes scripts can trust: 0 done; 1 not found or not allowed now (404, 409); 2 bad input
(400, a usage error); 3 cannot reach or not authorised (connection refused, 401, 403); 4 other.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from aphrodite_sla.incidents.model import IncidentSeverity, IncidentStatus, IncidentType

EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_OTHER = 1, 2, 3, 4
_EXIT_BY_STATUS = {400: EXIT_USAGE, 413: EXIT_USAGE, 401: EXIT_UNREACHABLE, 403: EXIT_UNREACHABLE, 404: EXIT_NOT_FOUND, 405: EXIT_USAGE,
                   409: EXIT_NOT_FOUND}


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def http_json(url: str, method: str, data: bytes | None, headers: dict[str, str], timeout_s: float, server: str) -> tuple[int, Any]:
    """(status, JSON payload) of one call to our API; an error status's body is read as JSON too
    (its reason when it is not). Unreachable: ``CliError(EXIT_UNREACHABLE)``; an answer that is
    not JSON (not our server): ``CliError(EXIT_OTHER)``. Shared by the ``incidents`` and ``rca`` CLIs."""
    request = urllib.request.Request(url, data=data, method=method, headers={**headers, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"{}")
        except ValueError:
            return err.code, {"error": err.reason}
    except (urllib.error.URLError, OSError) as err:
        raise CliError(EXIT_UNREACHABLE, f"cannot reach {server}: {getattr(err, 'reason', err)}") from None
    except ValueError as err:
        raise CliError(EXIT_OTHER, f"{server} did not answer JSON: {err}") from None


class Client:
    """Calls the incidents API on a server or in-process on the store."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.server = (args.server or "").rstrip("/")
        self.token = args.token or os.environ.get("APHRODITE_SLA_API_TOKEN", "")
        self._system: Any = None
        if not self.server:
            self._open_store(args)

    def _open_store(self, args: argparse.Namespace) -> None:
        from aphrodite_sla.incidents.config import parse_incident_config
        from aphrodite_sla.incidents.service import IncidentSystem
        from aphrodite_sla.incidents.store import IncidentStore, sqlite_url

        raw: dict[str, Any] = {}
        if os.environ.get("APHRODITE_SLA_CONFIG"):
            from aphrodite_sla.config import ConfigError, load_config

            try:
                raw = dict(load_config().incident_response)
            except ConfigError as err:
                raise CliError(EXIT_USAGE, str(err)) from None
        config = parse_incident_config(raw)
        url = args.database_url or (sqlite_url(args.store) if args.store else config.url)
        try:
            store = IncidentStore(url, replica=config.replica)
        except Exception as err:
            raise CliError(EXIT_UNREACHABLE, f"cannot open the incident store {url}: {err}") from None
        self.token = secrets.token_hex(16)  # in-process: this command is the store's owner
        self._system = IncidentSystem(config, store, clock=time.time, api_token=self.token)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None) -> Any:
        query = {k: str(v) for k, v in (query or {}).items() if v is not None}
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if self._system is not None:
            from aphrodite_sla.recovery.api_routing import ApiRequest

            response = self._system.api.handle(ApiRequest(method, path, query, headers, data))
            status, payload = response.status, json.loads(response.body)
        else:
            url = self.server + path + (f"?{urlencode(query)}" if query else "")
            status, payload = http_json(url, method, data if method != "GET" else None, headers, 10.0, self.server)
        if status >= 400:
            raise CliError(_EXIT_BY_STATUS.get(status, EXIT_OTHER), f"{status}: {payload.get('error', payload)}")
        return payload

    def close(self) -> None:
        if self._system is not None:
            self._system.close()


# -- output ------------------------------------------------------------------------------------------
def _when(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # piped: no wrapping at 80 columns


def _incident_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    return [[i["id"], i["severity"], i["status"], i["type"], f"L{i['escalation_level']}" if i["escalation_level"] else "—",
             _when(i["detected_at"]), i["title"][:60]] for i in items]


_INCIDENT_COLUMNS = ["id", "severity", "status", "type", "esc", "detected (UTC)", "title"]


# -- commands ----------------------------------------------------------------------------------------
def _since(value: str | None) -> float | None:
    """``--since``: epoch seconds, or a duration ago (30m, 2h, 7d)."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if value[-1:] in units:
            return time.time() - float(value[:-1]) * units[value[-1]]
        return float(value)
    except ValueError:
        raise CliError(EXIT_USAGE, f"--since: a time (epoch seconds) or a duration like 30m, 2h, 7d; got {value!r}") from None


def _by(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def _run(args: argparse.Namespace) -> int:
    client = None
    try:
        client = Client(args)
        return int(args.action(client, args) or 0)
    except CliError as err:
        print(f"aphrodite-sla {args.command}: {err}", file=sys.stderr)
        return err.code
    finally:
        if client is not None:
            client.close()


def _list(c: Client, a: argparse.Namespace) -> int:
    page = c.call("GET", "/api/incidents", query={"status": a.status, "severity": a.severity, "type": a.type, "since": _since(a.since),
                                                  "limit": a.limit, "offset": a.offset})
    if a.json:
        _print_json(page)
    else:
        _table(f"incidents ({page['total']} matching)", _INCIDENT_COLUMNS, _incident_rows(page["incidents"]))
    return 0


def _get(c: Client, a: argparse.Namespace) -> int:
    inc = c.call("GET", f"/api/incidents/{a.id}")
    if a.json:
        _print_json(inc if a.full or a.timeline else {k: v for k, v in inc.items() if k not in ("timeline", "audit", "root_cause_detail")})
        return 0
    for key in ("id", "title", "severity", "status", "type", "stage", "detected_at", "acknowledged_by", "assigned_to", "resolved_at",
                "root_cause", "escalation_level", "mttd_minutes", "mtta_minutes", "mttr_minutes"):
        value = inc[key]
        print(f"{key:>18}: {_when(value) if key.endswith('_at') else value}")
    if a.timeline or a.full:
        _print_timeline(inc)
    if a.full:
        for entry in inc["audit"]:
            print(f"  audit {_when(entry['at'])} {entry['actor']}: {entry['action']} {entry['detail']}")
    return 0


def _print_timeline(inc: dict[str, Any]) -> None:
    _table(f"timeline of {inc['id']}", ["time (UTC)", "stage", "kind", "what", "by"],
           [[_when(t["at"]), t["stage"], t["kind"], t["message"][:80], t["actor"]] for t in inc["timeline"]])


def _timeline(c: Client, a: argparse.Namespace) -> int:
    data = c.call("GET", f"/api/incidents/{a.id}/timeline")
    if a.json:
        _print_json(data)
    else:
        _print_timeline(data)
    return 0


def _show_one(a: argparse.Namespace, inc: dict[str, Any]) -> int:
    if getattr(a, "json", False):
        _print_json(inc)
    else:
        print(f"{inc['id']}: {inc['status']} ({inc['severity']}) {inc['title']}")
    return 0


def _create(c: Client, a: argparse.Namespace) -> int:
    body = {"title": a.title, "severity": a.severity, "type": a.type, "by": _by(a)}
    if a.description:
        body["description"] = a.description
    return _show_one(a, c.call("POST", "/api/incidents", body))


def _simulate(c: Client, a: argparse.Namespace) -> int:
    body = {"title": f"simulated {a.type} incident", "severity": a.severity, "type": a.type, "by": _by(a),
            "description": "created by `aphrodite-sla incidents simulate` to exercise notifications and the workflow",
            "labels": {"simulated": "true"}}
    return _show_one(a, c.call("POST", "/api/incidents", body))


def _update(c: Client, a: argparse.Namespace) -> int:
    body = {"status": a.status, "by": _by(a)}
    if a.message:
        body["message"] = a.message
    return _show_one(a, c.call("POST", f"/api/incidents/{a.id}/status", body))


def _simple(path: str, **fields: str) -> Any:
    def action(c: Client, a: argparse.Namespace) -> int:
        body = {"by": _by(a), **{k: getattr(a, v) for k, v in fields.items() if getattr(a, v) is not None}}
        return _show_one(a, c.call("POST", f"/api/incidents/{a.id}/{path}", body))
    return action


def _mitigate(c: Client, a: argparse.Namespace) -> int:
    inc = c.call("GET", f"/api/incidents/{a.id}")
    if a.list_actions or not a.action:
        pending = inc["pending_approvals"]
        if a.json:
            _print_json({"id": inc["id"], "pending_approvals": pending})
        elif pending:
            print("actions waiting for approval (approve with --action ID --approved-by NAME):")
            for request_id in pending:
                print(f"  {request_id}")
        else:
            print(f"{inc['id']}: no action is waiting for approval")
        return 0
    if not a.approved_by:
        raise CliError(EXIT_USAGE, "--action needs --approved-by NAME (who approves the risky action)")
    decision = c.call("POST", f"/api/incidents/{a.id}/approvals/{a.action}/approve", {"by": a.approved_by})
    if inc["status"] in ("detected", "acknowledged", "investigating"):
        c.call("POST", f"/api/incidents/{a.id}/status", {"status": "mitigating", "by": a.approved_by,
                                                          "message": f"{a.action} approved"})
    return _show_one(a, decision) if a.json else (print(f"{a.action}: approved by {a.approved_by}") or 0)


def _postmortem(c: Client, a: argparse.Namespace) -> int:
    data = c.call("GET", f"/api/incidents/{a.id}/postmortem")
    if a.output:
        try:
            with open(a.output, "w", encoding="utf-8") as fh:
                fh.write(data["markdown"])
        except OSError as err:
            raise CliError(EXIT_USAGE, f"--output {a.output}: {err.strerror or err}") from None
        print(f"post-mortem of {a.id} written to {a.output}")
    elif a.json:
        _print_json(data)
    else:
        print(data["markdown"])
    return 0


def _stats(c: Client, a: argparse.Namespace) -> int:
    stats = c.call("GET", "/api/incidents/stats", query={"since": _since(a.since)})
    if a.json:
        _print_json(stats)
        return 0
    def fmt(v: Any) -> str:
        return "—" if v is None else f"{v:.1f} min" if isinstance(v, float) else str(v)
    rows = [[k, fmt(stats[k])] for k in ("total", "open", "resolved", "acknowledged", "escalated", "auto_resolved", "mttd_minutes",
                                         "mtta_minutes", "mttr_minutes")]
    rows += [[f"open {sev}", str(n)] for sev, n in sorted(stats["open_by_severity"].items())]
    _table("incident statistics", ["", "value"], rows)
    return 0


def _watch(c: Client, a: argparse.Namespace) -> int:
    seen: dict[str, str] = {}
    rounds = 0
    while a.count == 0 or rounds < a.count:
        page = c.call("GET", "/api/incidents", query={"status": "open", "limit": 500})
        for inc in page["incidents"]:
            state = f"{inc['status']}/{inc['severity']}/L{inc['escalation_level']}"
            if seen.get(inc["id"]) != state:
                seen[inc["id"]] = state
                line = {"id": inc["id"], "status": inc["status"], "severity": inc["severity"], "title": inc["title"]}
                print(json.dumps(line) if a.json else f"{_when(time.time())} {inc['id']} {state} {inc['title']}", flush=True)
        rounds += 1
        if a.count == 0 or rounds < a.count:
            time.sleep(a.interval)
    return 0


# -- detection rules ---------------------------------------------------------------------------------
def _rules_list(c: Client, a: argparse.Namespace) -> int:
    rules = c.call("GET", "/api/incidents/rules")["rules"]
    if a.json:
        _print_json(rules)
    else:
        _table("detection rules", ["name", "on", "event kind", "threshold", "window", "severity", "count", "armed"],
               [[r["name"], "yes" if r["enabled"] else "no", r["event_kind"], str(r["threshold"]), f"{r['window_seconds']:g} s",
                 r["severity"], str(r["count"]), "yes" if r["armed"] else "no"] for r in rules])
    return 0


def _rules_show(c: Client, a: argparse.Namespace) -> int:
    _print_json(c.call("GET", f"/api/incidents/rules/{a.name}"))
    return 0


def _rule_fields(a: argparse.Namespace) -> dict[str, Any]:
    fields = {"event_kind": a.event_kind, "threshold": a.threshold, "window_seconds": a.window, "severity": a.severity,
              "incident_type": a.type, "description": a.description}
    return {k: v for k, v in fields.items() if v is not None}


def _rules_update(c: Client, a: argparse.Namespace) -> int:
    fields = _rule_fields(a)
    if not fields:
        raise CliError(EXIT_USAGE, "nothing to update: give --threshold, --window, --severity, --type, --event-kind or --description")
    _print_json(c.call("POST", f"/api/incidents/rules/{a.name}", {**fields, "by": _by(a)}))
    return 0


def _rules_create(c: Client, a: argparse.Namespace) -> int:
    _print_json(c.call("POST", "/api/incidents/rules", {"name": a.name, **_rule_fields(a), "by": _by(a)}))
    return 0


def _rules_toggle(on: bool) -> Any:
    def action(c: Client, a: argparse.Namespace) -> int:
        rule = c.call("POST", f"/api/incidents/rules/{a.name}/{'enable' if on else 'disable'}", {"by": _by(a)})
        print(f"{rule['name']}: {'enabled' if rule['enabled'] else 'disabled'}")
        return 0
    return action


def _rules_test(c: Client, a: argparse.Namespace) -> int:
    """Would ``events`` events spread evenly over ``over`` seconds fire the rule? Exit 0 yes, 1 no."""
    from aphrodite_sla.incidents.rules import DetectionRule, RuleEngine

    rule = DetectionRule.from_dict(dict(c.call("GET", f"/api/incidents/rules/{a.name}")))
    now = time.time()
    times = [now - a.over * (k / max(1, a.events - 1)) for k in range(a.events)] if a.events else []
    fires = RuleEngine([rule], clock=lambda: now).test(rule, times, now)
    result = {"rule": rule.name, "events": a.events, "over_seconds": a.over, "threshold": rule.threshold,
              "window_seconds": rule.window_seconds, "fires": fires}
    if a.json:
        _print_json(result)
    else:
        print(f"{rule.name}: {a.events} events over {a.over:g} s {'FIRES' if fires else 'does not fire'} "
              f"(threshold {rule.threshold} in {rule.window_seconds:g} s)")
    return 0 if fires else EXIT_NOT_FOUND


# -- registration ------------------------------------------------------------------------------------
def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help="a running server's base URL (e.g. http://127.0.0.1:8000); default: the store directly")
    p.add_argument("--token", help="the API token (default: $APHRODITE_SLA_API_TOKEN)")
    p.add_argument("--store", help="the SQLite store's path (default: the configuration's)")
    p.add_argument("--database-url", help="an SQLAlchemy URL (postgresql+psycopg://...) instead of --store")
    p.add_argument("--by", help="who does this (default: the user name)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register_incident_commands(sub: Any) -> None:
    inc = sub.add_parser("incidents", help="incidents: list, inspect, acknowledge, resolve, post-mortems, statistics")
    isub = inc.add_subparsers(dest="incidents_command", required=True)
    severities = [s.value for s in IncidentSeverity]
    types = [t.value for t in IncidentType]

    def cmd(name: str, action: Any, help_text: str) -> argparse.ArgumentParser:
        p = isub.add_parser(name, help=help_text)
        _backend_options(p)
        p.set_defaults(func=_run, action=action)
        return p

    p = cmd("list", _list, "list incidents (newest first)")
    p.add_argument("--status", help="comma-separated statuses, or 'open'")
    p.add_argument("--severity", help="comma-separated severities")
    p.add_argument("--type", choices=types)
    p.add_argument("--since", help="epoch seconds or a duration ago (30m, 2h, 7d)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p = cmd("get", _get, "one incident")
    p.add_argument("id")
    p.add_argument("--timeline", action="store_true")
    p.add_argument("--full", action="store_true", help="timeline, audit trail and RCA detail")
    p = cmd("create", _create, "report an incident by hand")
    p.add_argument("--title", required=True)
    p.add_argument("--severity", required=True, choices=severities)
    p.add_argument("--type", default=IncidentType.SLA_VIOLATION.value, choices=types)
    p.add_argument("--description")
    p = cmd("update", _update, "move an incident to another status")
    p.add_argument("id")
    p.add_argument("--status", required=True, choices=[s.value for s in IncidentStatus])
    p.add_argument("--message")
    p = cmd("assign", _simple("assign", assignee="to"), "assign an incident")
    p.add_argument("id")
    p.add_argument("--to", required=True)
    p = cmd("acknowledge", _simple("acknowledge"), "acknowledge (stops escalation)")
    p.add_argument("id")
    p = cmd("mitigate", _mitigate, "list or approve the actions waiting on an incident")
    p.add_argument("id")
    p.add_argument("--list-actions", action="store_true")
    p.add_argument("--action", help="the approval request id to approve")
    p.add_argument("--approved-by")
    p = cmd("resolve", _simple("resolve", notes="notes"), "resolve (writes the post-mortem)")
    p.add_argument("id")
    p.add_argument("--notes")
    p = cmd("close", _simple("close", notes="notes"), "close a resolved incident")
    p.add_argument("id")
    p.add_argument("--notes")
    p = cmd("timeline", _timeline, "an incident's timeline")
    p.add_argument("id")
    p = cmd("postmortem", _postmortem, "an incident's post-mortem (markdown)")
    p.add_argument("id")
    p.add_argument("--output", help="write it to this file")
    p = cmd("stats", _stats, "MTTD, MTTA, MTTR and counts")
    p.add_argument("--since")
    p = cmd("watch", _watch, "print open incidents as they change")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--count", type=int, default=0, help="stop after this many polls (0: until interrupted)")
    p = cmd("simulate", _simulate, "create a simulated incident (exercises notifications and the workflow)")
    p.add_argument("--type", default=IncidentType.ERROR_BURST.value, choices=types)
    p.add_argument("--severity", default="high", choices=severities)


def register_rule_commands(rules_sub: Any) -> None:
    """The detection-rule commands beside ``rules export`` (Prometheus rules)."""
    severities = [s.value for s in IncidentSeverity]
    types = [t.value for t in IncidentType]

    def cmd(name: str, action: Any, help_text: str) -> argparse.ArgumentParser:
        p = rules_sub.add_parser(name, help=help_text)
        _backend_options(p)
        p.set_defaults(func=_run, action=action)
        return p

    def fields(p: argparse.ArgumentParser) -> None:
        p.add_argument("--event-kind")
        p.add_argument("--threshold", type=int)
        p.add_argument("--window", type=float, help="window in seconds")
        p.add_argument("--severity", choices=severities)
        p.add_argument("--type", choices=types)
        p.add_argument("--description")

    cmd("list", _rules_list, "incident detection rules with their current counts")
    cmd("show", _rules_show, "one detection rule").add_argument("name")
    cmd("enable", _rules_toggle(True), "enable a detection rule").add_argument("name")
    cmd("disable", _rules_toggle(False), "disable a detection rule").add_argument("name")
    p = cmd("update", _rules_update, "change a detection rule")
    p.add_argument("name")
    fields(p)
    p = cmd("create", _rules_create, "create a detection rule")
    p.add_argument("name")
    fields(p)
    p = cmd("test", _rules_test, "would N events over S seconds fire the rule? (exit 0 yes, 1 no)")
    p.add_argument("name")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--over", type=float, default=60.0, help="seconds the events are spread over")
