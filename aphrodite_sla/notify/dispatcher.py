"""The dispatcher: one thread that leases due outbox rows and hands them to a small worker pool.

Why a pool with one row in flight per receiver: a receiver that hangs until its timeout holds
one worker, never the others, and rows of one receiver go out in order. Failures are retried
with exponential back-off and jitter (half the delay fixed, half random, so replicas and
receivers coming back do not see a thundering herd) until ``max_attempts``; a permanent refusal
(HTTP 400, SMTP 5xx) is given up at once. Alertmanager receivers also get their firing alerts
re-sent every ``resend_interval_seconds``.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from aphrodite_sla.notify.alertmanager_receiver import AlertmanagerReceiver
from aphrodite_sla.notify.config import OutboxConfig
from aphrodite_sla.notify.model import DeliveryError, Notification
from aphrodite_sla.notify.outbox import Outbox
from aphrodite_sla.notify.receiver import Receiver
from aphrodite_sla.notify.stats import NotificationStats, ReceiverStats

logger = logging.getLogger(__name__)
STATS_EVERY_S = 1.0


def backoff_s(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before attempt ``attempt + 1`` (``attempt`` >= 1 failed so far): "equal jitter"."""
    delay = min(max_s, initial_s * 2.0 ** min(attempt - 1, 40))
    return delay / 2 + rng.uniform(0.0, delay / 2)


class Dispatcher:
    def __init__(self, outbox: Outbox, receivers: Mapping[str, Receiver], config: OutboxConfig, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.outbox = outbox
        self.receivers = dict(receivers)
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._failed_attempts: Counter[str] = Counter()
        self._resends: Counter[str] = Counter()
        self._last_resend: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stats = NotificationStats()
        self._stats_at = 0.0
        self.dropped: Counter[str] = Counter()  # filled by the notifier, published with the stats

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="aphrodite-sla-notify")
        self._thread = threading.Thread(target=self._run, name="aphrodite-sla-notify-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop leasing rows and wait up to ``timeout`` for sends in flight (their timeouts bound
        them); an unfinished row's lease runs out and the next dispatcher retries it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def wake(self) -> None:
        """New rows: look now instead of at the next poll."""
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.cycle()
                failures = 0
            except Exception as exc:  # the database may be unavailable: log once, then back off
                failures += 1
                if failures == 1:
                    logger.exception("aphrodite-sla: notification dispatch cycle failed")
                else:
                    logger.debug("aphrodite-sla: notification dispatch cycle failed again: %s", exc)
            wait = self.config.poll_interval_s if not failures else min(30.0, self.config.poll_interval_s * 2.0 ** failures)
            self._wake.wait(wait)
            self._wake.clear()

    def cycle(self) -> int:
        """Lease what is due and submit it; re-send firing alerts that are due. Returns the rows submitted."""
        pool = self._pool
        if pool is None:
            return 0
        with self._lock:
            busy = [name for name, n in self._in_flight.items() if n > 0]
            free = self.config.workers - sum(self._in_flight.values())
        submitted = 0
        if free > 0:
            for n in self.outbox.claim_due(free, exclude_receivers=busy):
                with self._lock:
                    self._in_flight[n.receiver] += 1
                pool.submit(self._deliver, n)
                submitted += 1
        self._resend_firing(pool)
        if self.clock() - self._stats_at >= STATS_EVERY_S:
            self.refresh_stats()
        return submitted

    def _deliver(self, n: Notification) -> None:
        started = self.clock()
        try:
            receiver = self.receivers.get(n.receiver)
            if receiver is None:
                raise DeliveryError(f"receiver {n.receiver!r} is not configured in this process")
            if isinstance(receiver, AlertmanagerReceiver):
                last = self.outbox.last_delivered(n.receiver, n.facts.fingerprint)
                receiver.send_after(n.facts, last.facts if last is not None else None)
            else:
                receiver.send(n.facts)
        except Exception as exc:
            retryable = not isinstance(exc, DeliveryError) or exc.retryable
            error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            attempt = n.attempts + 1
            give_up = not retryable or attempt >= self.config.max_attempts
            retry_at = None if give_up else self.clock() + backoff_s(attempt, self.config.initial_backoff_s, self.config.max_backoff_s, self.rng)
            with self._lock:
                self._failed_attempts[n.receiver] += 1
            log = logger.error if give_up else logger.warning
            log("aphrodite-sla: notification %s to %s failed (attempt %d%s): %s", n.dedup_key, n.receiver, attempt,
                ", giving up" if give_up else "", error)
            self._settle(lambda: self.outbox.mark_failed(n, started, error, retry_at))
        else:
            self._settle(lambda: self.outbox.mark_delivered(n, started))
        finally:
            with self._lock:
                self._in_flight[n.receiver] -= 1
            self._wake.set()

    def _settle(self, write: Callable[[], None]) -> None:
        # A failed write leaves the row leased: it is retried after the lease (at-least-once).
        try:
            write()
        except Exception:
            logger.exception("aphrodite-sla: recording a notification attempt failed")

    def _resend_firing(self, pool: ThreadPoolExecutor) -> None:
        now = self.clock()
        for name, receiver in self.receivers.items():
            if not isinstance(receiver, AlertmanagerReceiver):
                continue
            last = self._last_resend.setdefault(name, now)
            if now - last < receiver.resend_interval_s:
                continue
            self._last_resend[name] = now
            pool.submit(self._resend, receiver)

    def _resend(self, receiver: AlertmanagerReceiver) -> None:
        try:
            firing = [n.facts for n in self.outbox.firing(receiver.name)]
            if firing:
                receiver.post(firing)
                with self._lock:
                    self._resends[receiver.name] += 1
        except Exception as exc:  # the next interval tries again
            with self._lock:
                self._failed_attempts[receiver.name] += 1
            logger.warning("aphrodite-sla: re-sending firing alerts to %s failed: %s", receiver.name, exc)

    # -- statistics -----------------------------------------------------------------------------
    def refresh_stats(self) -> NotificationStats:
        counts = self.outbox.counts().by_receiver
        with self._lock:
            names = set(counts) | set(self.receivers)
            stats = NotificationStats(
                {name: ReceiverStats(sent=counts.get(name, {}).get("delivered", 0), failed=counts.get(name, {}).get("failed", 0),
                                     pending=counts.get(name, {}).get("pending", 0), failed_attempts=self._failed_attempts[name],
                                     resends=self._resends[name]) for name in sorted(names)},
                dict(self.dropped),
            )
        self._stats = stats
        self._stats_at = self.clock()
        return stats

    @property
    def stats(self) -> NotificationStats:
        return self._stats
