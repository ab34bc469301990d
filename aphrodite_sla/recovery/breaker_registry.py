"""The process's circuit breakers by name, and their state changes as events on the stream.

Why a registry: the middleware consults ``model_inference``, recovery actions force it open, the
REST API resets them and the exporter reads every status; they all find the same breaker here.
Why events: incidents and notifications subscribe to ``BreakerStateChanged`` on the monitor's one
stream instead of being wired into the breakers.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import BREAKER_ALERT, BreakerStateChanged, episode_id, fingerprint
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.recovery.breaker import CircuitBreaker
from aphrodite_sla.recovery.breaker_model import BreakerConfig, BreakerState, BreakerStatus

APHRODITE_ENGINE = "aphrodite_engine"
MODEL_INFERENCE = "model_inference"  # the breaker the ASGI middleware consults
KV_CACHE = "kv_cache"
DEEP_TREE_ECHO = "deep_tree_echo"

# The seed's four: failure threshold / success threshold (= half-open permits) / open timeout.
DEFAULT_BREAKERS: tuple[BreakerConfig, ...] = (
    BreakerConfig(APHRODITE_ENGINE, failure_threshold=5, success_threshold=3, open_timeout_s=60.0),
    BreakerConfig(MODEL_INFERENCE, failure_threshold=3, success_threshold=2, open_timeout_s=30.0),
    BreakerConfig(KV_CACHE, failure_threshold=7, success_threshold=4, open_timeout_s=45.0),
    BreakerConfig(DEEP_TREE_ECHO, failure_threshold=4, success_threshold=3, open_timeout_s=90.0),
)


class _StreamPublisher:
    """Publishes one registry's state changes on one stream. An episode runs from a breaker leaving
    CLOSED to its return there, so every event between shares the episode id (incidents dedupe on it)."""

    def __init__(self, stream: EventStream, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.clock = clock
        self._episodes: dict[str, str] = {}
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        now = self.clock()
        fp = fingerprint(BREAKER_ALERT, service=name)
        with self._lock:
            episode = self._episodes.get(name)
            if episode is None:
                episode = episode_id(fp, now)
            if new is BreakerState.CLOSED:
                self._episodes.pop(name, None)
            else:
                self._episodes[name] = episode
        self.stream.publish([BreakerStateChanged(fingerprint=fp, episode=episode, occurred_at=now, service=name,
                                                 old_state=old.value, new_state=new.value, reason=reason)])


class BreakerRegistry:
    """Breakers by name. Lookups read an immutable snapshot (no lock); adding takes the lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        if not callable(clock):
            raise ValueError("BreakerRegistry.clock: a callable returning seconds is required")
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._publishers: list[_StreamPublisher] = []
        self._lock = threading.Lock()
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def with_defaults(cls, clock: Callable[[], float] = time.monotonic) -> BreakerRegistry:
        """The seed's four breakers (aphrodite_engine, model_inference, kv_cache, deep_tree_echo)."""
        registry = cls(clock)
        for config in DEFAULT_BREAKERS:
            registry.add(config)
        return registry

    def add(self, config: BreakerConfig) -> CircuitBreaker:
        """A new breaker for ``config`` (ValueError if its name is taken)."""
        if not isinstance(config, BreakerConfig):
            raise ValueError(f"BreakerRegistry.add: config must be a BreakerConfig, got {type(config).__name__}")
        with self._lock:
            if config.name in self._breakers:
                raise ValueError(f"BreakerRegistry.add: a breaker named {config.name!r} exists already")
            breaker = CircuitBreaker(config, clock=self._clock)
            for publisher in self._publishers:
                breaker.add_listener(publisher)
            self._breakers = {**self._breakers, config.name: breaker}
        return breaker

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            raise KeyError(f"no circuit breaker named {name!r}; known: {', '.join(sorted(self._breakers)) or 'none'}")
        return breaker

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def names(self) -> list[str]:
        return list(self._breakers)

    def statuses(self) -> dict[str, BreakerStatus]:
        return {name: breaker.status() for name, breaker in self._breakers.items()}

    def reset(self, name: str, reason: str = "reset") -> None:
        self.get(name).reset(reason)

    def reset_all(self, reason: str = "reset all") -> None:
        for breaker in self._breakers.values():
            breaker.reset(reason)

    def force_open(self, name: str, reason: str = "") -> None:
        self.get(name).force_open(reason)

    def publish_to(self, stream: EventStream, clock: Callable[[], float] | None = None) -> None:
        """Publish every state change of every breaker, present and future, on ``stream`` as
        ``BreakerStateChanged`` with ``occurred_at`` from ``clock`` (default: the registry's)."""
        if not isinstance(stream, EventStream):
            raise ValueError(f"BreakerRegistry.publish_to: stream must be an EventStream, got {type(stream).__name__}")
        publisher = _StreamPublisher(stream, clock if clock is not None else self._clock)
        with self._lock:
            self._publishers.append(publisher)
            for breaker in self._breakers.values():
                breaker.add_listener(publisher)


__all__ = ["APHRODITE_ENGINE", "DEEP_TREE_ECHO", "DEFAULT_BREAKERS", "KV_CACHE", "MODEL_INFERENCE", "BreakerRegistry"]
