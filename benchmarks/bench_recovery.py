"""Recovery initiation latency: a ``ViolationRaised`` published on a real ``EventStream`` until the
engine's ``RecoveryStarted`` reaches a subscriber of the same stream (wall time).

That path is: the stream's delivery thread hands the violation to the engine's subscription, which
schedules the run onto the recovery loop thread; the loop selects the procedure, admits the run
(cooldowns, concurrency) and publishes ``RecoveryStarted``; a second delivery thread hands it on.
Baseline, in the same run on the same events: a bare subscriber's delivery latency for the
``ViolationRaised`` itself (one stream hop, nothing else).

Two loads: sequential (one violation at a time, each waited for: the latency of one incident) and
a burst (every violation published at once: what a correlated outage looks like). Each violation
has its own SLA and cooldowns are 0, so every one starts a run; actions return at once and verify.
Targets: the seed allows 10 s; the issue's target is <= 1 s (p99).
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import fmt_ns, header, verdict

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import RecoveryStarted, ViolationRaised
from aphrodite_sla.recovery.engine import RecoveryEngine
from aphrodite_sla.recovery.model import Applied, Precheck, RecoveryAction, RecoveryProcedure
from aphrodite_sla.recovery.verification import Verification
from aphrodite_sla.sla.threshold import Direction, SLAViolation, Statistic, ViolationSeverity

N = 200
SEED_ALLOWANCE_NS = 10e9
TARGET_NS = 1e9


class InstantHandler:
    action = RecoveryAction.CACHE_INVALIDATION
    requires_approval = False

    def precheck(self, target, violation):
        return Precheck.go()

    async def apply(self, target, violation):
        return Applied("done")


class AlwaysVerified:
    def verify(self, violation, settle_s):
        return Verification(True, "ok")


def violation(i: int, now: float) -> SLAViolation:
    return SLAViolation(f"sla_{i}", f"series_{i}", Statistic.P95, Direction.UPPER, 400.0, 250.0, 200.0, ViolationSeverity.MAJOR,
                        300.0, now, now, 1.0, 10, 100)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]  # nearest rank


def run(burst: bool) -> tuple[list[float], list[float]]:
    stream = EventStream()
    engine = RecoveryEngine(
        {RecoveryAction.CACHE_INVALIDATION: InstantHandler()}, None, verifier=AlwaysVerified(), events=stream,
        # one procedure per SLA: distinct incidents (one procedure runs once at a time, for all the SLAs it answers)
        procedures=[RecoveryProcedure(f"bench{i}", "bench", "", (RecoveryAction.CACHE_INVALIDATION,), settle_seconds=0.0, cooldown_seconds=0.0,
                                      slas=(f"sla_{i}",)) for i in range(-1, N)],
        global_cooldown_s=0.0, max_concurrent=N + 1, history_size=N,
    )
    published: dict[str, int] = {}
    bare: dict[str, int] = {}
    started: dict[str, int] = {}
    lock = threading.Lock()
    done = threading.Event()

    def on_raised(event: ViolationRaised) -> None:
        bare[event.violation.metric_name] = time.perf_counter_ns()

    def on_started(event: RecoveryStarted) -> None:
        t = time.perf_counter_ns()
        with lock:
            started[event.sla] = t
            if len(started) == N or not burst:
                done.set()

    stream.subscribe(on_raised, ViolationRaised, name="bare")
    stream.subscribe(on_started, RecoveryStarted, name="started")
    engine.attach(stream)
    try:
        # warm-up: threads, loop and code paths
        warm = violation(-1, time.time())
        stream.publish([ViolationRaised("warm", "warm-1", time.time(), warm)])
        done.wait(10.0)
        done.clear()
        with lock:
            started.clear()
        bare.clear()
        for i in range(N):
            v = violation(i, time.time())
            published[v.metric_name] = time.perf_counter_ns()
            stream.publish([ViolationRaised(f"fp{i}", f"fp{i}-1", time.time(), v)])
            if not burst:
                if not done.wait(10.0):
                    raise RuntimeError(f"no RecoveryStarted for violation {i} within 10 s")
                done.clear()
        if burst and not done.wait(60.0):
            raise RuntimeError(f"only {len(started)} of {N} recoveries started within 60 s")
        stream.drain(10.0)
    finally:
        engine.stop()
    names = sorted(published)
    return sorted(started[n] - published[n] for n in names), sorted(bare[n] - published[n] for n in names)


def report(title: str, recovery: list[float], baseline: list[float]) -> None:
    med, p99 = statistics.median(recovery), percentile(recovery, 0.99)
    bmed, bp99 = statistics.median(baseline), percentile(baseline, 0.99)
    print(f"-- {title}: {len(recovery)} violations")
    print(f"   ViolationRaised -> RecoveryStarted : median {fmt_ns(med)}, p99 {fmt_ns(p99)}, max {fmt_ns(recovery[-1])}")
    print(f"   baseline, bare subscriber delivery : median {fmt_ns(bmed)}, p99 {fmt_ns(bp99)}, max {fmt_ns(baseline[-1])}")
    print(f"   ratio to baseline                  : median {med / bmed:.1f}x, p99 {p99 / bp99:.1f}x")
    print(f"   seed allowance 10 s (p99)          : {verdict(p99 <= SEED_ALLOWANCE_NS)} ({SEED_ALLOWANCE_NS / p99:,.0f}x headroom)")
    print(f"   issue target <= 1 s (p99)          : {verdict(p99 <= TARGET_NS)}")


def main() -> None:
    header("recovery initiation latency (wall time, real EventStream and RecoveryEngine threads)")
    report("sequential (one incident at a time)", *run(burst=False))
    report(f"burst ({N} violations published at once)", *run(burst=True))


if __name__ == "__main__":
    main()
