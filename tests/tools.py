"""Shared test helpers for tests that need Prometheus's own binaries."""
from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """The path of ``name`` (``prometheus``, ``promtool``). Missing: a failure when CI is set (CI
    must test against the real thing), a skip naming the install command otherwise."""
    path = shutil.which(name)
    if path is None:
        reason = f"`{name}` not found on PATH (Debian/Ubuntu: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    return path
