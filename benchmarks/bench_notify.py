"""Cost of notifications (``python benchmarks/bench_notify.py``).

Measures, in one run:
  * the publisher's cost of an ``IncidentChanged`` with the notifier subscribed (the event stream
    only queues it) against calling the notifier's durable enqueue inline (what the publisher
    would pay if enqueue ran on its thread: a SQLite commit with fsync);
  * one durable enqueue (one change, two receivers, one transaction) with ``synchronous=FULL``
    (ours: committed means on disk) against ``synchronous=NORMAL`` (WAL's faster setting, which
    can lose the last commits on power loss), interleaved;
  * delivery throughput through the outbox to a local Slack-shaped HTTP sink against posting the
    same messages directly (the HTTP cost alone): the outbox's overhead per notification.
Target: publishing costs the publisher <= 20 us (nothing durable on its thread).
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _common import fmt_ns, header, verdict

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import IncidentChanged
from aphrodite_sla.notify.config import NotificationsConfig
from aphrodite_sla.notify.local_receivers import HttpSink
from aphrodite_sla.notify.notifier import build_notifier, facts_of
from aphrodite_sla.notify.outbox import Outbox, create_engine
from aphrodite_sla.notify.receiver import post_json
from aphrodite_sla.notify.slack_receiver import slack_message

TARGET_PUBLISH_NS = 20_000.0
_seq = iter(range(10**9))


def change(severity: str = "high") -> IncidentChanged:
    i = next(_seq)
    return IncidentChanged(fingerprint=f"fp-{i}", episode=f"INC-{i}", occurred_at=1.8e9 + i, incident_id=f"INC-{i}", change="opened",
                           title=f"bench incident {i}", severity=severity, status="detected", incident_type="performance_degradation")


def engine_with(path: Path, synchronous: str):
    import sqlalchemy as sa

    engine = create_engine(f"sqlite:///{path}")
    if synchronous != "FULL":
        @sa.event.listens_for(engine, "connect")
        def _relax(dbapi_conn, _record) -> None:  # after ours: the later listener wins
            dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")
    return engine


def main() -> None:
    header("bench_notify: publisher cost, durable enqueue, delivery throughput through the outbox")
    logging.getLogger("aphrodite_sla").setLevel(logging.CRITICAL + 1)  # the log receiver would print every change
    work = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    sink = HttpSink("slack").start()
    env = {"BENCH_SLACK": sink.url}
    section = {"slack": {"webhook_url": "${BENCH_SLACK}"}, "routing": {"high": ["slack"]}, "outbox": {"poll_interval_seconds": 0.01}}

    # 1. the publisher's cost
    events = EventStream(queue_size=100_000)
    notifier = build_notifier(NotificationsConfig.from_mapping(section), events, f"sqlite:///{work / 'publish.db'}", env=env)
    notifier.start()
    batch = [change() for _ in range(2_000)]
    publish_ns = []
    for ev in batch:
        t0 = time.perf_counter_ns()
        events.publish((ev,))
        publish_ns.append(time.perf_counter_ns() - t0)
    inline_ns = []
    for _ in range(200):
        ev = change()
        t0 = time.perf_counter_ns()
        notifier.on_event(ev)
        inline_ns.append(time.perf_counter_ns() - t0)
    events.drain(120)
    notifier.wait_delivered(120)
    notifier.stop()
    pub, inline = statistics.median(publish_ns), statistics.median(inline_ns)
    print(f"publish (notifier subscribed): median {fmt_ns(pub)}, p99 {fmt_ns(sorted(publish_ns)[int(len(publish_ns) * 0.99)])}")
    print(f"enqueue inline (baseline):     median {fmt_ns(inline)}  -> publishing costs {pub / inline:.4f}x of an inline enqueue")
    print(f"target publish <= {fmt_ns(TARGET_PUBLISH_NS)}: {verdict(pub <= TARGET_PUBLISH_NS)}")

    # 2. durable enqueue: FULL against NORMAL, interleaved
    outboxes = {s: Outbox(engine_with(work / f"enqueue-{s}.db", s)) for s in ("FULL", "NORMAL")}
    samples: dict[str, list[float]] = {s: [] for s in outboxes}
    for _ in range(300):
        for s, o in outboxes.items():
            facts = facts_of(change())
            t0 = time.perf_counter_ns()
            o.enqueue(facts, ["slack", "log"])
            samples[s].append(time.perf_counter_ns() - t0)
    full, normal = statistics.median(samples["FULL"]), statistics.median(samples["NORMAL"])
    print(f"durable enqueue, synchronous=FULL (ours): median {fmt_ns(full)}, p99 {fmt_ns(sorted(samples['FULL'])[296])}")
    print(f"enqueue, synchronous=NORMAL (baseline):  median {fmt_ns(normal)}  -> FULL costs {full / normal:.2f}x")

    # 3. delivery throughput: through the outbox against direct posts
    n = 300
    messages = [slack_message(facts_of(change())) for _ in range(n)]
    t0 = time.perf_counter()
    for m in messages:
        post_json(sink.url, m, timeout_s=5, accept=(200,))
    direct_s = time.perf_counter() - t0
    events = EventStream(queue_size=100_000)
    notifier = build_notifier(NotificationsConfig.from_mapping(section), events,
                              f"sqlite:///{work / 'throughput.db'}", env=env)
    notifier.start()
    before = len(sink.bodies())
    t0 = time.perf_counter()
    events.publish([change() for _ in range(n)])
    while len(sink.bodies()) < before + n and time.perf_counter() - t0 < 120:
        time.sleep(0.005)
    outbox_s = time.perf_counter() - t0
    notifier.stop()
    sink.stop()
    print(f"direct posts (baseline): {n / direct_s:,.0f} notifications/s ({fmt_ns(direct_s / n * 1e9)} each)")
    print(f"through the outbox:      {n / outbox_s:,.0f} notifications/s ({fmt_ns(outbox_s / n * 1e9)} each: enqueue, lease, post, settle)"
          f"  -> {outbox_s / direct_s:.2f}x the direct time")


if __name__ == "__main__":
    main()
