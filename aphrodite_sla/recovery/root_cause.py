"""Recovery by the primary cause: when RCA names a cause with enough confidence, recovery runs the
procedure that cause recommends instead of the SLA's own, if that adds something the episode has not
tried and the running ladder is not about to do.

Why: a violation selects its procedure by symptom (a latency SLA runs the latency ladder), but the
same symptom has different remedies — a bad deployment needs a rollback, a memory leak a memory
cleanup or a restart, neither of which the latency ladder holds. RCA answers ~30 s after the
detection; this hook hears its ``RootCauseFound`` on the event stream (RCA never calls recovery)
and hands the switch to the recovery engine, which decides under its own lock against what is
running, so every safety rule still applies: approvals for risky actions, advisory mode (and
``auto_remediation: false``), recovery disabled, the cause procedure's own cooldown, one run of a
procedure at a time, ``recovery_max_concurrent``. Not acted on: insufficient evidence, a confidence
below ``min_confidence`` (RCA's confidence is calibrated: 0.8 is right about four times in five), a
cause that recommends no engine action, a maintenance window, and an episode already resolved or
already recovered.
"""
from __future__ import annotations

import logging
import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from aphrodite_sla.events import RootCauseFound
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.model import (
    ActionOutcome,
    ExecutionStatus,
    RecoveryAction,
    RecoveryExecution,
    RecoveryProcedure,
    RootCauseBasis,
    parse_action,
    plain,
)

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.event_stream import EventStream, Subscription
    from aphrodite_sla.recovery.engine import RecoveryEngine

logger = logging.getLogger(__name__)

INSUFFICIENT_EVIDENCE = "insufficient_evidence"  # RCA's name for "no cause" (rca.causes)
PROCEDURE_PREFIX = "rca_"
DECISIONS_KEPT = 200
EVIDENCE_KEPT = 3


@dataclass(frozen=True)
class RootCauseSettings:
    """``recovery_use_root_cause`` and ``recovery_root_cause_min_confidence`` (see ``config``)."""

    enabled: bool = True
    min_confidence: float = 0.8

    def __post_init__(self) -> None:
        c = self.min_confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or not 0.0 <= c <= 1.0:
            raise ValueError(f"RootCauseSettings.min_confidence: must be a number in [0, 1], got {c!r}")


@dataclass(frozen=True)
class RootCauseDecision:
    """What recovery did with one ``RootCauseFound`` (kept for the API and the console)."""

    at: float
    episode: str
    sla: str
    cause: str
    confidence: float
    acted: bool
    reason: str
    procedure_id: str = ""
    execution_id: str = ""
    replaced_execution: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class SwitchPlan:
    """``plan_switch``'s answer: run ``actions`` (the cause's ladder minus what the episode tried)
    or not, and why."""

    act: bool
    reason: str
    actions: tuple[RecoveryAction, ...] = ()


def plan_switch(ladder: Iterable[RecoveryAction], recent_runs: Iterable[RecoveryExecution], running: RecoveryExecution | None,
                running_actions: tuple[RecoveryAction, ...], *, episode: str = "", sla: str = "") -> SwitchPlan:
    """Whether the cause's ``ladder`` differs from what recovery ran and runs for the fault.

    ``recent_runs``: executions (skipped ones left out) of the episode and of the last cooldown on
    any SLA — one fault trips several SLAs, and their ladders act on the same engine; ``running``:
    the execution acting for the episode now (its own, or its SLA's, or the one whose procedure the
    episode selected), with its procedure's ``running_actions``. An action already tried is not
    repeated; a running ladder that is doing one of the cause's actions now, or does the cause's
    first remaining action next, agrees with the cause and is left alone. A run of the episode (or
    of its ``sla``) that succeeded means the fault is mitigated: nothing to switch."""
    runs = list(recent_runs)
    won = next((e for e in runs if e.status is ExecutionStatus.SUCCEEDED and (e.episode == episode or e.sla == sla)), None)
    if won is not None:
        return SwitchPlan(False, f"recovered already: {won.procedure_id} {won.reason}".strip())
    wanted = tuple(dict.fromkeys(ladder))
    # an advisory walk changed nothing: its "would apply" is not a try
    tried = {r.action for e in (*runs, *([running] if running is not None else [])) for r in e.actions
             if r.outcome is not ActionOutcome.ADVISORY}
    following: RecoveryAction | None = None
    if running is not None:
        done = len(running.actions)
        now_doing = running_actions[done] if done < len(running_actions) else None  # results are appended when a rung ends
        if now_doing is not None and now_doing in wanted:
            return SwitchPlan(False, f"{running.procedure_id} is doing {now_doing.value} now, as the cause recommends")
        if now_doing is not None:
            tried.add(now_doing)
        following = running_actions[done + 1] if done + 1 < len(running_actions) else None
    remaining = tuple(a for a in wanted if a not in tried)
    if not remaining:
        return SwitchPlan(False, f"already tried: {', '.join(a.value for a in wanted)}")
    if running is not None and following is remaining[0]:
        return SwitchPlan(False, f"{running.procedure_id} runs {remaining[0].value} next, as the cause recommends")
    skipped = [a.value for a in wanted if a in tried]
    why = f"runs {', '.join(a.value for a in remaining)}"
    if running is not None:
        why += f" instead of the rest of {running.procedure_id}"
    if skipped:
        why += f" ({', '.join(skipped)} already tried)"
    return SwitchPlan(True, why, remaining)


def recommended_actions(analysis: Any) -> tuple[tuple[RecoveryAction, ...], list[str]]:
    """The recovery actions of an analysis's recommendations, in order (unknown names are
    returned apart, never guessed at)."""
    actions: list[RecoveryAction] = []
    unknown: list[str] = []
    for rec in getattr(analysis, "recommendations", None) or ():
        name = getattr(rec, "action", rec)
        try:
            action = parse_action(str(name))
        except ValueError:
            unknown.append(str(name))
            continue
        if action not in actions:
            actions.append(action)
    return tuple(actions), unknown


