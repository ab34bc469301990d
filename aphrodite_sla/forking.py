"""Fork safety: objects with locks or threads reset themselves in a forked child.

Why: ``fork()`` copies a lock held by another thread as held, forever, and copies no thread but
the caller. An engine that forks workers after the monitor started would deadlock the child's
next flush or evaluation. Objects registered here have ``_reset_after_fork()`` called in the
child (new locks, no threads); the registry holds them weakly, so registering keeps nothing alive.

Imports are the one lock we cannot reset: a fork while the evaluator thread is importing numba or
scipy (its warm-up, the first second after start) leaves the child a half-imported module and its
import lock held forever. ``imports_in_progress()`` marks such a stretch; a fork waits for it to
end (at most ``FORK_WAIT_S``) before it copies the process.

Database calls are the other such stretch: SQLite runs inside the process, and a fork while
another thread is inside it (a query, or opening a connection) copies SQLite's mutexes as held —
the child's first query on that database hangs for ever (seen: 2 of 200 children of a runtime with
incidents on). ``fork_waits()`` marks a database call; a fork waits for the calls in progress (at
most ``FORK_DB_WAIT_S``) and holds new ones back until it has copied the process. Stores also drop
their inherited connection pools in the child (SQLAlchemy's ``dispose(close=False)``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
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


# A fork waits at most this long for database calls in progress: SQLite calls take milliseconds;
# a longer one is waiting on a lock or a server, and the engine's fork must not wait on that.
FORK_DB_WAIT_S = 10.0
_calls = threading.Condition(threading.Lock())
_in_call: dict[int, int] = {}  # thread id -> depth of its database calls in progress
_forking = False


@contextlib.contextmanager
def fork_waits() -> Iterator[None]:
    """Mark a database call: a ``fork()`` waits for it to end, and a call waits while a fork is
    being made (see the module docstring). Re-entrant; costs one uncontended lock round trip."""
    me = threading.get_ident()
    with _calls:
        while _forking and me not in _in_call:
            _calls.wait()
        _in_call[me] = _in_call.get(me, 0) + 1
    try:
        yield
    finally:
        with _calls:
            depth = _in_call.get(me, 1) - 1
            if depth > 0:
                _in_call[me] = depth
            else:
                _in_call.pop(me, None)
            _calls.notify_all()


def _hold_database_calls() -> None:
    """Before the fork: hold new calls back and wait for those in progress on other threads."""
    global _forking
    me = threading.get_ident()
    deadline = time.monotonic() + FORK_DB_WAIT_S
    with _calls:
        _forking = True
        while any(t != me for t in _in_call):
            left = deadline - time.monotonic()
            if left <= 0.0:
                logger.error("aphrodite-sla: forking while a database call is still running after %.0f s", FORK_DB_WAIT_S)
                return
            _calls.wait(left)


def _release_database_calls() -> None:
    global _forking
    with _calls:
        _forking = False
        _calls.notify_all()


def _database_calls_in_child() -> None:
    """Only the forking thread exists in the child: its own calls in progress are all that remain."""
    global _calls, _in_call, _forking
    me = threading.get_ident()
    _calls = threading.Condition(threading.Lock())
    _in_call = {me: _in_call[me]} if me in _in_call else {}
    _forking = False


def _before_fork() -> None:
    global _held_for_fork
    _held_for_fork = _imports.acquire(timeout=FORK_WAIT_S)
    if not _held_for_fork:
        logger.error("aphrodite-sla: forking while the monitor's imports are still running after %.0f s", FORK_WAIT_S)
    _hold_database_calls()


def _after_fork_in_parent() -> None:
    global _held_for_fork
    _release_database_calls()
    if _held_for_fork:
        _held_for_fork = False
        _imports.release()


def _after_fork_in_child_imports() -> None:
    global _imports, _held_for_fork
    _imports, _held_for_fork = threading.RLock(), False
    _database_calls_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child_imports)
    os.register_at_fork(after_in_child=_after_fork_in_child)
