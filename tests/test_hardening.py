"""Production hardening: wall-clock steps, fork(), half-failed start, stop/start after a timed-out
stop. Each test reproduces a defect found by trying the monitor as an unlucky operator would."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest

from aphrodite_sla import SLAManager, SLAThreshold, Statistic
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.integrations.stall import StallDetector
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.runtime import SLARuntime


@pytest.fixture
def wall_clock(monkeypatch):
    """Steps the wall clock (``time.time``) by ``offset`` seconds, as NTP or ``date -s`` would."""
    real = time.time
    state = {"offset": 0.0}
    monkeypatch.setattr(time, "time", lambda: real() + state["offset"])
    return state


def latency_manager(**kw) -> SLAManager:
    th = SLAThreshold("lat_p95", 100.0, 20.0, 1, statistic=Statistic.P95, source_metric="lat", min_samples=5,
                      sample_rate_hz=100.0, min_evaluation_points=1, violation_threshold_percent=1)
    return SLAManager([th], anomaly_detection=False, regression_interval_s=float("inf"), **kw)


def test_a_backward_wall_clock_step_drops_nothing(wall_clock):
    """A backward step of D seconds dropped every engine sample for D: a latency fault after a
    one-hour step went undetected."""
    mgr = latency_manager()
    for _ in range(20):
        mgr.record_measurement("lat", 50.0, time.time())
    wall_clock["offset"] = -3600.0  # the wall clock jumps back an hour
    for _ in range(50):
        assert mgr.record_measurement("lat", 500.0, time.time())  # wall-clock timestamps, converted by age
        assert mgr.record_batch("lat", [500.0, 500.0]) == 2  # stamped by the monitor's own clock
    assert mgr.store.dropped() == {}
    violations = mgr.evaluate()
    assert [v.metric_name for v in violations] == ["lat_p95"]


def test_a_forward_wall_clock_step_is_not_a_stall(wall_clock):
    """A forward step of >= 30 s with requests running gave a one-tick critical stall."""
    stall = StallDetector(stall_after_s=30.0)
    stall.on_record(None, 8, 10)
    assert stall.check().state.value == "ok"
    wall_clock["offset"] = 3600.0
    stall.on_record(None, 8, 10)
    assert stall.check().state.value == "ok"
    assert stall.status.seconds_without_progress < 5.0


def test_the_runtime_forked_mid_evaluation_leaves_the_child_working():
    """fork() with a short evaluation interval deadlocked 37 of 40 children: a lock held at fork
    time blocked the child's next flush or evaluation, and the child's evaluator was never restarted."""
    rt = SLARuntime(SLAConfig(system_sampler=False, evaluation_interval_s=0.5))
    rt.manager._worker.interval_s = 0.001  # evaluate all the time, so forks land mid-evaluation
    rt.start()
    stop = threading.Event()

    def record() -> None:  # the engine's thread, recording all the time too
        while not stop.is_set():
            rt.recorder.record(None, None)
            rt.manager.record_batch("ttft_ms", np.full(64, 100.0))

    writer = threading.Thread(target=record, daemon=True)
    writer.start()
    ok = 0
    try:
        for _ in range(40):
            pid = os.fork()
            if pid == 0:  # the child: record, flush and evaluate within 20 s, or be killed
                signal.alarm(20)
                try:
                    assert not rt.info.started  # stopped in the child, not a zombie "started"
                    rt.manager.record_batch("ttft_ms", np.full(64, 120.0))
                    rt.recorder.record(None, None)
                    rt.recorder.flush()
                    rt.manager.evaluate()
                    rt.start()  # the child may start its own runtime again
                    rt.stop()
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            ok += os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(10)
        rt.stop()
    assert ok == 40


def test_a_start_that_fails_leaves_nothing_running():
    """With the exporter's port taken, start() raised after starting the evaluator, stall timer and
    sampler, left ``started`` False, and each retry added another sampler; stop() stopped nothing."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    before = {t.name for t in threading.enumerate()}
    rt = SLARuntime(SLAConfig(exporter_port=port, system_sampler=True))
    try:
        for _ in range(3):  # one retry per data-parallel engine
            with pytest.raises(OSError):
                rt.start()
            assert not rt.info.started
        leftovers = {t.name for t in threading.enumerate() if t.name.startswith("aphrodite-sla")} - before
        assert leftovers == set()
        busy.close()
        rt.start()  # the port is free now: starts cleanly
        assert rt.info.started and rt.manager.is_monitoring and rt.stall.is_running
    finally:
        rt.stop()
        busy.close()


