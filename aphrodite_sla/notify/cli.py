"""``aphrodite-sla notify``: ``demo`` (deliver to local receivers it starts; ``make demo`` runs
it), ``history`` (the outbox read back: every notification with its status, attempts, last
error and delivery time; ``--json`` for scripts) and ``test`` (send a test notification straight
to each configured receiver, bypassing the outbox: is the configuration right, is the receiver
reachable?). Exit codes: 0 ok, 1 something was not delivered, 2 a bad argument, configuration or
database."""
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
    test = notify_sub.add_parser("test", help="send a test notification to each configured receiver (or --receiver NAME)")
    test.add_argument("--config", required=True, metavar="FILE",
                      help="YAML/TOML/JSON with incident_response.notifications (or a top-level notifications table)")
    test.add_argument("--receiver", action="append", default=None, help="only this receiver (repeatable)")
    test.add_argument("--severity", choices=("low", "medium", "high", "critical"), default="low")
    test.set_defaults(func=_cmd_test)


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


def _load_section(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(text)
    elif suffix in (".yaml", ".yml"):
        import yaml  # PyYAML: the seed's configuration is YAML

        data = yaml.safe_load(text)
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        data = tomllib.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level must be a table")
    if isinstance(data.get("incident_response"), dict):
        data = data["incident_response"]
    return data.get("notifications", {})


def _cmd_test(args: argparse.Namespace) -> int:
    import time

    from aphrodite_sla.config import ConfigError
    from aphrodite_sla.notify.config import NotificationsConfig
    from aphrodite_sla.notify.model import DeliveryError, IncidentFacts
    from aphrodite_sla.notify.notifier import make_receiver

    try:
        config = NotificationsConfig.from_mapping(_load_section(Path(args.config))).with_env()
    except ConfigError as err:
        print(f"aphrodite-sla notify test: {args.config}: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ImportError) as err:
        print(f"aphrodite-sla notify test: cannot read {args.config}: {err}", file=sys.stderr)
        return 2
    names = args.receiver or [r.name for r in config.receivers]
    unknown = [n for n in names if config.receiver(n) is None]
    if unknown:
        print(f"aphrodite-sla notify test: not configured: {', '.join(unknown)} (configured: "
              f"{', '.join(r.name for r in config.receivers)})", file=sys.stderr)
        return 2
    now = time.time()
    facts = IncidentFacts(fingerprint=f"aphrodite-sla-test-{int(now)}", incident_id="TEST", change="opened",
                          title="aphrodite-sla test notification (no incident)", severity=args.severity, status="detected",
                          incident_type="notification_test", occurred_at=now, started_at=now, actor="notify test",
                          summary="Sent by `aphrodite-sla notify test` to check this receiver's configuration.")
    failed = 0
    for name in names:
        rc = config.receiver(name)
        assert rc is not None
        try:
            make_receiver(rc).send(facts)
            print(f"{name:<16} {rc.kind:<12} delivered")
        except DeliveryError as err:
            failed += 1
            print(f"{name:<16} {rc.kind:<12} FAILED{'' if err.retryable else ' (permanent)'}: {err}")
    return 1 if failed else 0
