"""``ConsoleSettings``: what the console needs to know, apart from the code that serves it.

Why its own data class: the same pages run standalone, in the engine's app and on the exporter,
each with its own prefix and token; the refresh interval comes from the seed's ``dashboard:``
section (``incident_response.dashboard.refresh_interval_seconds``)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

MOUNT_PREFIX = "/console"  # where the engine's app and the exporter serve the pages
ANONYMOUS_VIEW_ENV = "APHRODITE_SLA_CONSOLE_ANONYMOUS_VIEW"


@dataclass(frozen=True)
class ConsoleSettings:
    prefix: str = ""  # "" standalone; MOUNT_PREFIX when mounted
    token: str = ""  # the API's bearer token: sign-in compares against it ("" -> actions refused)
    refresh_interval_s: float = 30.0
    anonymous_viewing: bool = True  # read-only pages without signing in (actions always need the token)
    session_ttl_s: float = 8 * 3600.0
    sign_in_attempts: int = 5  # per client address and window
    sign_in_window_s: float = 60.0
    secure_cookie: bool = False  # set behind TLS

    def __post_init__(self) -> None:
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"console prefix must start with '/' and not end with one, got {self.prefix!r}")
        if not (math.isfinite(self.refresh_interval_s) and 1.0 <= self.refresh_interval_s <= 3600.0):
            raise ValueError(f"dashboard.refresh_interval_seconds: must be within [1, 3600], got {self.refresh_interval_s!r}")
        if self.sign_in_attempts < 1 or not (self.sign_in_window_s > 0):
            raise ValueError("console sign-in limit: attempts >= 1 and a window > 0 seconds")

    @property
    def actions_enabled(self) -> bool:
        return bool(self.token)

    @classmethod
    def from_config(cls, incident_config: Any = None, *, token: str = "", prefix: str = "",
                    environ: dict[str, str] | None = None, **overrides: Any) -> ConsoleSettings:
        """From the incidents configuration's ``dashboard:`` section (refresh interval) and the
        environment (``APHRODITE_SLA_CONSOLE_ANONYMOUS_VIEW=0`` requires sign-in to view)."""
        env = os.environ if environ is None else environ
        refresh = 30.0
        dashboard = getattr(incident_config, "dashboard", None)
        anonymous = env.get(ANONYMOUS_VIEW_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
        if dashboard is not None:
            refresh = float(dashboard.refresh_interval_seconds)
            configured = getattr(dashboard, "read_only_viewing", None)  # the dashboard: section's switch, where it has one
            if isinstance(configured, bool):
                anonymous = configured and anonymous
        values: dict[str, Any] = {"prefix": prefix, "token": token, "refresh_interval_s": refresh, "anonymous_viewing": anonymous}
        values.update(overrides)
        return cls(**values)
