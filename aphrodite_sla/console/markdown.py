"""Post-mortems rendered from markdown with markdown-it-py (CommonMark), raw HTML disabled.

Why this library: it is maintained, already installed with ``rich``, escapes every character of
text and refuses ``javascript:``/``data:`` links by default; with ``html`` off, a ``<script>`` in a
title or note is shown as text."""
from __future__ import annotations

from markdown_it import MarkdownIt

from aphrodite_sla.console.html import Safe

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str) -> Safe:
    return Safe(_MD.render(text or ""))
