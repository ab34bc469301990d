"""Durability across processes: a receiver down for a while and a process restart in between
still deliver every notification once per dedup key; SIGKILL during enqueue loses nothing that
was reported as enqueued. Real subprocesses on one SQLite file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from aphrodite_sla.notify.local_receivers import HttpSink
from aphrodite_sla.notify.model import NotificationStatus
from aphrodite_sla.notify.outbox import Outbox, create_engine
from tests.tools import wait_for

ROOT = Path(__file__).resolve().parents[1]


def _child(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.notify_child", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> list[str]:
    lines: list[str] = []
    import threading
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith(marker):
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"no {marker!r} within {timeout} s: {''.join(lines)}"
    assert any(line.startswith(marker) for line in lines), "".join(lines)
    return lines


def test_receiver_down_and_a_restart_in_between_deliver_every_notification_once(tmp_path):
    db = tmp_path / "incidents.db"
    sink = HttpSink("slack")  # its port is fixed; it is not listening yet: the receiver is down
    n = 25
    first = _child("publish", str(db), sink.url, str(n))
    try:
        _read_until(first, "enqueued")
        outbox = Outbox(create_engine(f"sqlite:///{db}"))
        wait_for(lambda: all(r.attempts >= 1 for r in outbox.notifications(receiver="slack")), what="failed attempts while the receiver is down")
        assert all(r.status is NotificationStatus.PENDING for r in outbox.notifications(receiver="slack"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    sink.start()
    try:
        # the restarted process re-publishes every change (as the incident manager does at start-up)
        second = _child("publish", str(db), sink.url, str(n), "--until-delivered")
        lines = _read_until(second, "delivered")
        assert second.wait(60) == 0, "".join(lines)
        received = Counter(body["text"].split("(")[1].split(")")[0] for body in sink.bodies())
        assert sorted(received) == sorted(f"INC-{i}" for i in range(n))
        assert set(received.values()) == {1}, received
        rows = Outbox(create_engine(f"sqlite:///{db}")).notifications(receiver="slack")
        assert len(rows) == n and all(r.status is NotificationStatus.DELIVERED for r in rows)
    finally:
        sink.stop()


def test_sigkill_during_enqueue_loses_nothing_reported_as_enqueued(tmp_path):
    db = tmp_path / "incidents.db"
    proc = _child("enqueue", str(db), "http://127.0.0.1:9/unused", "100000")
    reported: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("fp-"):
                reported.append(line.strip())
            if len(reported) >= 150:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert len(reported) >= 150
    with create_engine(f"sqlite:///{db}").connect() as conn:
        stored = set(conn.execute(sa.text("SELECT dedup_key FROM notification_outbox")).scalars())
    missing = [k for k in reported if k not in stored]
    assert not missing, f"{len(missing)} reported as enqueued but lost: {missing[:5]}"
