"""The simulated engine behind vLLM's ``AsyncLLM`` action surface, so recovery acts on a simulation
exactly as it would on a real engine (``app.state.engine_client``).

Why a queue: recovery runs on its own thread and event loop while the simulation loop steps the
simulator. Every command goes through :meth:`EngineSimulator.submit` (a thread-safe queue) and
takes effect at the next step boundary, as commands reach the real engine core through its input
queue; the coroutine awaits the command's ``concurrent.futures.Future`` with ``timeout_s`` (wall
seconds). A ``"wait"`` pause (or sleep) resolves when the running requests have finished.

Same thread: a command issued from the thread inside ``EngineSimulator.run`` (its ``on_step`` /
``on_tick`` callbacks, which run between steps) is applied at once; one that would need further
steps to complete (a ``"wait"`` pause with requests running) raises ``RuntimeError`` there rather
than deadlock the loop that would have to step. When nothing steps the simulator (a test driving
``step()`` by hand), call ``sim.apply_pending()`` or ``sim.step()`` to apply what was queued.

Reads (``is_paused``, ``is_sleeping``, ``errored``, ``get_num_unfinished_requests``,
``check_health``) read the simulator's state directly: a snapshot, as the real ones are.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from aphrodite_sla.sim.engine import DEFERRED, EngineSimulator, PauseMode, SimulatedEngineDeadError


class SimulatedEngineClient:
    """``AsyncLLM``'s actions on an :class:`EngineSimulator` (same names, signatures and sync/async
    kinds as vLLM 0.32's ``AsyncLLM``), plus :meth:`rollback`, the simulated deployment hook."""

    def __init__(self, sim: EngineSimulator, *, timeout_s: float = 30.0) -> None:
        if not isinstance(sim, EngineSimulator):
            raise TypeError(f"SimulatedEngineClient needs an EngineSimulator, got {type(sim).__name__}")
        if not timeout_s > 0:
            raise ValueError(f"SimulatedEngineClient: timeout_s must be > 0, got {timeout_s!r}")
        self.sim = sim
        self.timeout_s = float(timeout_s)

    # -- commands (applied at a step boundary)
    async def _call(self, command: Callable[[], Any], future: Future | None = None) -> Any:
        fut = self.sim.submit(command, future)
        if not fut.done() and self.sim.owner_thread == threading.get_ident():
            raise RuntimeError(
                "SimulatedEngineClient: the command was applied but completes only after more engine steps, and this is the "
                "thread that steps the simulator (it would wait for itself)"
            )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"SimulatedEngineClient: the simulator applied no command within {self.timeout_s:g} s "
                "(is anything stepping it? see sim.apply_pending())"
            ) from None

    def _refuse_self_wait(self, mode: str) -> None:
        if mode == "wait" and self.sim.num_running and self.sim.owner_thread == threading.get_ident():
            raise RuntimeError(
                "SimulatedEngineClient: mode='wait' waits for engine steps, but this is the thread that steps the simulator "
                "(it would wait for itself); issue it from another thread, or use mode='abort' or 'keep'"
            )

    async def _deferred(self, start: Callable[[Callable[[BaseException | None], Any]], Any]) -> None:
        """A command that completes later: ``start(on_complete)`` begins it at the boundary."""
        fut: Future = Future()

        def on_complete(error: BaseException | None) -> None:
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        def command() -> Any:
            start(on_complete)
            return DEFERRED

        await self._call(command, fut)

    async def abort(self, request_id: str | Iterable[str], internal: bool = False) -> None:
        """Abort requests by id (``"req-N"``); unknown ids are ignored. ``internal`` is accepted for
        compatibility (vLLM: whether the ids are engine-internal) and changes nothing here."""
        ids = (request_id,) if isinstance(request_id, str) else list(request_id)
        await self._call(lambda: self.sim.abort(ids))

    async def pause_generation(self, *, mode: PauseMode = "abort", clear_cache: bool = True) -> None:
        """``"abort"`` in-flight requests, ``"wait"`` for them, or ``"keep"`` them frozen; new ones queue."""
        self._refuse_self_wait(mode)
        await self._deferred(lambda done: self.sim.pause_generation(mode, clear_cache, on_complete=done))

    async def resume_generation(self) -> None:
        await self._call(self.sim.resume_generation)

    async def is_paused(self) -> bool:
        return self.sim.is_paused()

    async def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        return bool(await self._call(lambda: self.sim.reset_prefix_cache(reset_running_requests, reset_connector)))

    async def reset_mm_cache(self) -> None:
        await self._call(self.sim.reset_mm_cache)

    async def sleep(self, level: int = 1, mode: PauseMode = "abort") -> None:
        self._refuse_self_wait(mode)
        await self._deferred(lambda done: self.sim.sleep(level, mode, on_complete=done))

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return bool(await self._call(lambda: self.sim.wake_up(tags)))

    async def is_sleeping(self) -> bool:
        return self.sim.is_sleeping()

    async def check_health(self) -> None:
        if self.sim.errored:
            raise self.dead_error

    @property
    def errored(self) -> bool:
        return self.sim.errored

    @property
    def dead_error(self) -> BaseException:
        return self.sim.dead_error

    def get_num_unfinished_requests(self) -> int:
        return self.sim.get_num_unfinished_requests()

    # -- not in AsyncLLM: the deployment-rollback hook of the simulated server
    async def rollback(self) -> None:
        await self._call(self.sim.rollback)


__all__ = ["SimulatedEngineClient", "SimulatedEngineDeadError"]
