"""Cost of a circuit breaker's decision on the engine's hot path (``python benchmarks/bench_breaker.py``).

Measures, per call, with the breaker on ``time.monotonic`` as in production:
  * ``allow()`` in CLOSED (the lock-free read every inference request pays)
  * ``allow()`` in OPEN before its timeout (the deny path: lock, clock read, rejected count)
  * ``allow()`` in FORCED_OPEN (deny, no clock arithmetic)
  * ``allow()`` + ``on_success(d)`` in CLOSED, count window and time window (a whole request's cost)
  * ``call(fn)`` in CLOSED (the sync helper: allow, two clock reads, report)
against an empty Python method call measured round-robin in the same run (and pybreaker's
``CircuitBreaker.call`` when pybreaker is importable; it is not a dependency).
Target (issue): a decision (``allow()``) <= 2 us. Times include the ``for`` loop that drives the
calls (the same loop for every variant, baseline included).
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the checkout beside this script, as bench_anomaly does

from _common import fmt_ns, header, interleaved_medians, verdict

from aphrodite_sla.recovery.breaker import CircuitBreaker
from aphrodite_sla.recovery.breaker_model import BreakerConfig

TARGET_NS = 2_000.0
N = 20_000  # calls per timed loop
ROUNDS = 31


class _Empty:
    def noop(self) -> bool:
        return True


def _noop() -> None:
    return None


def main() -> None:
    header("bench_breaker: cost of a circuit breaker's allow/deny decision and of reporting an outcome")
    cfg = dict(failure_threshold=5, success_threshold=3, open_timeout_s=1e9, window_size=100, minimum_calls=50)
    closed = CircuitBreaker(BreakerConfig("closed", **cfg))
    closed_time = CircuitBreaker(BreakerConfig("closed_time", **{**cfg, "window_kind": "time", "window_size": 60}))
    opened = CircuitBreaker(BreakerConfig("open", **cfg))
    for _ in range(5):
        opened.on_failure(0.01)
    assert opened.state.value == "open"
    forced = CircuitBreaker(BreakerConfig("forced", **cfg))
    forced.force_open("bench")
    empty = _Empty()
    calls = range(N)

    def loop_empty() -> None:
        f = empty.noop
        for _ in calls:
            f()

    def loop_allow(b: CircuitBreaker):
        def loop() -> None:
            f = b.allow
            for _ in calls:
                f()
        return loop

    def loop_allow_success(b: CircuitBreaker):
        def loop() -> None:
            allow = b.allow
            ok = b.on_success
            for _ in calls:
                if allow():
                    ok(0.25)
        return loop

    def loop_call() -> None:
        c = closed.call
        for _ in calls:
            c(_noop)

    loops = {
        "empty method call": (loop_empty, N),
        "allow() closed": (loop_allow(closed), N),
        "allow() open, deny": (loop_allow(opened), N),
        "allow() forced_open, deny": (loop_allow(forced), N),
        "allow()+on_success() count window": (loop_allow_success(closed), N),
        "allow()+on_success() time window": (loop_allow_success(closed_time), N),
        "call(fn) closed": (loop_call, N),
    }
    try:
        import pybreaker  # not a dependency: compared only where it happens to be installed
    except ImportError:
        pybreaker = None
    if pybreaker is not None:
        pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)

        def loop_pybreaker() -> None:
            c = pb.call
            for _ in calls:
                c(_noop)

        loops["pybreaker call(fn) closed"] = (loop_pybreaker, N)

    med = interleaved_medians(loops, rounds=ROUNDS)
    base = med["empty method call"]
    print(f"baseline  empty method call            {fmt_ns(base):>10} per call")
    for name, ns in med.items():
        if name == "empty method call":
            continue
        target = ""
        if name.startswith("allow() "):
            target = f"  target <= {fmt_ns(TARGET_NS)}: {verdict(ns <= TARGET_NS)}"
        print(f"  {name:<36} {fmt_ns(ns):>10}   ratio vs empty call {ns / base:6.2f}x{target}")
    if pybreaker is None:
        print("  (pybreaker not importable here: no comparison with it)")
    else:
        print(f"  call(fn) vs pybreaker call(fn): {med['call(fn) closed'] / med['pybreaker call(fn) closed']:.2f}x")
    rejected = opened.status().rejected_total
    print(f"  (open breaker rejected {rejected} calls; its state stayed {opened.state.value})")


if __name__ == "__main__":
    main()
