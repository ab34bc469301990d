"""The incident store under SIGKILL (SQLite) and on a real PostgreSQL shared by replicas.

PostgreSQL is Debian's ``postgresql`` package, started here on 127.0.0.1 with a temporary data
directory (as the ``postgres`` user when the tests run as root); missing in CI is a failure."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aphrodite_sla.incidents.manager import IncidentManager, Signal
from aphrodite_sla.incidents.model import IncidentSeverity, IncidentStatus, IncidentType
from aphrodite_sla.incidents.schema import SCHEMA_VERSION
from aphrodite_sla.incidents.store import IncidentStore, Retention
from tests.tools import free_port

T0 = 1_700_000_000.0

WRITER = textwrap.dedent("""
    import sys, time
    from aphrodite_sla.incidents.manager import IncidentManager, Signal
    from aphrodite_sla.incidents.model import IncidentSeverity, IncidentType
    from aphrodite_sla.incidents.store import IncidentStore
    store = IncidentStore.at_path(sys.argv[1], replica="killed")
    mgr = IncidentManager(store, clock=time.time, correlation_window_s=0, group_window_s=0)  # every signal its own incident
    n = 0
    while True:
        inc, what = mgr.signal(Signal(f"fp-{n}", f"incident {n}", IncidentSeverity.HIGH, IncidentType.ERROR_BURST, time.time()))
        mgr.note(inc.incident_id, by="writer", kind="note", message="a timeline entry")
        print(inc.incident_id, flush=True)  # reported as created only after the commit returned
        n += 1
""")


def test_sigkill_while_writing_loses_no_reported_incident(tmp_path):
    db = tmp_path / "incidents.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    reported: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(reported) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        reported.append(line.strip())
    proc.send_signal(signal.SIGKILL)  # in the middle of its next write
    proc.wait(10)
    assert len(reported) >= 40, "the writer did not report enough incidents"
    assert len(set(reported)) == len(reported)
    store = IncidentStore.at_path(db)
    for incident_id in reported:
        inc = store.get(incident_id)
        assert inc is not None, f"{incident_id} was reported as created and is gone"
        assert [t.kind for t in inc.timeline][:2] == ["detected", "stage"]
    assert store.page(limit=1).total >= len(reported)


# -- PostgreSQL --------------------------------------------------------------------------------------
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url():
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        reason = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    as_root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix="aphrodite-sla-pg-"))
    data, sock = work / "data", work / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if as_root:  # postgres refuses to run as root: run it as the unprivileged postgres user
        shutil.chown(work, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(work, 0o700)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True)
    port = free_port()
    proc = subprocess.Popen([*prefix, postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sock)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"PostgreSQL did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGINT)  # fast shutdown
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(work, ignore_errors=True)


def test_postgres_same_schema_and_migrations(postgres_url):
    store = IncidentStore(postgres_url, replica="r1")
    assert store.dialect == "postgresql" and store.schema_version == SCHEMA_VERSION
    again = IncidentStore(postgres_url, replica="r2")  # a second replica: already migrated
    assert again.schema_version == SCHEMA_VERSION
    store.close()
    again.close()


def test_postgres_replicas_share_one_incident_per_fingerprint(postgres_url):
    stores = [IncidentStore(postgres_url, replica=f"replica-{n}") for n in range(4)]
    managers = [IncidentManager(s, clock=time.time) for s in stores]
    fp = f"fleet-{time.time_ns()}"
    results: list[tuple[str, str]] = []
    barrier = threading.Barrier(len(managers))

    def detect(mgr: IncidentManager) -> None:
        barrier.wait()  # every replica detects the same problem at the same moment
        inc, what = mgr.signal(Signal(fp, "ttft p95 violated", IncidentSeverity.CRITICAL, IncidentType.PERFORMANCE_DEGRADATION, time.time()))
        results.append((inc.incident_id, what))

    threads = [threading.Thread(target=detect, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({incident_id for incident_id, _ in results}) == 1
    assert sorted(what for _, what in results) == ["joined", "joined", "joined", "opened"]
    inc = stores[0].get(results[0][0])
    assert inc is not None and inc.event_count == 4 and inc.replica.startswith("replica-")
    page = stores[1].page(status=[IncidentStatus.DETECTED.value])
    assert inc.incident_id in [i.incident_id for i in page.items]
    managers[2].resolve(inc.incident_id, "oncall")
    assert stores[3].get(inc.incident_id).status is IncidentStatus.RESOLVED
    stores[0].save_postmortem(inc.incident_id, "# pm", time.time())
    assert stores[1].postmortem(inc.incident_id) == "# pm"
    assert stores[0].purge(Retention(), time.time())["incidents"] == 0
    for s in stores:
        s.close()
