"""A safe-by-default HTML builder: every value is escaped unless it is ``Safe`` (built here).

Why hand-written rather than a template engine: the pages are a few dozen small fragments; a
string type that is escaped unless marked safe gives the same guarantee as autoescaping without a
new dependency, and there is no template syntax to get wrong. Incident titles, labels, notes and
timeline messages are attacker-controlled: they only ever pass through ``h``."""
from __future__ import annotations

import html
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any


class Safe(str):
    """HTML that is already escaped (or is our own markup)."""


def h(value: Any) -> Safe:
    """``value`` as HTML text: escaped unless already ``Safe``."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(sep.join(h(p) for p in parts))


def tag(name: str, body: Any = "", /, **attrs: Any) -> Safe:
    """``<name attrs>body</name>``; attribute names use ``_`` for ``-`` (``data_live`` -> ``data-live``),
    a trailing ``_`` is dropped (``class_``); ``True`` writes a bare attribute, ``None``/``False`` none."""
    rendered = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        rendered.append(f" {attr}" if value is True else f' {attr}="{h(value)}"')
    if name in ("input", "meta", "link", "br"):
        return Safe(f"<{name}{''.join(rendered)}>")
    return Safe(f"<{name}{''.join(rendered)}>{h(body) if not isinstance(body, list) else join(body)}</{name}>")


def utc_iso(at: float | None) -> str:
    if at is None or not math.isfinite(at):
        return ""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_tag(at: float | None, empty: str = "—") -> Safe:
    """A ``<time>``: UTC in the markup and on hover; the page's script shows it in the viewer's zone."""
    if at is None or not math.isfinite(at):
        return h(empty)
    iso = utc_iso(at)
    return tag("time", iso.replace("T", " ").replace("Z", " UTC"), datetime=iso, title=iso.replace("T", " ").replace("Z", " UTC"),
               class_="ts")


def minutes(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 60:.0f} s" if value < 1 else f"{value:.1f} min"


SEVERITY_SYMBOL = {"critical": "‼", "high": "▲", "medium": "●", "low": "○"}


def severity_badge(severity: str) -> Safe:
    """Severity by word and symbol as well as colour (colour is never the only carrier)."""
    symbol = SEVERITY_SYMBOL.get(severity, "?")
    return tag("span", Safe(f'<span aria-hidden="true">{h(symbol)}</span> {h(severity.upper())}'), class_=f"sev sev-{severity}")


def status_badge(status: str) -> Safe:
    return tag("span", status.replace("_", " "), class_=f"status status-{status}")
