"""``aphrodite-sla notify``: ``demo`` (deliver to local receivers it starts; ``make demo`` runs
it) and ``history`` (the outbox read back: every notification with its status, attempts, last
error and delivery time; ``--json`` for scripts). Exit codes: 0 ok, 1 the demo left something
undelivered, 2 a bad argument or an unreadable database."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aphrodite_sla.notify.model import NotificationStatus


def add_notify_parser(sub: Any) -> None:
    notify = sub.add_parser("notify", help="notifications: the outbox's history, and a demo with local receivers")
    notify_sub = notify.add_subparsers(dest="notify_command", required=True)
    demo = notify_sub.add_parser("demo", help="deliver incident notifications through the outbox to local receivers it starts")
    demo.add_argument("--database", default="aphrodite-sla-demo-notifications.db", help="the outbox's SQLite file (recreated)")
    demo.set_defaults(func=_cmd_demo)
    history = notify_sub.add_parser("history", help="list notifications from the outbox (newest last)")
    history.add_argument("--database", default=None,
                         help="database URL (default: $INCIDENT_DATABASE_URL, else sqlite:///aphrodite-sla-incidents.db)")
    history.add_argument("--status", choices=[s.value for s in NotificationStatus], default=None)
    history.add_argument("--receiver", default=None)
    history.add_argument("--limit", type=int, default=200)
    history.add_argument("--attempts", action="store_true", help="include every attempt (time, duration, error)")
    history.add_argument("--json", action="store_true", help="JSON instead of a table")
    history.set_defaults(func=_cmd_history)


def _cmd_demo(args: argparse.Namespace) -> int:
    from aphrodite_sla.notify.demo import run_notification_demo

    outcome = run_notification_demo(Path(args.database))
    return 0 if outcome.rows and all(n.status is NotificationStatus.DELIVERED for n in outcome.rows) else 1


def _cmd_history(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from aphrodite_sla.notify.notifier import DEFAULT_DATABASE_URL
    from aphrodite_sla.notify.outbox import Outbox, create_engine

    if args.limit < 1:
        print("aphrodite-sla notify history: --limit must be >= 1", file=sys.stderr)
        return 2
    url = args.database or os.environ.get("INCIDENT_DATABASE_URL") or DEFAULT_DATABASE_URL
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        print(f"aphrodite-sla notify history: no database at {url}", file=sys.stderr)
        return 2
    try:
        outbox = Outbox(create_engine(url))
        rows = outbox.notifications(receiver=args.receiver, status=NotificationStatus(args.status) if args.status else None,
                                    limit=args.limit)
        records = [_record(n, outbox.attempts_of(n.id) if args.attempts else None) for n in rows]
    except (sa.exc.SQLAlchemyError, RuntimeError) as err:
        print(f"aphrodite-sla notify history: cannot read {url}: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"notifications ({len(records)})")
    for column in ("id", "incident", "change", "level", "receiver", "status", "attempts", "delivered_at", "last error"):
        table.add_column(column)
    for r in records:
        table.add_row(str(r["id"]), r["incident_id"], r["change"], f"L{r['escalation_level']}", r["receiver"], r["status"],
                      str(r["attempts"]), r["delivered_at"] or "", (r["last_error"] or "")[:80])
    Console().print(table)
    return 0


def _record(n: Any, attempts: list[dict] | None) -> dict[str, Any]:
    from aphrodite_sla.notify.alert_format import rfc3339

    record = {
        "id": n.id, "dedup_key": n.dedup_key, "incident_id": n.facts.incident_id, "change": n.facts.change,
        "severity": n.facts.severity, "escalation_level": n.facts.escalation_level, "receiver": n.receiver, "status": n.status.value,
        "attempts": n.attempts, "created_at": rfc3339(n.created_at), "delivered_at": rfc3339(n.delivered_at) if n.delivered_at else None,
        "last_error": n.last_error,
    }
    if attempts is not None:
        record["history"] = [{"at": rfc3339(a["attempted_at"]), "duration_s": round(a["duration_s"], 4), "ok": bool(a["ok"]),
                              "error": a["error"]} for a in attempts]
    return record
