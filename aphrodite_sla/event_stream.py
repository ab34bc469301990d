"""One event stream: typed events in, one bounded queue and one delivery thread per subscriber.

Why a queue per subscriber: a subscriber that raises or is slow (a webhook that hangs, an RCA that
takes seconds) must never delay evaluation or starve another subscriber. ``publish`` only appends
to queues and returns; each subscription's daemon thread delivers its events in order. A full
queue drops the new event and counts it (``dropped``); a subscriber that raises is counted
(``errors``, and ``SelfMetrics`` under ``subscriber``) and keeps receiving. Delivery threads start
on the first event and end after ``idle_exit_s`` without one, so idle streams hold no threads.

``drain(timeout)`` waits until every queued event has been delivered: the synchronous
``SLAManager.evaluate()`` uses it, so tests and tools see their callbacks' effects on return.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aphrodite_sla.events import MonitorEvent
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.self_metrics import Component, SelfMetrics

DEFAULT_QUEUE_SIZE = 1024
IDLE_EXIT_S = 30.0

Handler = Callable[[Any], Any]
_ids = itertools.count(1)


@dataclass(frozen=True)
class SubscriptionStats:
    name: str
    delivered: int
    dropped: int
    errors: int
    queued: int


class Subscription:
    """One subscriber: its event kinds, queue and delivery thread. Created by ``EventStream``."""

    def __init__(self, stream: EventStream, handler: Handler, kinds: tuple[type[MonitorEvent], ...], name: str,
                 queue_size: int) -> None:
        self.stream = stream
        self.handler = handler
        self.kinds = kinds
        self.name = name
        self.queue_size = queue_size
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self._queue: deque[MonitorEvent] = deque()
        self._busy = False  # an event has been taken off the queue and is being delivered
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False

    def accepts(self, event: MonitorEvent) -> bool:
        return isinstance(event, self.kinds)

    def offer(self, event: MonitorEvent) -> bool:
        """Queue ``event`` (never blocks); False if the queue was full and it was dropped."""
        with self._cond:
            if self._closed:
                return False
            if len(self._queue) >= self.queue_size:
                self.dropped += 1
                return False
            self._queue.append(event)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"aphrodite-sla-subscriber-{self.name}", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._busy = False
                    self._cond.notify_all()  # wake drain()
                    if self._closed or (not self._cond.wait(self.stream.idle_exit_s) and not self._queue):
                        if threading.current_thread() is self._thread:
                            self._thread = None
                        return
                event = self._queue.popleft()
                self._busy = True
            try:
                self.handler(event)
                self.delivered += 1
            except Exception as exc:  # a subscriber's failure is its own: count it and go on
                self.errors += 1
                self.stream.self_metrics.error(
                    Component.SUBSCRIBER, f"{self.name} raised {type(exc).__name__}: {exc}", exc_info=True
                )

    def pending(self) -> bool:
        with self._cond:
            return bool(self._queue) or self._busy

    def wait_idle(self, deadline: float) -> bool:
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def stats(self) -> SubscriptionStats:
        with self._cond:
            return SubscriptionStats(self.name, self.delivered, self.dropped, self.errors, len(self._queue))

    def _reset_after_fork(self) -> None:
        # The delivery thread does not exist in a forked child and the lock may be held.
        self._cond = threading.Condition(threading.Lock())
        self._thread = None
        self._busy = False


class EventStream:
    """Typed publish/subscribe with isolation between subscribers (see the module docstring)."""

    def __init__(self, *, self_metrics: SelfMetrics | None = None, queue_size: int = DEFAULT_QUEUE_SIZE,
                 idle_exit_s: float = IDLE_EXIT_S) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"EventStream.queue_size: must be an integer >= 1, got {queue_size!r}")
        self.self_metrics = self_metrics if self_metrics is not None else SelfMetrics()
        self.queue_size = queue_size
        self.idle_exit_s = float(idle_exit_s)
        self._subscriptions: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        reset_in_child(self)

    def subscribe(self, handler: Handler, *kinds: type[MonitorEvent], name: str | None = None,
                  queue_size: int | None = None) -> Subscription:
        """Deliver every published event that is an instance of one of ``kinds`` (default: all) to
        ``handler(event)``, on the subscription's own thread."""
        if not callable(handler):
            raise TypeError(f"EventStream.subscribe: handler must be callable, got {type(handler).__name__}")
        for kind in kinds:
            if not (isinstance(kind, type) and issubclass(kind, MonitorEvent)):
                raise TypeError(f"EventStream.subscribe: {kind!r} is not a MonitorEvent class")
        label = str(name or getattr(handler, "__qualname__", type(handler).__name__))
        with self._lock:
            if any(s.name == label for s in self._subscriptions):
                label = f"{label}#{next(_ids)}"  # names label metrics: keep them distinct
            sub = Subscription(self, handler, kinds or (MonitorEvent,), label, queue_size or self.queue_size)
            self._subscriptions = (*self._subscriptions, sub)
        return sub

    def unsubscribe(self, subscription: Subscription) -> bool:
        with self._lock:
            before = self._subscriptions
            self._subscriptions = tuple(s for s in before if s is not subscription)
            removed = len(self._subscriptions) != len(before)
        subscription.close()
        return removed

    def publish(self, events: Iterable[MonitorEvent]) -> None:
        """Queue each event for every subscriber that wants it; never blocks, never raises."""
        subscriptions = self._subscriptions
        for event in events:
            for sub in subscriptions:
                if sub.accepts(event):
                    sub.offer(event)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event has been delivered; False if ``timeout`` passed first.
        Events a subscriber publishes while delivering (RCA's ``RootCauseFound``, recovery's
        events) count too: passes repeat until one finds every subscriber idle."""
        deadline = time.monotonic() + timeout
        while True:
            subs = self._subscriptions
            if not all(sub.wait_idle(deadline) for sub in subs):
                return False
            if not any(sub.pending() for sub in subs):
                return True

    def close(self) -> None:
        """Drop what is queued and let every delivery thread end (subscriptions are kept)."""
        for sub in self._subscriptions:
            sub.close()

    def stats(self) -> list[SubscriptionStats]:
        return [sub.stats() for sub in self._subscriptions]

    def dropped(self) -> dict[str, int]:
        """Events dropped (queue full) by subscriber name, for subscribers that dropped any."""
        return {s.name: s.dropped for s in self._subscriptions if s.dropped}

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subscriptions

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        for sub in self._subscriptions:
            sub._reset_after_fork()