def basis_of(event: RootCauseFound, actions: tuple[RecoveryAction, ...]) -> RootCauseBasis:
    """What the execution records of the cause (primary cause's metric, description, evidence)."""
    primary = getattr(event.analysis, "primary_root_cause", None)
    evidence = tuple(str(e) for e in (getattr(primary, "evidence_for", ()) or ())[:EVIDENCE_KEPT])
    return RootCauseBasis(event.cause, event.category, float(event.confidence), str(getattr(primary, "metric", "") or ""),
                          str(getattr(primary, "description", "") or ""), evidence, actions)


class RootCauseHook:
    """Hears ``RootCauseFound`` and hands a switch to the recovery engine (see the module
    docstring). ``procedures``: an operator's ladder per cause name (default: the actions the
    analysis recommends, in order, with the default procedure timings). A maintenance window is
    the engine's (``engine.in_maintenance``), which holds back violation-driven runs too."""

    def __init__(self, engine: RecoveryEngine, settings: RootCauseSettings | None = None, *,
                 procedures: Mapping[str, RecoveryProcedure] | None = None) -> None:
        self.engine = engine
        self.settings = settings or RootCauseSettings()
        self.procedures = dict(procedures or {})
        self._decisions: deque[RootCauseDecision] = deque(maxlen=DECISIONS_KEPT)
        self._counts: Counter[tuple[str, bool]] = Counter()  # (cause, acted) -> decisions, for the exporter
        self._lock = threading.Lock()
        self._subscription: tuple[EventStream, Subscription] | None = None
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # recovery's view reads the counts on every snapshot: a lock held at fork() would hang the child
        self._lock = threading.Lock()

    def attach(self, stream: EventStream) -> None:
        with self._lock:
            if self._subscription is None:
                self._subscription = (stream, stream.subscribe(self.on_root_cause, RootCauseFound, name="recovery-root-cause"))

    def detach(self) -> None:
        with self._lock:
            sub, self._subscription = self._subscription, None
        if sub is not None:
            sub[0].unsubscribe(sub[1])

    # -- reading --------------------------------------------------------------------------------
    def decisions(self, limit: int | None = None) -> list[RootCauseDecision]:
        """Newest first."""
        with self._lock:
            items = list(self._decisions)
        items.reverse()
        return items if limit is None else items[: max(0, limit)]

    def decision_counts(self) -> dict[tuple[str, bool], int]:
        """Every decision since start, by (cause, acted): the list above keeps only the last ones."""
        with self._lock:
            return dict(self._counts)

    def status(self) -> dict[str, Any]:
        return {"enabled": self.settings.enabled, "min_confidence": self.settings.min_confidence,
                "procedures": sorted(self.procedures), "decisions": [d.to_dict() for d in self.decisions(20)]}

    # -- the reaction (on the subscription's thread: screen, then schedule; never wait) ----------
    def on_root_cause(self, event: RootCauseFound) -> None:
        ladder, basis, why_not = self.screen(event)
        if ladder is None or basis is None:
            self.record(RootCauseDecision(float(self.engine.clock()), event.episode, event.sla, event.cause,
                                          _finite(event.confidence), False, why_not))
            return
        future = self.engine.submit(self.engine.switch_to_root_cause(event.episode, ladder, basis, on_decided=self.record))
        future.add_done_callback(_log_failure)

    def screen(self, event: RootCauseFound) -> tuple[RecoveryProcedure | None, RootCauseBasis | None, str]:
        """(the cause's ladder, its basis, "") when it may act; else (None, None, why not)."""
        s = self.settings
        if not s.enabled:
            return None, None, "recovery_use_root_cause is off"
        analysis = event.analysis
        if event.cause == INSUFFICIENT_EVIDENCE or bool(getattr(analysis, "insufficient_evidence", False)):
            return None, None, "insufficient evidence: RCA named no cause"
        confidence = event.confidence
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
            return None, None, f"confidence {confidence!r} is not a number"
        if confidence < s.min_confidence:
            return None, None, f"confidence {confidence:.0%} below recovery_root_cause_min_confidence {s.min_confidence:.0%}"
        if self.engine.in_maintenance():
            return None, None, "a maintenance window holds automated recovery back"
        actions, unknown = recommended_actions(analysis)
        if unknown:
            logger.warning("aphrodite-sla recovery: RCA recommended unknown action(s) %s for %s; ignored", ", ".join(unknown), event.cause)
        ladder = self.procedures.get(event.cause)
        if ladder is None:
            if not actions:
                return None, None, f"{event.cause} recommends no engine action"
            ladder = RecoveryProcedure(f"{PROCEDURE_PREFIX}{event.cause}", f"Root cause: {event.cause}",
                                       f"the actions RCA recommends for {event.cause}, in order", actions)
        return ladder, basis_of(event, ladder.actions), ""

    def record(self, decision: RootCauseDecision) -> None:
        with self._lock:
            self._decisions.append(decision)
            self._counts[(decision.cause, decision.acted)] += 1
        logger.info("aphrodite-sla recovery: root cause %s (%.0f%%) for %s: %s%s", decision.cause, 100 * decision.confidence,
                    decision.sla, "switched: " if decision.acted else "", decision.reason)


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _log_failure(future: Any) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        logger.error("aphrodite-sla recovery: a root-cause switch failed: %s: %s", type(exc).__name__, exc)


__all__ = ["RootCauseDecision", "RootCauseHook", "RootCauseSettings", "SwitchPlan", "basis_of", "plan_switch", "recommended_actions"]
