"""Approvals: a risky recovery action waits for a person to approve or deny it.

Why a book of its own: the decision comes from the REST API's thread while the action waits on
the recovery loop's thread; the book is the one thread-safe place both meet, and every request
and decision is also published on the event stream (``ApprovalRequested``/``ApprovalDecided``)
for notifications and incidents. Nobody answering is a "no": a request not decided by its
``expires_at`` is EXPIRED, decided by "timeout" (deny on timeout).
"""
from __future__ import annotations

import asyncio
import threading
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

from aphrodite_sla.clock import Clock, system_clock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import ApprovalDecided, ApprovalRequested, MonitorEvent
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.model import RecoveryAction

TIMEOUT_DECIDER = "timeout"
DEFAULT_KEEP = 200  # decided requests kept for reading (pending ones are always kept)


class ApprovalState(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"  # not decided in time: denied, by "timeout"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ApprovalRequest:
    """One request for one action of one execution (a new copy on every change)."""

    request_id: str
    execution_id: str
    action: RecoveryAction
    detail: str
    requested_at: float
    expires_at: float
    state: ApprovalState = ApprovalState.PENDING
    decided_by: str = ""
    decided_at: float | None = None
    reason: str = ""
    fingerprint: str = ""
    episode: str = ""

    @property
    def approved(self) -> bool:
        return self.state is ApprovalState.APPROVED

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["action"], out["state"] = self.action.value, self.state.value
        return out


_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[bool]"]


class ApprovalBook:
    """``request`` → ``wait`` (recovery loop) ↔ ``approve``/``deny`` (any thread). Unknown ids
    raise ``KeyError``; deciding a request that is no longer pending raises ``ValueError``."""

    def __init__(self, clock: Clock = system_clock, events: EventStream | None = None, timeout_s: float = 300.0, *,
                 keep: int = DEFAULT_KEEP) -> None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise ValueError(f"ApprovalBook.timeout_s: must be a number > 0, got {timeout_s!r}")
        self.clock = clock
        self.events = events
        self.timeout_s = float(timeout_s)
        self.keep = int(keep)
        self._lock = threading.Lock()
        self._requests: OrderedDict[str, ApprovalRequest] = OrderedDict()
        self._waiters: dict[str, list[_Waiter]] = {}
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._waiters = {}

    # -- writing -----------------------------------------------------------------------------
    def request(self, execution_id: str, action: RecoveryAction, detail: str = "", *, fingerprint: str = "",
                episode: str = "") -> ApprovalRequest:
        """Open a PENDING request that expires ``timeout_s`` from now."""
        now = self.clock()
        req = ApprovalRequest(
            f"apr-{uuid.uuid4().hex[:12]}", execution_id, RecoveryAction(action), detail, now, now + self.timeout_s,
            fingerprint=fingerprint, episode=episode,
        )
        with self._lock:
            self._requests[req.request_id] = req
            self._trim()
        self._publish(ApprovalRequested(fingerprint, episode, now, req.request_id, execution_id, req.action.value, req.expires_at))
        return req

    def approve(self, request_id: str, by: str) -> ApprovalRequest:
        return self._decide(request_id, ApprovalState.APPROVED, by, "")

    def deny(self, request_id: str, by: str, reason: str = "") -> ApprovalRequest:
        return self._decide(request_id, ApprovalState.DENIED, by, reason)

    def expire_due(self) -> list[ApprovalRequest]:
        """Mark every pending request past its ``expires_at`` EXPIRED (its waiters get False)."""
        now = self.clock()
        with self._lock:
            due = [r.request_id for r in self._requests.values() if r.state is ApprovalState.PENDING and r.expires_at <= now]
        out = []
        for request_id in due:
            try:
                out.append(self._decide(request_id, ApprovalState.EXPIRED, TIMEOUT_DECIDER, "not decided in time"))
            except ValueError:  # decided meanwhile
                pass
        return out

    def _decide(self, request_id: str, state: ApprovalState, by: str, reason: str) -> ApprovalRequest:
        if not isinstance(by, str) or not by.strip():
            raise ValueError("ApprovalBook: who decides (by) must be a non-empty string")
        now = self.clock()
        with self._lock:
            req = self._requests.get(request_id)
            if req is None:
                raise KeyError(f"approval request {request_id!r} is unknown (or too old to be kept)")
            if req.state is ApprovalState.PENDING and state is not ApprovalState.EXPIRED and req.expires_at <= now:
                state, by, reason = ApprovalState.EXPIRED, TIMEOUT_DECIDER, "not decided in time"  # too late: it expired
                self._requests[request_id] = req = replace(req, state=state, decided_by=by, decided_at=req.expires_at, reason=reason)
                waiters = self._waiters.pop(request_id, [])
                late = True
            elif req.state is not ApprovalState.PENDING:
                raise ValueError(f"approval request {request_id!r} was already {req.state.value} by {req.decided_by} at {req.decided_at}")
            else:
                self._requests[request_id] = req = replace(req, state=state, decided_by=by, decided_at=now, reason=reason)
                waiters = self._waiters.pop(request_id, [])
                late = False
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut, req.approved)
            except RuntimeError:  # that loop has closed: nobody waits any more
                pass
        self._publish(ApprovalDecided(req.fingerprint, req.episode, now, request_id, req.action.value, req.approved, req.decided_by))
        if late:
            raise ValueError(f"approval request {request_id!r} expired at {req.expires_at} before it was decided")
        return req

    # -- reading -----------------------------------------------------------------------------
    def get(self, request_id: str) -> ApprovalRequest:
        self.expire_due()
        with self._lock:
            req = self._requests.get(request_id)
        if req is None:
            raise KeyError(f"approval request {request_id!r} is unknown (or too old to be kept)")
        return req

    def pending(self) -> list[ApprovalRequest]:
        self.expire_due()
        with self._lock:
            return [r for r in self._requests.values() if r.state is ApprovalState.PENDING]

    def requests(self, limit: int | None = None) -> list[ApprovalRequest]:
        """Every kept request, newest first."""
        with self._lock:
            out = list(reversed(self._requests.values()))
        return out if limit is None else out[:limit]

    # -- waiting -----------------------------------------------------------------------------
    def waiting(self) -> int:
        """How many ``wait()`` calls are waiting for a decision now."""
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    async def wait(self, request_id: str) -> bool:
        """True once approved; False when denied or not decided by ``expires_at`` (then EXPIRED,
        decided by "timeout"). The wait lasts the request's time left on ``clock``, in seconds."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            req = self._requests.get(request_id)
            if req is None:
                raise KeyError(f"approval request {request_id!r} is unknown (or too old to be kept)")
            if req.state is not ApprovalState.PENDING:
                return req.approved
            self._waiters.setdefault(request_id, []).append((loop, fut))
        try:
            left = max(0.0, req.expires_at - self.clock())
            done, _ = await asyncio.wait({fut}, timeout=left)
            if done:
                return fut.result()
            try:
                self._decide(request_id, ApprovalState.EXPIRED, TIMEOUT_DECIDER, "not decided in time")
            except ValueError:  # decided at the last moment
                pass
            return self.get(request_id).approved
        finally:
            with self._lock:
                waiting = self._waiters.get(request_id)
                if waiting is not None:
                    waiting[:] = [w for w in waiting if w[1] is not fut]
                    if not waiting:
                        del self._waiters[request_id]

    # -- internals ---------------------------------------------------------------------------
    def _trim(self) -> None:
        decided = [k for k, r in self._requests.items() if r.state is not ApprovalState.PENDING]
        for key in decided[: max(0, len(decided) - self.keep)]:
            del self._requests[key]

    def _publish(self, event: MonitorEvent) -> None:
        if self.events is not None:
            self.events.publish((event,))


def _resolve(fut: asyncio.Future[bool], approved: bool) -> None:
    if not fut.done():
        fut.set_result(approved)


__all__ = ["TIMEOUT_DECIDER", "ApprovalBook", "ApprovalRequest", "ApprovalState"]
