"""The console of a running monitor: built once per ``MonitorContext`` with its incidents,
recovery, snapshots and the monitor's evaluation history (the SLI charts), for the middleware
(under ``/console``), the exporter and the simulator."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aphrodite_sla.console.app import ConsoleApp
from aphrodite_sla.console.notifications import find_source
from aphrodite_sla.console.settings import MOUNT_PREFIX, ConsoleSettings
from aphrodite_sla.console.views import ConsoleSources

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.context import MonitorContext

_ATTR = "_aphrodite_sla_console"


def attach_console(context: MonitorContext, *, prefix: str = MOUNT_PREFIX, **overrides: Any) -> ConsoleApp | None:
    """The context's console (built on first call; None without incidents or when the
    configuration's ``dashboard.enabled`` is false)."""
    existing = getattr(context, _ATTR, None)
    if existing is not None:
        return existing
    incidents = context.incidents
    if incidents is None or not incidents.config.dashboard.enabled:
        return None
    sources = ConsoleSources(incidents, context.recovery, context.manager.snapshot, context.endpoints.history, find_source(incidents),
                             context.manager.clock)
    settings = ConsoleSettings.from_config(incidents.config, token=context.config.api_token, prefix=prefix, **overrides)
    app = ConsoleApp(sources, settings)
    setattr(context, _ATTR, app)
    return app


def console_of(context: Any) -> ConsoleApp | None:
    return getattr(context, _ATTR, None) if context is not None else None
