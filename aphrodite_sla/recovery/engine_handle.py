"""The one way recovery calls the inference engine: ``EngineHandle.call(method, ..., timeout_s=)``.

Why a handle of its own: the engine comes first. Recovery runs on its own thread with its own
asyncio loop, while ``AsyncLLM``'s methods are coroutines bound to the engine's loop. Awaiting one
on the recovery loop would touch the engine's state from the wrong thread, and a blocking call
would stall serving. The handle schedules each call onto the engine's loop
(``run_coroutine_threadsafe``), waits for it from the caller's loop with a timeout, and cancels
the call on the engine's loop when the timeout passes or the caller is cancelled. With no engine loop
known (a client registered in code on the caller's own loop, or a sync client) it calls directly.
"""
from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from typing import Any

# (client, loop) as of now: read at call time, because the middleware captures them after start-up
Resolver = Callable[[], "tuple[Any, asyncio.AbstractEventLoop | None]"]


class EngineUnavailable(RuntimeError):
    """No engine client yet, the client lacks the method, or its loop no longer runs."""


class EngineHandle:
    """Calls engine methods safely from any thread's event loop (see the module docstring)."""

    def __init__(self, client: Any = None, loop: asyncio.AbstractEventLoop | None = None, *, resolver: Resolver | None = None) -> None:
        self._resolver: Resolver = resolver if resolver is not None else (lambda: (client, loop))

    @classmethod
    def from_server(cls, server: Any) -> EngineHandle:
        """A handle that reads ``server.engine_client`` / ``server.engine_loop`` at each call (a
        ``ServerState``: the middleware fills them in when the first request arrives)."""
        return cls(resolver=lambda: (getattr(server, "engine_client", None), getattr(server, "engine_loop", None)))

    @property
    def client(self) -> Any:
        return self._resolver()[0]

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._resolver()[1]

    @property
    def available(self) -> bool:
        return self.client is not None

    def has(self, method: str) -> bool:
        """Whether the current client has a callable ``method`` (False with no client)."""
        client = self.client
        return client is not None and callable(getattr(client, method, None))

    def missing(self, *methods: str) -> str | None:
        """Why these methods cannot be called now (for a pre-check), or None when all can."""
        client = self.client
        if client is None:
            return "no engine client registered (the middleware has not seen the engine yet, or none was given)"
        absent = [m for m in methods if not callable(getattr(client, m, None))]
        if absent:
            return f"engine client {type(client).__name__} has no {', '.join(f'{m}()' for m in absent)}"
        return None

    async def call(self, method: str, *args: Any, timeout_s: float, **kwargs: Any) -> Any:
        """``client.method(*args, **kwargs)``, awaited if it returns an awaitable, on the engine's
        loop when one is known and it is not the running loop. Raises ``EngineUnavailable`` (no
        client, no such method, engine loop closed or stopped) and ``TimeoutError`` past
        ``timeout_s`` (the call on the engine's loop is cancelled)."""
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"EngineHandle.call({method!r}): timeout_s must be a finite number > 0, got {timeout_s!r}")
        client, loop = self._resolver()
        if client is None:
            raise EngineUnavailable(f"engine {method}(): no engine client registered")
        fn = getattr(client, method, None)
        if not callable(fn):
            raise EngineUnavailable(f"engine {method}(): {type(client).__name__} has no such method")
        running = asyncio.get_running_loop()
        try:
            if loop is None or loop is running:
                return await _direct(fn, args, kwargs, timeout_s)
            return await _on_loop(loop, fn, args, kwargs, timeout_s)
        except asyncio.TimeoutError:  # builtin TimeoutError from 3.11; a subclass-free alias before
            raise TimeoutError(f"engine {method}() did not answer within {timeout_s:g} s (cancelled)") from None


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _direct(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await asyncio.wait_for(_awaited(result), timeout_s)
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float) -> Any:
    if loop.is_closed():
        raise EngineUnavailable(f"engine {getattr(fn, '__name__', fn)}(): the engine's event loop is closed")
    if not loop.is_running():
        raise EngineUnavailable(f"engine {getattr(fn, '__name__', fn)}(): the engine's event loop is not running")
    # Even a sync method runs on the engine's loop: the engine's state is only touched from its thread.
    coro = _invoke(fn, args, kwargs)
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError as err:  # closed between the check and the call
        coro.close()
        raise EngineUnavailable(f"engine {getattr(fn, '__name__', fn)}(): {err}") from err
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    finally:
        if not future.done():
            future.cancel()  # cancels the task on the engine's loop (timeout, or the caller was cancelled)


__all__ = ["EngineHandle", "EngineUnavailable"]
