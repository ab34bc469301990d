"""A separate process for the restart and SIGKILL tests: ``python -m tests.notify_child MODE DB
SLACK_URL COUNT``.

``publish``: publish COUNT incident changes on an event stream (as the incident manager does,
again after a restart), print ``enqueued N`` once every one is in the outbox, then keep the
dispatcher delivering until killed, or (``--until-delivered``) exit once nothing is pending.
``enqueue``: call the notifier's enqueue in a loop and print each returned dedup key (flushed):
what it printed was reported as enqueued.
"""
from __future__ import annotations

import sys
import time

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.notify.config import NotificationsConfig
from aphrodite_sla.notify.notifier import build_notifier
from tests.tools import incident_change

T0 = 1_800_000_000.0


def main() -> int:
    mode, db, slack_url, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = NotificationsConfig.from_mapping({
        "slack": {"webhook_url": "${CHILD_SLACK_URL}", "timeout_seconds": 1},
        "outbox": {"initial_backoff_seconds": 0.1, "max_backoff_seconds": 0.5, "poll_interval_seconds": 0.05, "max_attempts": 1000},
    })
    events = EventStream()
    notifier = build_notifier(config, events, f"sqlite:///{db}", env={"CHILD_SLACK_URL": slack_url})
    if mode == "publish":
        notifier.start()
        events.publish([incident_change(f"INC-{i}", "opened", severity="high", occurred_at=T0 + i) for i in range(count)])
        events.drain(60)
        print(f"enqueued {count}", flush=True)
        if "--until-delivered" in sys.argv:
            ok = notifier.wait_delivered(60)
            notifier.stop()
            print("delivered" if ok else "NOT delivered", flush=True)
            return 0 if ok else 1
        while True:
            time.sleep(1)
    if mode == "enqueue":
        for i in range(count):
            for key in notifier.on_event(incident_change(f"INC-{i}", "opened", severity="high", occurred_at=T0 + i)):
                print(key, flush=True)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
