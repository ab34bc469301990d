"""Recovery inside a simulation: the recovery system acting on a simulated engine, on engine time,
deterministically.

Why a driver: recovery runs on its own thread and waits (settle times, approvals) on its clock;
in a simulation the clock is engine time that moves only when the simulator steps. After each
evaluation the simulation waits here until every recovery coroutine is waiting on engine time or
on a person (the engine's queued commands are applied meanwhile), so a run with a given seed takes
the same recovery decisions at the same engine times on any machine, however fast.

The simulated on-call approves a pending risky action ``approve_after_s`` engine seconds after it
was requested (None: nobody answers, and the request is denied at its timeout).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from aphrodite_sla.recovery.breaker_model import BreakerState
from aphrodite_sla.recovery.hooks import HookContext, HookResult
from aphrodite_sla.recovery.model import RecoveryAction

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.recovery.service import RecoverySystem
    from aphrodite_sla.sim.engine import EngineSimulator

QUIET_TIMEOUT_S = 10.0  # wall seconds: recovery that is still busy after this is left to go on (logged by the caller)
ON_CALL = "simulated on-call"


class EngineTimeSleeper:
    """``await sleep(seconds)`` on a simulated clock: resumed by ``wake_due()``, which the
    simulation calls as engine time passes. ``sleeping`` counts the waiting coroutines."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.sleeping = 0

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            heapq.heappush(self._heap, (self.clock() + max(0.0, seconds), next(self._ids), loop, future))
            self.sleeping += 1
        try:
            await future
        finally:
            with self._lock:
                self.sleeping -= 1

    def wake_due(self) -> int:
        """Resume every sleep whose engine-time deadline has passed (from the simulation's thread)."""
        now = self.clock()
        woken = 0
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, _, loop, future = heapq.heappop(self._heap)
                loop.call_soon_threadsafe(_resolve, future)
                woken += 1
        return woken


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SimulatedFrontDoor:
    """What an arriving request meets before the simulated engine: the model-inference circuit
    breaker (while open, a 503 at once) and the admission controller (shedding, draining)."""

    def __init__(self, system: RecoverySystem) -> None:
        self.server = system.context.server
        self.sim: EngineSimulator | None = None  # set once built: its requests count against a concurrency limit
        self.rejected_by_breaker = 0

    def admit(self) -> bool:
        breaker = self.server.inference_breaker
        if breaker is not None and breaker.state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            self.rejected_by_breaker += 1
            return False
        sim = self.sim
        return bool(self.server.admission.admit(0 if sim is None else sim.num_running + sim.num_waiting))


class SimulatedRollbackHook:
    """The DEPLOYMENT_ROLLBACK hook of a simulation: rolls the simulated engine back (what a
    ``kubectl rollout undo`` hook does to a real one)."""

    def __init__(self, client: Any, timeout_s: float = 30.0) -> None:
        self.client = client
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return "simulated engine: rollback()"

    async def run(self, context: HookContext) -> HookResult:
        start = time.monotonic()
        try:
            await self.client.rollback()
        except Exception as exc:
            return HookResult(False, None, "", time.monotonic() - start, f"{type(exc).__name__}: {exc}")
        return HookResult(True, 0, "rolled back", time.monotonic() - start)


class SimulationRecoveryDriver:
    """Wires ``system`` to ``sim`` (engine client, engine-time settle waits) and, after each
    evaluation, runs ``settle(now)``: approvals, wake-ups, then wait until recovery is quiet."""

    def __init__(self, system: RecoverySystem, sim: EngineSimulator, *, approve_after_s: float | None = 30.0) -> None:
        from aphrodite_sla.sim.engine_client import SimulatedEngineClient

        self.system = system
        self.sim = sim
        self.approve_after_s = approve_after_s
        self.sleeper = EngineTimeSleeper(sim.clock)
        system.engine.sleep = self.sleeper.sleep
        client = SimulatedEngineClient(sim)
        system.context.server.engine_client = client
        system.context.server.engine_loop = None  # the client is thread-safe: called from the recovery loop
        system.target.hooks[RecoveryAction.DEPLOYMENT_ROLLBACK] = SimulatedRollbackHook(client)
        self.busy_timeouts = 0
        system.engine.start()

    def settle(self, now: float) -> None:
        engine = self.system.engine
        book = engine.approvals
        if self.approve_after_s is not None:
            for request in book.pending():
                if now - request.requested_at >= self.approve_after_s:
                    try:
                        book.approve(request.request_id, ON_CALL)
                    except (KeyError, ValueError):
                        pass  # decided meanwhile
        book.expire_due()
        self.system.monitor.tick(now)
        self.sleeper.wake_due()
        engine.submit(asyncio.sleep(0)).result(QUIET_TIMEOUT_S)  # everything scheduled before has started
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        while engine.inflight > self.sleeper.sleeping + book.waiting():
            self.sim.apply_pending()
            if time.monotonic() > deadline:
                self.busy_timeouts += 1
                return
            time.sleep(0.0002)
        self.sim.apply_pending()

    def close(self) -> None:
        self.system.engine.stop()
