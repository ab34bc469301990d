"""The outbox on a real PostgreSQL (a fleet: replicas share one database): the same schema and
migration, deduplication across replicas, and two dispatchers that deliver each notification once.

PostgreSQL is Debian's ``postgresql`` package, started by the fixture on 127.0.0.1 with a
temporary cluster (as the ``postgres`` user when the tests run as root: the server refuses root);
missing in CI is a failure, elsewhere a skip."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.notify.config import NotificationsConfig
from aphrodite_sla.notify.local_receivers import HttpSink
from aphrodite_sla.notify.model import NotificationStatus
from aphrodite_sla.notify.notifier import build_notifier, facts_of
from aphrodite_sla.notify.outbox import SCHEMA_VERSION, Outbox, create_engine, ensure_schema
from tests.tools import free_port, incident_change, wait_for


def _postgres_binary(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else shutil.which(name)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    initdb, server = _postgres_binary("initdb"), _postgres_binary("postgres")
    if initdb is None or server is None:
        message = "PostgreSQL not found (Debian/Ubuntu: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; it is required when CI is set")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="notify-pg-"))
    socket_dir = root / "run"
    socket_dir.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        for path in (root, socket_dir):
            shutil.chown(path, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", str(root / "cluster"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([*run_as, server, "-D", str(root / "cluster"), "-p", str(port), "-h", "127.0.0.1", "-k", str(socket_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    engine = sa.create_engine(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            with engine.connect():
                break
        except sa.exc.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"PostgreSQL did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)
    engine.dispose()
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(pg_url)
    with engine.begin() as conn:  # each test starts from no notification tables
        for table in ("notification_attempts", "notification_outbox", "notification_schema_version"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    yield engine
    engine.dispose()


def test_schema_and_dedup_on_postgres(pg_engine):
    assert ensure_schema(pg_engine) == ensure_schema(pg_engine) == SCHEMA_VERSION
    replicas = [Outbox(pg_engine) for _ in range(4)]
    change = facts_of(incident_change("INC-PG", "opened"))
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda o=o: results.append(o.enqueue(change, ["slack", "pagerduty"]))) for o in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for r in results for k in r) == ["fp-INC-PG|opened|L0|pagerduty", "fp-INC-PG|opened|L0|slack"]
    assert len(replicas[0].notifications()) == 2


def test_two_replicas_dispatch_each_notification_once(pg_engine):
    sink = HttpSink("slack").start()
    section = {"slack": {"webhook_url": "${PG_SLACK}", "timeout_seconds": 2},
               "outbox": {"poll_interval_seconds": 0.02, "initial_backoff_seconds": 0.1, "max_backoff_seconds": 0.2}}
    replicas = []
    for _ in range(2):
        stream = EventStream()
        notifier = build_notifier(NotificationsConfig.from_mapping(section), stream, pg_engine, env={"PG_SLACK": sink.url})
        notifier.start()
        replicas.append((stream, notifier))
    try:
        n = 30
        changes = [incident_change(f"INC-{i}", "opened", severity="high", occurred_at=1_800_000_000.0 + i) for i in range(n)]
        for stream, _ in replicas:  # every replica sees every change (one incident list, one fingerprint)
            stream.publish(changes)
        wait_for(lambda: len(sink.bodies()) >= n, timeout=30, what="every notification")
        for _, notifier in replicas:
            assert notifier.wait_delivered(10)
        time.sleep(0.3)  # nothing more arrives
        received = Counter(b["text"].split("(")[1].split(")")[0] for b in sink.bodies())
        assert len(received) == n and set(received.values()) == {1}, received
        rows = replicas[0][1].outbox.notifications(receiver="slack")
        assert len(rows) == n and all(r.status is NotificationStatus.DELIVERED and r.attempts == 1 for r in rows)
    finally:
        for _, notifier in replicas:
            notifier.stop()
        sink.stop()
