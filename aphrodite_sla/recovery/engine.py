"""``RecoveryEngine``: runs a recovery procedure for a violation, on a thread and loop of its own.

Why its own loop thread: recovery waits (settle times, approvals, engine calls that take seconds)
and must never run inside the evaluator, on an event-stream delivery thread, or on the engine's
event loop. ``attach(stream)`` subscribes to violations and only schedules work onto this loop;
``await execute_recovery(violation)`` from any loop hands the run to this loop and awaits it.

One execution walks the selected procedure's ladder (``recovery.procedures``). Per action:

1. pre-check (quick, synchronous): not available / refused → next action;
2. approval, when the action needs one (``approvals``): denied or expired → next action;
3. apply, bounded by the procedure's ``timeout_seconds`` (a hanging apply is cancelled; one that
   returns despite the cancel is undone); raised or timed out → tried again, ``retry_count``
   attempts in all;
4. settle ``settle_seconds``, then verify (``verification``): verified → the execution SUCCEEDED
   and stops; unverified → the action is rolled back (``Applied.undo``) and the next one runs.
   A verified ``Applied`` with ``keep_until_resolved`` stays until that episode's
   ``ViolationResolved`` (or ``stop()``), then its undo is awaited and recorded on the action.

No action verified: FAILED. Advisory mode walks the ladder calling only pre-checks (ADVISORY).
Loops are stopped by cooldowns from the start of a run: per procedure and SLA
(``cooldown_seconds``) and per SLA for any procedure (``global_cooldown_s``; a procedure of a
higher severity threshold than the one that started it — an escalation to CRITICAL — is let
through). Skipped executions (disabled, no procedure, concurrency limit, cooldown) are recorded
as SKIPPED with the reason, in a small ring of their own, and not published. A fingerprint whose
executions keep failing for ``escalate_after_s`` publishes one ``ResponseEscalated``.

``switch_to_root_cause`` (called by ``root_cause.RootCauseHook`` on a confident ``RootCauseFound``)
may stop the episode's running ladder (SUPERSEDED: its applied action is undone as on a stop, its
pending approval denied) and run the cause's ladder in its place; the per-SLA cooldown is not
applied to that switch (it is the same episode), every other rule is.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.event_stream import EventStream, Subscription
from aphrodite_sla.events import (
    STALL_ALERT,
    VIOLATION_ALERT,
    MonitorEvent,
    RecoveryFinished,
    RecoveryStarted,
    ResponseEscalated,
    StallDetected,
    ViolationEscalated,
    ViolationRaised,
    ViolationResolved,
    episode_id,
    fingerprint,
)
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.approvals import ApprovalBook
from aphrodite_sla.recovery.model import (
    ActionHandler,
    ActionOutcome,
    ActionResult,
    Applied,
    ExecutionStatus,
    RecoveryAction,
    RecoveryExecution,
    RecoveryProcedure,
    RootCauseBasis,
    Undo,
)
from aphrodite_sla.recovery.procedures import default_procedures, effective_severity, select_procedure
from aphrodite_sla.recovery.recovery_stats import RecoveryHistory, RecoveryStats, copy_execution
from aphrodite_sla.recovery.root_cause import RootCauseDecision, plan_switch
from aphrodite_sla.recovery.verification import Verification, Verifier
from aphrodite_sla.sla.threshold import SLAViolation, ViolationRule, ViolationSeverity

logger = logging.getLogger(__name__)
T = TypeVar("T")

CANCEL_GRACE_S = 1.0  # how long a cancelled apply may take to stop before it is abandoned
RESOLVED_KEPT = 256  # resolved episodes remembered, so a mitigation verified after its episode resolved is undone at once
EPISODES_KEPT = 256  # episodes whose violation is remembered, for a root cause that arrives later


@dataclass(frozen=True)
class _Episode:
    """What recovery saw of a violation episode (a root-cause switch re-runs for it)."""

    violation: SLAViolation
    fingerprint: str
    stalled: bool
    procedure_id: str  # what its SLA selected ("" for none)


@dataclass(frozen=True)
class _Kept:
    """A verified mitigation that stays until its episode resolves."""

    episode: str
    execution_id: str
    index: int  # position of its ActionResult in the execution
    action: RecoveryAction
    undo: Undo
    timeout_s: float


@dataclass(frozen=True)
class _Attempted:
    """What applying one action (with its retries) came to."""

    applied: Applied | None
    outcome: ActionOutcome
    detail: str
    attempts: int
    rolled_back: bool = False
    rollback_detail: str = ""


class RecoveryEngine:
    """See the module docstring. Reads (``active``, ``history``, ``stats``, ``procedures``) are
    thread-safe and return copies; ``version``/``last_change`` tell readers cheaply that something
    changed."""

    def __init__(
        self,
        handlers: Mapping[RecoveryAction, ActionHandler],
        target: Any,
        *,
        verifier: Verifier,
        events: EventStream | None = None,
        clock: Clock = system_clock,
        procedures: list[RecoveryProcedure] | None = None,
        max_concurrent: int = 5,
        global_cooldown_s: float = 300.0,
        advisory: bool = False,
        approval_timeout_s: float = 300.0,
        require_approval: frozenset[RecoveryAction] | None = None,
        history_size: int = 500,
        enabled: bool = True,
        escalate_after_s: float = 1800.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"RecoveryEngine.max_concurrent: must be an integer >= 1, got {max_concurrent!r}")
        for name, value in (("global_cooldown_s", global_cooldown_s), ("escalate_after_s", escalate_after_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"RecoveryEngine.{name}: must be a number >= 0, got {value!r}")
        self._handlers: dict[RecoveryAction, ActionHandler] = {RecoveryAction(k): v for k, v in handlers.items()}
        self.target = target
        self.verifier = verifier
        self.events = events
        self.clock = clock
        self.max_concurrent = max_concurrent
        self.global_cooldown_s = float(global_cooldown_s)
        self.escalate_after_s = float(escalate_after_s)
        self.advisory = bool(advisory)
        self.enabled = bool(enabled)
        self.require_approval = None if require_approval is None else frozenset(RecoveryAction(a) for a in require_approval)
        self.approvals = ApprovalBook(clock, events, approval_timeout_s)
        self.sleep = sleep  # how a settle time is waited (a simulation waits on its own clock)
        self._inflight = 0  # coroutines handed to the loop and not finished (see ``inflight``)

        self._lock = threading.RLock()
        self._version = 0
        self.last_change = clock()
        self._procedures: dict[str, RecoveryProcedure] = {}
        for p in default_procedures() if procedures is None else procedures:
            self.add_procedure(p)
        self._active: dict[str, RecoveryExecution] = {}
        self._history = RecoveryHistory(history_size)
        # True while a maintenance window holds automated recovery back (the production monitor's
        # mode; set by RecoverySystem, which owns the monitor)
        self.in_maintenance: Callable[[], bool] = lambda: False
        self._sla_last: dict[str, tuple[float, int]] = {}  # sla -> (start of its last run, severity rank of that procedure)
        self._procedure_last: dict[tuple[str, str], float] = {}  # (procedure_id, sla) -> start of its last run
        self._kept: dict[str, list[_Kept]] = {}  # episode -> mitigations kept until it resolves
        self._resolved: OrderedDict[str, None] = OrderedDict()
        self._failing_since: dict[str, float] = {}  # fingerprint -> trigger of its first failure in a row
        self._escalated: set[str] = set()
        self._episodes: OrderedDict[str, _Episode] = OrderedDict()
        self._running: dict[str, tuple[RecoveryProcedure, asyncio.Task[Any] | None]] = {}  # execution id -> its ladder, task
        self._superseded: dict[str, str] = {}  # execution id -> why, set just before its task is cancelled
        self._subscriptions: list[tuple[EventStream, Subscription]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # The loop thread does not exist in a forked child; nothing in flight there can finish.
        self._lock = threading.RLock()
        self._loop, self._thread = None, None
        self._active = {}

    # -- configuration -----------------------------------------------------------------------
    def add_procedure(self, procedure: RecoveryProcedure) -> None:
        """Add, or replace by ``procedure_id``."""
        if not isinstance(procedure, RecoveryProcedure):
            raise TypeError(f"add_procedure: expected RecoveryProcedure, got {type(procedure).__name__}")
        with self._lock:
            self._procedures[procedure.procedure_id] = procedure
            self._changed()

    def remove_procedure(self, procedure_id: str) -> bool:
        with self._lock:
            removed = self._procedures.pop(procedure_id, None) is not None
            if removed:
                self._changed()
            return removed

    def procedures(self) -> list[RecoveryProcedure]:
        with self._lock:
            return list(self._procedures.values())

    def select_procedure(self, violation: SLAViolation, stalled: bool = False) -> RecoveryProcedure | None:
        return select_procedure(self.procedures(), violation, stalled)

    def enable(self) -> None:
        with self._lock:
            self.enabled = True
            self._changed()

    def disable(self) -> None:
        with self._lock:
            self.enabled = False
            self._changed()

    # -- reading -----------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Bumped on every change a reader could see (a run started, an action ended, ...)."""
        return self._version

    def active(self) -> list[RecoveryExecution]:
        with self._lock:
            return [copy_execution(e) for e in self._active.values()]

    def history(self, limit: int | None = None) -> list[RecoveryExecution]:
        """Finished executions (SKIPPED ones included), newest first."""
        with self._lock:
            return self._history.recent(limit)

    def stats(self) -> RecoveryStats:
        with self._lock:
            kept = sum(len(v) for v in self._kept.values())
            return self._history.stats(active=len(self._active), kept_mitigations=kept, version=self._version)

    # -- the loop thread ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the recovery loop thread (idempotent; ``execute_recovery`` and ``attach`` start it
        when needed)."""
        self._ensure_loop()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self.running:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=_run_loop, args=(loop, ready), name="aphrodite-sla-recovery", daemon=True)
            self._loop, self._thread = loop, thread
            thread.start()
        ready.wait()
        return loop

    def stop(self, timeout: float = 5.0) -> bool:
        """Undo kept mitigations (up to ``timeout``), cancel what runs and end the loop thread;
        True once it has ended."""
        self.detach()
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop, self._thread = None, None
        if loop is None or thread is None:
            return True
        if thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._release_all("recovery engine stopped"), loop).result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError, concurrent.futures.CancelledError):
                logger.warning("aphrodite-sla recovery: kept mitigations not all undone within %.1f s of stop()", timeout)
            try:  # runs in progress are cancelled, so each undoes what it applied and is recorded FAILED
                asyncio.run_coroutine_threadsafe(_cancel_others(timeout), loop).result(timeout + 1.0)
            except (concurrent.futures.TimeoutError, RuntimeError, concurrent.futures.CancelledError):
                logger.warning("aphrodite-sla recovery: runs in progress not all ended within %.1f s of stop()", timeout)
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # already closed
                pass
            thread.join(timeout)
        return not thread.is_alive()

    # -- the stream --------------------------------------------------------------------------
    def attach(self, stream: EventStream) -> None:
        """Run recovery for every ``ViolationRaised`` (stalls included) and ``ViolationEscalated``
        on ``stream``, and undo kept mitigations on ``ViolationResolved``. Publishes there too
        when the engine was built without ``events``."""
        with self._lock:
            if self.events is None:
                self.events = stream
                self.approvals.events = stream
            self._subscriptions.append((stream, stream.subscribe(self._on_violation, ViolationRaised, ViolationEscalated, name="recovery")))
            self._subscriptions.append((stream, stream.subscribe(self._on_resolved, ViolationResolved, name="recovery-resolved")))
        # the loop thread starts with the first violation (or start()): a monitor that never sees one holds no thread

    def detach(self) -> None:
        with self._lock:
            subs, self._subscriptions = self._subscriptions, []
        for stream, sub in subs:
            stream.unsubscribe(sub)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the recovery loop (from any thread; never waits). Counted in
        ``inflight`` from this call until it finishes."""
        with self._lock:
            self._inflight += 1
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        except BaseException:
            coro.close()
            self._done_inflight(None)
            raise
        future.add_done_callback(self._done_inflight)
        return future

    def _done_inflight(self, _future: object) -> None:
        with self._lock:
            self._inflight -= 1

    @property
    def inflight(self) -> int:
        """Coroutines handed to the recovery loop (by events, the API, self-healing) and not yet
        finished: a simulation waits until each of them is waiting on its clock."""
        return self._inflight

    def _on_violation(self, event: MonitorEvent) -> None:
        # On a delivery thread: schedule, never wait.
        violation: SLAViolation = event.violation  # type: ignore[attr-defined]
        stalled = isinstance(event, StallDetected)
        coro = self._execute(violation, event.fingerprint, event.episode, event.occurred_at, stalled, automated=True)
        self.submit(coro).add_done_callback(_log_failure)

    def _on_resolved(self, event: ViolationResolved) -> None:
        with self._lock:
            self._resolved[event.episode] = None
            while len(self._resolved) > RESOLVED_KEPT:
                self._resolved.popitem(last=False)
            self._failing_since.pop(event.fingerprint, None)
            self._escalated.discard(event.fingerprint)
            has_kept = bool(self._kept.get(event.episode))
        if has_kept:
            self.submit(self.release_kept(event.episode, "violation resolved")).add_done_callback(_log_failure)

    # -- running -----------------------------------------------------------------------------
    async def execute_recovery(
        self, violation: SLAViolation, *, fingerprint: str = "", episode: str = "", triggered_at: float | None = None,
        stalled: bool = False,
    ) -> RecoveryExecution:
        """Run the selected procedure for ``violation`` on the recovery loop and return a copy of
        the finished execution. ``fingerprint``/``episode`` default to the monitor's ids for the
        violation; ``triggered_at`` to now. Cancelling the caller does not cancel the run."""
        at = self.clock() if triggered_at is None else float(triggered_at)
        loop = self._ensure_loop()
        coro = self._execute(violation, fingerprint, episode, at, stalled)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            return await coro
        return await asyncio.shield(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop)))

    async def test_action(self, action: RecoveryAction, by: str) -> ActionResult:
        """Run one action by hand (the REST API's test route): no violation, so no verification;
        advisory mode and approvals apply as in a procedure."""
        action = RecoveryAction(action)
        loop = self._ensure_loop()

        async def run() -> ActionResult:
            manual = RecoveryProcedure(f"manual-{action.value}", f"manual {action.value}", f"run by {by}", (action,), settle_seconds=0.0)
            execution = RecoveryExecution(
                _new_id("manual"), manual.procedure_id, "", "", "", ViolationSeverity.MINOR, ExecutionStatus.RUNNING,
                self.clock(), self.clock(), advisory=self.advisory, reason=f"run by hand by {by}",
            )
            result, _ = await self._run_action(execution, manual, action, None)
            with self._lock:
                self._changed()
            return result

        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            return await run()
        return await asyncio.shield(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop)))

    async def _execute(self, violation: SLAViolation, fp: str, episode: str, triggered_at: float, stalled: bool, *,
                       chosen: RecoveryProcedure | None = None, basis: RootCauseBasis | None = None,
                       automated: bool = False) -> RecoveryExecution:
        """One execution: ``chosen`` (a root cause's ladder, with ``basis``) or the procedure the
        violation selects. ``automated``: started by a violation on the stream (a maintenance
        window holds those back; a person's ``execute_recovery`` is not)."""
        stalled = stalled or violation.rule is ViolationRule.STALL
        if not fp:
            fp = fingerprint(STALL_ALERT) if stalled else fingerprint(VIOLATION_ALERT, sla=violation.metric_name)
        if not episode:
            episode = episode_id(fp, violation.first_breach_time)
        sla = violation.metric_name
        severity = effective_severity(violation, stalled)
        now = self.clock()
        with self._lock:
            procedure = chosen if chosen is not None else select_procedure(self._procedures.values(), violation, stalled)
            if chosen is None and episode:
                self._episodes[episode] = _Episode(violation, fp, stalled, procedure.procedure_id if procedure is not None else "")
                self._episodes.move_to_end(episode)
                while len(self._episodes) > EPISODES_KEPT:
                    self._episodes.popitem(last=False)
            skip = self._admission(procedure, sla, now, switch=chosen is not None, automated=automated)
            execution = RecoveryExecution(
                _new_id("rec"), procedure.procedure_id if procedure is not None else "", sla, fp, episode, severity,
                ExecutionStatus.RUNNING, now, triggered_at, advisory=self.advisory, root_cause=basis,
            )
            if skip is not None or procedure is None:
                kind, reason = skip or ("no_procedure", "no procedure")
                execution.status, execution.finished_at, execution.reason = ExecutionStatus.SKIPPED, now, reason
                self._history.record(execution, kind)
                self._changed()
                return copy_execution(execution)
            self._active[execution.execution_id] = execution
            self._running[execution.execution_id] = (procedure, asyncio.current_task())
            self._sla_last[sla] = (now, procedure.severity_threshold.rank)
            self._procedure_last[(procedure.procedure_id, sla)] = now
            self._changed()
        self._publish(RecoveryStarted(fp, episode, now, execution.execution_id, procedure.procedure_id, sla,
                                      reason=basis.summary() if basis is not None else ""))
        try:
            await self._ladder(execution, procedure, violation)
        except asyncio.CancelledError:
            with self._lock:
                superseded = self._superseded.pop(execution.execution_id, None)
            if superseded is None:
                self._finish(execution, ExecutionStatus.FAILED, "cancelled (the recovery engine stopped)")
                raise
            self._finish(execution, ExecutionStatus.SUPERSEDED, superseded)  # stopped on purpose: the switch goes on
            uncancel = getattr(asyncio.current_task(), "uncancel", None)  # Python >= 3.11: the task goes on normally
            if uncancel is not None:
                uncancel()
        except Exception as exc:  # a bug of ours or a handler's that escaped: the run ends FAILED, it is not lost
            logger.exception("aphrodite-sla recovery: execution %s failed unexpectedly", execution.execution_id)
            self._finish(execution, ExecutionStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(execution.execution_id, None)
        with self._lock:
            return copy_execution(execution)

    async def switch_to_root_cause(self, episode: str, ladder: RecoveryProcedure, basis: RootCauseBasis, *,
                                   on_decided: Callable[[RootCauseDecision], None] | None = None) -> RecoveryExecution | None:
        """Run ``ladder`` (a confident root cause's) for ``episode`` when it adds to what the episode
        tried and runs (``root_cause.plan_switch``): the episode's running ladder, if any, is
        SUPERSEDED first. ``on_decided`` hears the decision before the new ladder runs. Returns the
        new execution (finished), or None when nothing was started."""
        now = self.clock()
        running: RecoveryExecution | None = None
        task: asyncio.Task[Any] | None = None
        with self._lock:
            seen = self._episodes.get(episode)
            plan = None
            if seen is None:
                why = "recovery saw no violation of this episode"
            elif episode in self._resolved:
                why = "the episode resolved before its root cause was found"
            elif not self.enabled:
                why = "recovery is disabled"
            else:
                why = ""
                sla = seen.violation.metric_name
                same = next((e for e in self._active.values() if e.procedure_id == ladder.procedure_id), None)
                # one cause, one ladder: its cooldown holds whichever SLA it ran for
                last = max((t for (pid, _), t in self._procedure_last.items() if pid == ladder.procedure_id), default=None)
                if same is not None:
                    why = f"{ladder.procedure_id} is already running (for {same.sla})"
                elif last is not None and now - last < ladder.cooldown_seconds:
                    why = f"{ladder.procedure_id} ran {now - last:.0f} s ago (cooldown {ladder.cooldown_seconds:g} s)"
                else:
                    actives = list(self._active.values())
                    running = (next((e for e in actives if e.episode == episode), None)
                               or next((e for e in actives if e.sla == sla), None)
                               or next((e for e in actives if seen.procedure_id and e.procedure_id == seen.procedure_id), None))
                    since = now - self.global_cooldown_s
                    runs = [e for e in (*self._history.recent(), *actives) if e.status is not ExecutionStatus.SKIPPED
                            and e is not running and (e.episode == episode or e.started_at >= since)]
                    ran = self._running.get(running.execution_id) if running is not None else None
                    plan = plan_switch(ladder.actions, runs, running, ran[0].actions if ran is not None else (), episode=episode, sla=sla)
                    why = plan.reason
                    if plan.act and running is not None:
                        task = ran[1] if ran is not None else None
                        self._superseded[running.execution_id] = f"superseded by {ladder.procedure_id}: {basis.summary()}"
        decided = RootCauseDecision(now, episode, seen.violation.metric_name if seen is not None else "", basis.cause, basis.confidence,
                                    bool(plan is not None and plan.act), why, ladder.procedure_id if plan is not None and plan.act else "",
                                    replaced_execution=running.execution_id if running is not None and plan is not None and plan.act else "")
        if plan is None or not plan.act or seen is None:
            if on_decided is not None:
                on_decided(decided)
            return None
        if running is not None:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_GRACE_S + ladder.timeout_seconds)
            if task is None or task.done():  # (it may have ended on its own just before the cancel)
                with self._lock:
                    self._superseded.pop(running.execution_id, None)
            for request in self.approvals.pending():
                if request.execution_id == running.execution_id:
                    try:
                        self.approvals.deny(request.request_id, "recovery", f"superseded by {ladder.procedure_id}")
                    except (KeyError, ValueError):
                        pass  # decided meanwhile
        basis = replace(basis, replaced_procedure=running.procedure_id if running is not None else seen.procedure_id,
                        replaced_execution=running.execution_id if running is not None else "", decision=plan.reason)
        chosen = replace(ladder, actions=plan.actions)
        run = asyncio.ensure_future(self._execute(seen.violation, seen.fingerprint, episode, now, seen.stalled, chosen=chosen, basis=basis))
        await asyncio.sleep(0)  # its admission runs first, so the decision can name the execution
        with self._lock:
            started = next((e for e in self._active.values() if e.episode == episode and e.procedure_id == chosen.procedure_id), None)
        if on_decided is not None:
            if started is not None:
                on_decided(replace(decided, execution_id=started.execution_id))
            else:  # admission refused it (the concurrency limit): recorded SKIPPED with the reason
                skipped = run.result() if run.done() and not run.cancelled() and run.exception() is None else None
                on_decided(replace(decided, acted=False, reason=f"{plan.reason}; not started: {skipped.reason if skipped else 'unknown'}"))
        return await run

    def _admission(self, procedure: RecoveryProcedure | None, sla: str, now: float, switch: bool = False,
                   automated: bool = False) -> tuple[str, str] | None:
        """(kind, reason) why a run may not start now, or None. Called under the lock. ``switch``:
        a root cause's ladder for an episode recovery already answered (no per-SLA cooldown);
        ``automated``: started by a violation, which a maintenance window holds back (planned work
        breaks SLAs on purpose: restarting or shedding in the middle of it only does harm)."""
        if not self.enabled:
            return "disabled", "recovery is disabled"
        if automated and self.in_maintenance():
            return "maintenance", "a maintenance window holds automated recovery back"
        if procedure is None:
            return "no_procedure", f"no procedure answers {sla} at this severity"
        if len(self._active) >= self.max_concurrent:
            return "concurrency", f"{len(self._active)} recoveries running (max_concurrent {self.max_concurrent})"
        running = next((e for e in self._active.values() if e.procedure_id == procedure.procedure_id), None)
        if running is not None:
            # one fault trips several SLAs at once (p95, p99, TTFT): one ladder acts for all of them
            return "running", f"{procedure.procedure_id} is already running (for {running.sla})"
        last = self._procedure_last.get((procedure.procedure_id, sla))
        if last is not None and now - last < procedure.cooldown_seconds:
            return "cooldown", f"{procedure.procedure_id} ran for {sla} {now - last:.0f} s ago (cooldown {procedure.cooldown_seconds:g} s)"
        sla_last = self._sla_last.get(sla)
        if (not switch and sla_last is not None and now - sla_last[0] < self.global_cooldown_s
                and procedure.severity_threshold.rank <= sla_last[1]):
            return "cooldown", f"a recovery ran for {sla} {now - sla_last[0]:.0f} s ago (global cooldown {self.global_cooldown_s:g} s)"
        return None

    def _episode_resolved(self, execution: RecoveryExecution) -> bool:
        with self._lock:
            return bool(execution.episode) and execution.episode in self._resolved

    async def _ladder(self, execution: RecoveryExecution, procedure: RecoveryProcedure, violation: SLAViolation) -> None:
        for action in procedure.actions:
            if self._episode_resolved(execution) and not execution.advisory:
                # a stall that ended, errors that stopped: restarting now would only do harm
                self._finish(execution, ExecutionStatus.RESOLVED, f"the violation resolved before {action.value}; the rest was not run")
                return
            result, kept = await self._run_action(execution, procedure, action, violation)
            with self._lock:
                index = len(execution.actions)
                execution.actions.append(result)
                self._changed()
            if kept is not None:
                await self._keep(execution, index, action, kept, procedure.timeout_seconds)
            if result.verified:
                self._finish(execution, ExecutionStatus.SUCCEEDED, f"{action.value} verified: {result.verification}")
                return
        if execution.advisory:
            self._finish(execution, ExecutionStatus.ADVISORY, "advisory mode: nothing was changed")
        else:
            tried = ", ".join(f"{r.action.value} {r.outcome.value}" for r in execution.actions)
            self._finish(execution, ExecutionStatus.FAILED, f"no action verified ({tried})")

    async def _run_action(self, execution: RecoveryExecution, procedure: RecoveryProcedure, action: RecoveryAction,
                          violation: SLAViolation | None) -> tuple[ActionResult, Undo | None]:
        """One rung of the ladder: the result, and the undo to keep until the episode resolves."""
        started = self.clock()

        def result(outcome: ActionOutcome, detail: str, **kw: Any) -> ActionResult:
            return ActionResult(action, outcome, started, max(0.0, self.clock() - started), detail, **kw)

        handler = self._handlers.get(action)
        if handler is None:
            return result(ActionOutcome.NOT_AVAILABLE, "no handler for this action"), None
        try:
            check = handler.precheck(self.target, violation)
        except Exception as exc:
            return result(ActionOutcome.PRECHECK_FAILED, f"pre-check raised {type(exc).__name__}: {exc}"), None
        needs_approval = self._needs_approval(action, handler)
        if execution.advisory:
            if not check.ok:
                return result(ActionOutcome.ADVISORY, f"would not run: {check.reason}"), None
            return result(ActionOutcome.ADVISORY, "would apply" + (" (after approval)" if needs_approval else "")), None
        if not check.ok:
            outcome = ActionOutcome.PRECHECK_FAILED if check.available else ActionOutcome.NOT_AVAILABLE
            return result(outcome, check.reason), None
        if needs_approval:
            approved, detail = await self._approval(execution, procedure, action, violation)
            if not approved:
                return result(ActionOutcome.DENIED, detail), None
            if self._episode_resolved(execution):
                return result(ActionOutcome.PRECHECK_FAILED, f"{detail}, but the violation resolved meanwhile: not run"), None
        attempt = await self._apply_with_retries(handler, violation, procedure)
        if attempt.applied is None:
            return result(attempt.outcome, attempt.detail, attempts=attempt.attempts, rolled_back=attempt.rolled_back,
                          rollback_detail=attempt.rollback_detail), None
        applied = attempt.applied
        if violation is None:  # by hand: nothing to verify against
            return result(ActionOutcome.SUCCEEDED, applied.detail, attempts=attempt.attempts), None
        if procedure.settle_seconds > 0:
            try:
                await self.sleep(procedure.settle_seconds)
            except asyncio.CancelledError:  # stopped while settling: what was applied does not outlive the run
                await asyncio.shield(self._undo(applied.undo, procedure.timeout_seconds))
                raise
        check_back = self._verify(violation, procedure.settle_seconds)
        if check_back.verified:
            kept = applied.undo if applied.keep_until_resolved else None
            return result(ActionOutcome.SUCCEEDED, applied.detail, verified=True, verification=check_back.detail, attempts=attempt.attempts), kept
        rolled_back, rollback_detail = await self._undo(applied.undo, procedure.timeout_seconds)
        return result(ActionOutcome.UNVERIFIED, applied.detail, verified=False, verification=check_back.detail, rolled_back=rolled_back,
                      rollback_detail=rollback_detail, attempts=attempt.attempts), None

    def _needs_approval(self, action: RecoveryAction, handler: ActionHandler) -> bool:
        if self.require_approval is not None:
            return action in self.require_approval
        return bool(getattr(handler, "requires_approval", False))

    async def _approval(self, execution: RecoveryExecution, procedure: RecoveryProcedure, action: RecoveryAction,
                        violation: SLAViolation | None) -> tuple[bool, str]:
        with self._lock:
            execution.status = ExecutionStatus.AWAITING_APPROVAL
            self._changed()
        why = violation.message if violation is not None else execution.reason
        request = self.approvals.request(execution.execution_id, action, f"{procedure.name}: {action.value} for {why}",
                                         fingerprint=execution.fingerprint, episode=execution.episode)
        try:
            approved = await self.approvals.wait(request.request_id)
        finally:
            with self._lock:
                execution.status = ExecutionStatus.RUNNING
                self._changed()
        decided = self.approvals.get(request.request_id)
        return approved, f"{decided.state.value} by {decided.decided_by}" + (f": {decided.reason}" if decided.reason else "")

    async def _apply_with_retries(self, handler: ActionHandler, violation: SLAViolation | None, procedure: RecoveryProcedure) -> _Attempted:
        last = _Attempted(None, ActionOutcome.FAILED, "not attempted", 0)
        rolled_back, rollback_detail = False, ""
        for n in range(1, procedure.retry_count + 1):
            outcome, value, late_undo = await self._apply_once(handler, violation, procedure.timeout_seconds)
            if late_undo is not None:
                rolled_back, rollback_detail = late_undo
            if isinstance(value, Applied):
                return _Attempted(value, ActionOutcome.SUCCEEDED, value.detail, n, rolled_back, rollback_detail)
            last = _Attempted(None, outcome, str(value), n, rolled_back, rollback_detail)
        return last

    async def _apply_once(self, handler: ActionHandler, violation: SLAViolation | None,
                          timeout_s: float) -> tuple[ActionOutcome, Applied | str, tuple[bool, str] | None]:
        """(outcome, Applied or why not, the undo of an apply that returned after its timeout)."""
        task = asyncio.ensure_future(handler.apply(self.target, violation))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
            late: tuple[bool, str] | None = None
            if done and not task.cancelled() and task.exception() is None and isinstance(task.result(), Applied):
                late = await self._undo(task.result().undo, timeout_s)  # it returned despite the cancel: take it back
            elif not done:
                logger.warning("aphrodite-sla recovery: %s did not stop when cancelled; abandoned", handler.action)
            return ActionOutcome.TIMED_OUT, f"timed out after {timeout_s:g} s", late
        if task.cancelled():
            return ActionOutcome.FAILED, "cancelled", None
        exc = task.exception()
        if exc is not None:
            return ActionOutcome.FAILED, f"raised {type(exc).__name__}: {exc}", None
        value = task.result()
        if not isinstance(value, Applied):
            return ActionOutcome.FAILED, f"apply returned {type(value).__name__}, expected Applied", None
        return ActionOutcome.SUCCEEDED, value, None

    def _verify(self, violation: SLAViolation, settle_s: float) -> Verification:
        try:
            return self.verifier.verify(violation, settle_s)
        except Exception as exc:
            return Verification(False, f"verification raised {type(exc).__name__}: {exc}")

    async def _undo(self, undo: Undo | None, timeout_s: float) -> tuple[bool, str]:
        """(rolled back, what happened)."""
        if undo is None:
            return False, "nothing to undo"
        try:
            await asyncio.wait_for(undo(), timeout_s)
        except asyncio.TimeoutError:
            return False, f"undo timed out after {timeout_s:g} s"
        except Exception as exc:
            return False, f"undo raised {type(exc).__name__}: {exc}"
        return True, "undone"

    # -- kept mitigations ----------------------------------------------------------------------
    async def _keep(self, execution: RecoveryExecution, index: int, action: RecoveryAction, undo: Undo, timeout_s: float) -> None:
        kept = _Kept(execution.episode, execution.execution_id, index, action, undo, timeout_s)
        with self._lock:
            resolved = execution.episode in self._resolved
            if not resolved:
                self._kept.setdefault(execution.episode, []).append(kept)
                self._changed()
        if resolved:  # the episode ended while the action settled
            await self._release(kept, "violation resolved")

    async def release_kept(self, episode: str, reason: str) -> int:
        """Undo the mitigations kept for ``episode``; returns how many were undone."""
        with self._lock:
            kept = self._kept.pop(episode, [])
        done = 0
        for k in kept:
            done += await self._release(k, reason)
        return done

    async def _release_all(self, reason: str) -> None:
        with self._lock:
            episodes = list(self._kept)
        for episode in episodes:
            await self.release_kept(episode, reason)

    async def _release(self, kept: _Kept, reason: str) -> bool:
        ok, detail = await self._undo(kept.undo, kept.timeout_s)
        with self._lock:
            execution = self._active.get(kept.execution_id)
            in_history = execution is None
            if in_history:
                found = self._history.find(kept.execution_id)
                execution = copy_execution(found) if found is not None else None
            if execution is not None and kept.index < len(execution.actions):
                execution.actions[kept.index] = replace(execution.actions[kept.index], rolled_back=ok, rollback_detail=f"{reason}: {detail}")
                if in_history:
                    self._history.replace(kept.execution_id, execution)
            self._changed()
        return ok

    # -- finishing -----------------------------------------------------------------------------
    def _finish(self, execution: RecoveryExecution, status: ExecutionStatus, reason: str) -> None:
        now = self.clock()
        escalate: ResponseEscalated | None = None
        with self._lock:
            execution.status, execution.reason, execution.finished_at = status, reason, now
            self._active.pop(execution.execution_id, None)
            self._history.record(copy_execution(execution))
            fp = execution.fingerprint
            if status is ExecutionStatus.SUCCEEDED:
                self._failing_since.pop(fp, None)
                self._escalated.discard(fp)
            elif status is ExecutionStatus.FAILED:
                since = self._failing_since.setdefault(fp, execution.triggered_at)
                if now - since >= self.escalate_after_s and fp not in self._escalated:
                    self._escalated.add(fp)
                    escalate = ResponseEscalated(
                        fp, execution.episode, now, f"recovery of {execution.sla}", since,
                        f"recovery executions for {execution.sla} have failed for {now - since:.0f} s; last: {reason}",
                    )
            self._changed()
            copy = copy_execution(execution)
        self._publish(RecoveryFinished(execution.fingerprint, execution.episode, now, copy))
        if escalate is not None:
            self._publish(escalate)

    def _changed(self) -> None:
        self._version += 1
        self.last_change = self.clock()

    def _publish(self, event: MonitorEvent) -> None:
        if self.events is not None:
            self.events.publish((event,))


async def _cancel_others(timeout: float) -> None:
    """Cancel every other task of this loop and wait (up to ``timeout``) for them to end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        logger.error("aphrodite-sla recovery: a scheduled recovery failed: %s: %s", type(exc).__name__, exc)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


__all__ = ["RecoveryEngine"]
