"""Fork safety: objects with locks or threads reset themselves in a forked child.

Why: ``fork()`` copies a lock held by another thread as held, forever, and copies no thread but
the caller. An engine that forks workers after the monitor started would deadlock the child's
next flush or evaluation. Objects registered here have ``_reset_after_fork()`` called in the
child (new locks, no threads); the registry holds them weakly, so registering keeps nothing alive.
"""
from __future__ import annotations

import logging
import os
import weakref
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)


class ForkAware(Protocol):
    def _reset_after_fork(self) -> None: ...


T = TypeVar("T", bound=ForkAware)
_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_in_child(obj: T) -> T:
    """Call ``obj._reset_after_fork()`` in every child forked from now on; returns ``obj``."""
    _registered.add(obj)
    return obj


def _after_fork_in_child() -> None:
    for obj in list(_registered):
        try:
            obj._reset_after_fork()
        except Exception:
            logger.exception("aphrodite-sla: resetting %r after fork failed", obj)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