def test_start_after_a_stop_that_timed_out_runs_again():
    """After a stop() that timed out (a slow tick), start() reported started with no evaluator."""
    release = threading.Event()
    ticks = []

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 1:
            release.wait(10)  # the first tick is slow

    worker = PeriodicThread("aphrodite-sla-test-periodic", tick, 0.01)
    worker.start()
    time.sleep(0.05)
    assert worker.stop(timeout=0.05) is False  # the slow tick outlives the stop
    worker.start()
    assert worker.is_running
    deadline = time.monotonic() + 10
    while len(ticks) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ticks) >= 3  # the new run ticks while the old one is still stuck
    release.set()
    assert worker.stop(timeout=10)


def test_scipy_is_imported_by_the_evaluator_at_start_not_by_the_first_regression_check():
    """The first regression check's ``import scipy.stats`` held the GIL 48-55 ms mid-serving; the
    evaluator imports it while warming up, before its first evaluation."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from aphrodite_sla import SLAManager\n"
        "m = SLAManager([], evaluation_interval_s=60.0)\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "m.start_monitoring()\n"
        "deadline = time.monotonic() + 120\n"
        "while 'scipy.stats' not in sys.modules and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('scipy.stats' in sys.modules)\n"  # no SLA: no regression check could have imported it
        "m.stop_monitoring()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def _fork_while_another_thread_is_inside(block: Any, work: Any, child: Any) -> int:
    """Fork while another thread is inside ``block()`` (doing ``work()``, then 0.5 s more); the
    child returns ``child(done)`` as its exit status (``done``: the thread had left the block when
    the copy was taken), or 2 if it raised; killed after 20 s. Returns the child's wait status."""
    inside, done = threading.Event(), threading.Event()

    def inside_block() -> None:
        with block():
            inside.set()
            work()
            time.sleep(0.5)
            done.set()

    t = threading.Thread(target=inside_block)
    t.start()
    inside.wait(5)
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        try:
            os._exit(child(done.is_set()))
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    t.join()
    return status


def test_a_fork_waits_for_the_evaluators_imports_to_finish():
    """A fork while the evaluator thread imported numba (its warm-up, right after start) left the
    child a half-done import whose lock it could never take: its first evaluation hung."""
    from aphrodite_sla.forking import imports_in_progress

    status = _fork_while_another_thread_is_inside(imports_in_progress, lambda: None, lambda done: 0 if done else 1)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_fork_waits_for_database_calls_and_the_child_opens_its_own_connections(tmp_path):
    """A fork while another thread was inside SQLite (a query of the incident store or the
    outbox) copied SQLite's mutexes as held: the child's next query hung for ever (2 of 200
    children of a runtime with incidents on)."""
    from aphrodite_sla.forking import fork_waits
    from aphrodite_sla.incidents.store import IncidentStore

    store = IncidentStore.at_path(tmp_path / "incidents.db")
    store.open_incidents()  # the parent has a pooled connection

    def child(done: bool) -> int:
        store.open_incidents()  # the child's own connection works
        with fork_waits():  # calls are not held back in the child
            pass
        return 0 if done else 1  # the copy was taken after the call finished

    status = _fork_while_another_thread_is_inside(fork_waits, store.open_incidents, child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with fork_waits():  # nor in the parent once the fork is made
        assert store.open_incidents() == []
    store.close()
