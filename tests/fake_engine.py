"""A recording stand-in for vLLM / Aphrodite ``AsyncLLM``'s action surface (reusable by any test).

Why a fake with the real signatures: recovery tests must not need an engine, but a fake that
drifts from the engine would let them pass against calls the engine rejects. The method names,
parameters and coroutine-ness here match ``AsyncLLM`` (0.32.0 / 0.24.1); the contract test
``tests/contract/test_recovery_signatures.py`` binds them against the real classes.

Each call is recorded (name, positional and keyword arguments exactly as passed, the thread and
loop it ran on). ``fail(name, exc)`` makes a method raise, ``hang(name)`` makes it wait until
cancelled (cancellations are recorded), ``returns(name, value)`` overrides a result, and
``missing=(...)`` hides methods (an older engine).
"""
from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ENGINE_ACTION_METHODS = (
    "abort", "reset_prefix_cache", "reset_mm_cache", "sleep", "wake_up", "is_sleeping", "pause_generation",
    "resume_generation", "is_paused", "check_health", "get_num_unfinished_requests",
)


class EngineDeadError(Exception):
    """Like the engines' own: raised by ``check_health`` once the engine has died."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args or ("EngineCore encountered an issue. See stack trace (above) for the root cause.",))


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    thread: int = field(compare=False)
    loop: Any = field(compare=False, repr=False)


def _recorded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Record the call as passed, then fail / hang / override as configured, else run ``fn``."""
    name = fn.__name__
    if asyncio.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(self: RecordingEngineClient, *args: Any, **kwargs: Any) -> Any:
            self._record(name, args, kwargs)
            if name in self._hang:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    with self._lock:
                        self.cancelled.append(name)
                    raise
            if name in self._fail:
                raise self._fail[name]
            result = await fn(self, *args, **kwargs)
            return self._returns.get(name, result)

        return async_wrapper

    @functools.wraps(fn)
    def sync_wrapper(self: RecordingEngineClient, *args: Any, **kwargs: Any) -> Any:
        self._record(name, args, kwargs)
        if name in self._fail:
            raise self._fail[name]
        result = fn(self, *args, **kwargs)
        return self._returns.get(name, result)

    return sync_wrapper


class RecordingEngineClient:
    """``AsyncLLM``'s recovery-relevant methods with their real signatures, recording every call."""

    def __init__(self, *, unfinished: Iterable[str] = (), missing: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.cancelled: list[str] = []
        self._fail: dict[str, BaseException] = {}
        self._hang: set[str] = set()
        self._returns: dict[str, Any] = {}
        self._missing = frozenset(missing)
        self.unfinished: set[str] = set(unfinished)
        self.paused = False
        self.sleeping = 0  # sleep level, 0 = awake
        self.dead = False
        self.prefix_cache_resets = 0
        self.mm_cache_resets = 0

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name in object.__getattribute__(self, "_missing"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r} (hidden: missing=)")
        return object.__getattribute__(self, name)

    # configuration
    def fail(self, method: str, exc: BaseException) -> RecordingEngineClient:
        self._fail[method] = exc
        return self

    def hang(self, method: str) -> RecordingEngineClient:
        self._hang.add(method)
        return self

    def returns(self, method: str, value: Any) -> RecordingEngineClient:
        self._returns[method] = value
        return self

    def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            loop: Any = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self.calls.append(Call(name, args, dict(kwargs), threading.get_ident(), loop))

    def names(self) -> list[str]:
        """The methods called, in order."""
        with self._lock:
            return [c.method for c in self.calls]

    # AsyncLLM's surface (vllm/v1/engine/async_llm.py, aphrodite/v1/engine/async_llm.py)
    @property
    def errored(self) -> bool:
        return self.dead

    @_recorded
    async def abort(self, request_id: str | Iterable[str], internal: bool = False) -> None:
        ids = (request_id,) if isinstance(request_id, str) else tuple(request_id)
        self.unfinished.difference_update(ids)

    @_recorded
    async def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        self.prefix_cache_resets += 1
        return True

    @_recorded
    async def reset_mm_cache(self) -> None:
        self.mm_cache_resets += 1

    @_recorded
    async def sleep(self, level: int = 1, mode: str = "abort") -> None:
        if mode == "abort":
            self.unfinished.clear()
        self.sleeping = level

    @_recorded
    async def wake_up(self, tags: list[str] | None = None) -> bool:
        self.sleeping = 0
        return True

    @_recorded
    async def is_sleeping(self) -> bool:
        return self.sleeping > 0

    @_recorded
    async def pause_generation(self, *, mode: str = "abort", clear_cache: bool = True) -> None:
        if mode == "abort":
            self.unfinished.clear()
        self.paused = True

    @_recorded
    async def resume_generation(self) -> None:
        self.paused = False

    @_recorded
    async def is_paused(self) -> bool:
        return self.paused

    @_recorded
    async def check_health(self) -> None:
        if self.dead:
            raise EngineDeadError()

    @_recorded
    def get_num_unfinished_requests(self) -> int:
        return len(self.unfinished)


__all__ = ["ENGINE_ACTION_METHODS", "Call", "EngineDeadError", "RecordingEngineClient"]
