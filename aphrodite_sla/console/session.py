"""Sessions, CSRF tokens and the sign-in rate limit.

Why in memory: a session is a signed-in person at one console process; restarting the console
signs everyone out, which is the safe direction. Session ids and CSRF tokens are random
(``secrets``), compared in constant time; a session expires after ``ttl_s``."""
from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

COOKIE_NAME = "aphrodite_sla_console"
MAX_SESSIONS = 1000  # oldest dropped beyond this (bounded memory under abuse)
MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Session:
    session_id: str
    who: str
    csrf: str
    expires_at: float


class SessionBook:
    """Signed-in sessions; thread-safe."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, who: str) -> Session:
        session = Session(secrets.token_urlsafe(32), who, secrets.token_urlsafe(32), self.clock() + self.ttl_s)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
                del self._sessions[oldest.session_id]
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= self.clock():
                del self._sessions[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    @staticmethod
    def csrf_ok(session: Session | None, given: str | None) -> bool:
        return session is not None and bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())


class SignInLimiter:
    """At most ``attempts`` sign-in tries per client address per ``window_s`` (a sliding window)."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float]) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self._tries: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def allow(self, client: str) -> bool:
        now = self.clock()
        with self._lock:
            tries = self._tries.get(client)
            if tries is None:
                if len(self._tries) >= MAX_CLIENTS:
                    self._tries.clear()
                tries = self._tries[client] = deque()
            while tries and tries[0] <= now - self.window_s:
                tries.popleft()
            if len(tries) >= self.attempts:
                self.refused += 1
                return False
            tries.append(now)
            return True

    def retry_after_s(self, client: str) -> float:
        with self._lock:
            tries = self._tries.get(client)
            return max(0.0, tries[0] + self.window_s - self.clock()) if tries else 0.0
