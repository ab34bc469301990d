"""Post-mortems rendered from markdown with markdown-it-py (CommonMark), raw HTML disabled.

Why this library: it is maintained, already installed with ``rich``, escapes every character of
text and refuses ``javascript:``/``data:`` links by default; with ``html`` off, a ``<script>`` in a
title or note is shown as text."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from aphrodite_sla.console.html import Safe


@lru_cache(maxsize=1)
def _renderer() -> Any:
    from markdown_it import MarkdownIt  # imported when a post-mortem is first shown, not with the engine

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str) -> Safe:
    return Safe(_renderer().render(text or ""))
