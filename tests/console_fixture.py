"""A monitor with incidents, recovery and the console served on 127.0.0.1 (for the console tests
and scripts/console_screenshots.py)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aphrodite_sla.config import SLAConfig
from aphrodite_sla.console.app import ConsoleApp
from aphrodite_sla.console.mount import attach_console
from aphrodite_sla.console.server import ConsoleServer
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.incidents.config import parse_incident_config
from tests.fake_engine import RecordingEngineClient

TOKEN = "console-test-token-0123456789"


@dataclass
class LiveConsole:
    context: MonitorContext
    app: ConsoleApp
    server: ConsoleServer

    @property
    def url(self) -> str:
        return self.server.url.rstrip("/")

    @property
    def incidents(self) -> Any:
        return self.context.incidents

    def stop(self) -> None:
        self.server.stop()
        if self.context.incidents is not None:
            self.context.incidents.stop()


def start_console(tmp: Path, *, token: str = TOKEN, refresh_s: float = 2.0, **overrides: Any) -> LiveConsole:
    context = MonitorContext.build(SLAConfig(api_token=token, recovery="act"))
    context.server.engine_client = RecordingEngineClient()  # recovery acts on a recording stand-in for the engine
    config = replace(parse_incident_config({}), store_path=str(tmp / "incidents.db"), database_url="")
    incidents = context.attach_incidents(config=config)
    incidents.start()
    base = attach_console(context)
    assert base is not None
    app = ConsoleApp(base.sources, replace(base.settings, token=token, refresh_interval_s=refresh_s, **overrides))
    return LiveConsole(context, app, ConsoleServer(app, 0).start())
