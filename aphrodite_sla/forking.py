"""Fork safety: objects with locks or threads reset themselves in a forked child.

Why: ``fork()`` copies a lock held by another thread as held, forever, and copies no thread but
the caller. An engine that forks workers after the monitor started would deadlock the child's
next flush or evaluation. Objects registered here have ``_reset_after_fork()`` called in the
child (new locks, no threads); the registry holds them weakly, so registering keeps nothing alive.

Imports are the one lock we cannot reset: a fork while the evaluator thread is importing numba or
scipy (its warm-up, the first second after start) leaves the child a half-imported module and its
import lock held forever. ``imports_in_progress()`` marks such a stretch; a fork waits for it to
end (at most ``FORK_WAIT_S``) before it copies the process.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator
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


# A fork waits at most this long for imports in progress on another thread (then forks anyway
# and logs it: a stuck import must not hang the engine's fork for ever).
FORK_WAIT_S = 60.0
_imports = threading.RLock()  # re-entrant: a thread inside the block may fork itself
_held_for_fork = False


@contextlib.contextmanager
def imports_in_progress() -> Iterator[None]:
    """Hold off ``fork()`` while the block imports modules (see the module docstring)."""
    with _imports:
        yield


def _before_fork() -> None:
    global _held_for_fork
    _held_for_fork = _imports.acquire(timeout=FORK_WAIT_S)
    if not _held_for_fork:
        logger.error("aphrodite-sla: forking while the monitor's imports are still running after %.0f s", FORK_WAIT_S)


def _after_fork_in_parent() -> None:
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _imports.release()


def _after_fork_in_child_imports() -> None:
    global _imports, _held_for_fork
    _imports, _held_for_fork = threading.RLock(), False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child_imports)
    os.register_at_fork(after_in_child=_after_fork_in_child)
