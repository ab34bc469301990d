"""ApprovalBook: request, approve/deny with who and when, deny on timeout, errors, thread-safety,
events. Time is a ManualClock; real timeouts are short and only bound the waits."""
from __future__ import annotations

import asyncio
import threading

import pytest

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import ApprovalDecided, ApprovalRequested
from aphrodite_sla.recovery.approvals import TIMEOUT_DECIDER, ApprovalBook, ApprovalState
from aphrodite_sla.recovery.model import RecoveryAction

T0 = 1_700_000_000.0
RESTART = RecoveryAction.SERVICE_RESTART


def book(timeout_s: float = 300.0, **kw) -> tuple[ApprovalBook, ManualClock]:
    clock = ManualClock(T0)
    return ApprovalBook(clock, timeout_s=timeout_s, **kw), clock


def test_a_request_is_pending_until_approved_and_records_who_and_when():
    b, clock = book()
    req = b.request("rec-1", RESTART, "restart for latency")
    assert (req.state, req.requested_at, req.expires_at, req.execution_id) == (ApprovalState.PENDING, T0, T0 + 300.0, "rec-1")
    assert b.pending() == [req]
    clock.advance(12.0)
    done = b.approve(req.request_id, "alice")
    assert (done.state, done.decided_by, done.decided_at, done.approved) == (ApprovalState.APPROVED, "alice", T0 + 12.0, True)
    assert b.pending() == [] and b.get(req.request_id) == done
    assert done.to_dict()["action"] == "service_restart" and done.to_dict()["state"] == "approved"


def test_deny_records_the_reason():
    b, _ = book()
    req = b.request("rec-1", RESTART)
    denied = b.deny(req.request_id, "bob", "peak traffic")
    assert (denied.state, denied.decided_by, denied.reason, denied.approved) == (ApprovalState.DENIED, "bob", "peak traffic", False)


def test_unknown_ids_raise_key_error_and_deciding_twice_raises_value_error():
    b, _ = book()
    with pytest.raises(KeyError):
        b.approve("apr-nope", "alice")
    with pytest.raises(KeyError):
        b.get("apr-nope")
    req = b.request("rec-1", RESTART)
    b.approve(req.request_id, "alice")
    with pytest.raises(ValueError, match="already approved by alice"):
        b.deny(req.request_id, "bob")
    with pytest.raises(ValueError, match="by"):
        b.approve(b.request("rec-2", RESTART).request_id, "  ")


def test_a_request_past_its_expiry_is_expired_by_timeout_and_cannot_be_approved():
    b, clock = book(timeout_s=60.0)
    req = b.request("rec-1", RESTART)
    clock.advance(61.0)
    with pytest.raises(ValueError, match="expired"):
        b.approve(req.request_id, "alice")
    got = b.get(req.request_id)
    assert (got.state, got.decided_by, got.decided_at) == (ApprovalState.EXPIRED, TIMEOUT_DECIDER, T0 + 60.0)
    assert b.pending() == []


async def test_wait_returns_true_when_another_thread_approves():
    b, _ = book()
    req = b.request("rec-1", RESTART)
    waiting = asyncio.create_task(b.wait(req.request_id))
    await asyncio.sleep(0)
    threading.Thread(target=b.approve, args=(req.request_id, "alice")).start()
    assert await asyncio.wait_for(waiting, 5.0) is True


async def test_wait_returns_false_on_deny_and_on_timeout():
    b, _ = book()
    req = b.request("rec-1", RESTART)
    waiting = asyncio.create_task(b.wait(req.request_id))
    await asyncio.sleep(0)
    b.deny(req.request_id, "bob")
    assert await waiting is False

    quick, _ = book(timeout_s=0.02)
    req = quick.request("rec-2", RESTART)
    assert await quick.wait(req.request_id) is False
    assert (quick.get(req.request_id).state, quick.get(req.request_id).decided_by) == (ApprovalState.EXPIRED, "timeout")


async def test_wait_on_a_decided_request_answers_at_once():
    b, _ = book()
    req = b.request("rec-1", RESTART)
    b.approve(req.request_id, "alice")
    assert await b.wait(req.request_id) is True
    with pytest.raises(KeyError):
        await b.wait("apr-nope")


def test_requests_and_decisions_are_published_with_the_episode():
    stream = EventStream()
    seen: list = []
    stream.subscribe(seen.append, ApprovalRequested, ApprovalDecided)
    b = ApprovalBook(ManualClock(T0), stream, timeout_s=30.0)
    req = b.request("rec-1", RESTART, fingerprint="fp", episode="fp-1")
    b.deny(req.request_id, "bob")
    assert stream.drain()
    asked, decided = seen
    assert (asked.request_id, asked.execution_id, asked.action, asked.expires_at, asked.episode) == (
        req.request_id, "rec-1", "service_restart", T0 + 30.0, "fp-1")
    assert (decided.approved, decided.decided_by, decided.fingerprint) == (False, "bob", "fp")


def test_decided_requests_are_bounded_but_pending_ones_are_kept():
    b, _ = book(keep=3)
    first = b.request("rec-0", RESTART)
    for i in range(10):
        b.deny(b.request(f"rec-{i + 1}", RESTART).request_id, "bob")
    b.request("rec-last", RESTART)
    kept = b.requests()
    assert first.request_id in [r.request_id for r in kept] and len(kept) <= 5
    assert [r.execution_id for r in b.pending()] == ["rec-0", "rec-last"]


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout_s"):
        ApprovalBook(ManualClock(T0), timeout_s=0)
