"""``aphrodite-sla incidents dashboard --port 8080``: the console on the incident store, on its own.

Why on the store: the person paged may run it beside any replica (or on a laptop with the
PostgreSQL URL); the store has the incidents, timelines, audit trail and post-mortems. Live SLIs,
charts and recovery state belong to the engine's process: its own ``/console`` shows those."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

TOKEN_ENV = "APHRODITE_SLA_API_TOKEN"


def register_dashboard_command(sub: Any) -> None:
    """Adds ``dashboard`` under ``incidents`` (``sub`` is the top-level subparsers)."""
    incidents = sub.choices["incidents"]
    isub = next(a for a in incidents._actions if isinstance(a, argparse._SubParsersAction))
    p = isub.add_parser("dashboard", help="serve the incident console (web pages) on 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="port (default: the dashboard: configuration's, 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--store", default=None, metavar="PATH", help="SQLite incident store (default: the configuration's)")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL of the store (PostgreSQL for a fleet)")
    p.add_argument("--refresh", type=float, default=None, metavar="SECONDS", help="live refresh interval (default: the configuration's, 30)")
    p.add_argument("--require-sign-in", action="store_true", help="no read-only viewing without signing in")
    p.set_defaults(func=_cmd_dashboard)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from aphrodite_sla.console.app import ConsoleApp
    from aphrodite_sla.console.server import ConsoleServer
    from aphrodite_sla.console.settings import ConsoleSettings
    from aphrodite_sla.console.views import ConsoleSources
    from aphrodite_sla.incidents.config import parse_incident_config
    from aphrodite_sla.incidents.service import IncidentSystem
    from aphrodite_sla.incidents.store import IncidentStore, sqlite_url

    raw: dict[str, Any] = {}
    token = os.environ.get(TOKEN_ENV, "")
    if os.environ.get("APHRODITE_SLA_CONFIG"):
        from aphrodite_sla.config import ConfigError, load_config

        try:
            cfg = load_config()
        except ConfigError as err:
            print(f"aphrodite-sla incidents dashboard: {err}", file=sys.stderr)
            return 2
        raw, token = dict(cfg.incident_response), token or cfg.api_token
    try:
        config = parse_incident_config(raw)
    except ValueError as err:
        print(f"aphrodite-sla incidents dashboard: {err}", file=sys.stderr)
        return 2
    url = args.database_url or (sqlite_url(args.store) if args.store else config.url)
    try:
        store = IncidentStore(url, replica=config.replica)
    except Exception as err:
        print(f"aphrodite-sla incidents dashboard: cannot open the incident store {url}: {err}", file=sys.stderr)
        return 3
    system = IncidentSystem(config, store, clock=time.time, api_token=token or None)
    overrides: dict[str, Any] = {}
    if args.refresh is not None:
        overrides["refresh_interval_s"] = args.refresh
    if args.require_sign_in:
        overrides["anonymous_viewing"] = False
    try:
        settings = ConsoleSettings.from_config(config, token=token, **overrides)
    except ValueError as err:
        print(f"aphrodite-sla incidents dashboard: {err}", file=sys.stderr)
        return 2
    app = ConsoleApp(ConsoleSources(system), settings)
    port = config.dashboard.port if args.port is None else args.port
    try:
        server = ConsoleServer(app, port, args.host)
    except OSError as err:
        print(f"aphrodite-sla incidents dashboard: cannot serve on {args.host}:{port}: {err} (try --port 0)", file=sys.stderr)
        return 2
    print(f"incident console: {server.url}  (store {url})", flush=True)
    if not token:
        print(f"read-only: set {TOKEN_ENV} to sign in and act", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
