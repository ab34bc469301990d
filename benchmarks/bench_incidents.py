"""What incidents cost (``python benchmarks/bench_incidents.py``).

  * ``record_engine_event`` — what a request outcome costs the recorder's flush (a lock and a
    deque append), against an empty Python method call timed round-robin in the same run;
  * one evaluation of 7 SLAs with the incident system subscribed, against the same evaluation
    with no incident system (both synchronous, the subscribers drained): the extra work is on the
    subscriber's thread, never on the engine's loop, but it is work the machine does every tick;
  * the latency of a committed change in the SQLite store (WAL, ``synchronous=FULL``): opening an
    incident, and a timeline note on it.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np
from _common import T0, fill_full, fmt_ns, header, interleaved_medians, median_ns

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.incidents.manager import IncidentManager, Signal
from aphrodite_sla.incidents.model import IncidentSeverity, IncidentType
from aphrodite_sla.incidents.store import IncidentStore

N = 20_000


class _Empty:
    def noop(self, kind: str) -> bool:
        return True


def _context(tmp: str, incidents: bool) -> tuple[MonitorContext, ManualClock]:
    clock = ManualClock(T0)
    cfg = SLAConfig(sla_set="seed", incident_response={"store_path": os.path.join(tmp, "bench.db")})
    ctx = MonitorContext.build(cfg, clock=clock, with_recovery=False)
    fill_full(ctx.manager, clock, np.random.default_rng(0))
    if incidents:
        ctx.attach_incidents().start()
    return ctx, clock


def main() -> None:
    header("bench_incidents: the cost of incidents to the recorder, to an evaluation, and of a committed change")
    with tempfile.TemporaryDirectory() as tmp:
        with_ctx, with_clock = _context(tmp, True)
        system = with_ctx.incidents
        assert system is not None
        empty = _Empty()
        calls = range(N)

        def loop_empty() -> None:
            f = empty.noop
            for _ in calls:
                f("request_error")

        def loop_event() -> None:
            f = system.record_engine_event
            for _ in calls:
                f("request_error", T0)

        m = interleaved_medians({"empty": (loop_empty, N), "event": (loop_event, N)}, rounds=21)
        print(f"record_engine_event      {fmt_ns(m['event']):>10} per call   empty call {fmt_ns(m['empty']):>10}   "
              f"ratio {m['event'] / m['empty']:.1f}x")

        without_ctx, without_clock = _context(tmp, False)

        def evaluate(ctx: MonitorContext, clock: ManualClock) -> None:
            clock.advance(5.0)
            ctx.manager.evaluate()
            ctx.events.drain()

        base = median_ns(lambda: evaluate(without_ctx, without_clock), repeats=31)
        with_inc = median_ns(lambda: evaluate(with_ctx, with_clock), repeats=31)
        print(f"evaluation (7 SLAs)      {fmt_ns(with_inc):>10} with incidents   {fmt_ns(base):>10} without   "
              f"ratio {with_inc / base:.2f}x (subscriber thread, drained)")

        store = IncidentStore.at_path(os.path.join(tmp, "writes.db"))
        mgr = IncidentManager(store, clock=time.time)
        counter = iter(range(10**9))
        opened: list[str] = []

        def open_one() -> None:
            inc, _ = mgr.signal(Signal(f"fp-{next(counter)}", "bench", IncidentSeverity.HIGH, IncidentType.ERROR_BURST, time.time(),
                                       correlation_id=""))
            opened.append(inc.incident_id)

        mgr.correlation_window_s = 0.0  # every signal opens its own incident
        open_ns = median_ns(open_one, repeats=41)
        note_ns = median_ns(lambda: mgr.note(opened[0], by="bench", kind="note", message="x"), repeats=41)
        print(f"open an incident         {fmt_ns(open_ns):>10} committed (SQLite WAL, synchronous=FULL)")
        print(f"timeline note            {fmt_ns(note_ns):>10} committed")
        store.close()
        system.close()


if __name__ == "__main__":
    main()
