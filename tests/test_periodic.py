"""PeriodicThread: the one start/stop loop shared by the evaluator, stall detector and sampler."""
import threading

from aphrodite_sla.periodic import PeriodicThread


def test_ticks_survive_errors_and_stop_cleanly():
    ticks = []
    third = threading.Event()

    def tick():
        ticks.append(1)
        if len(ticks) == 1:
            raise RuntimeError("one bad tick")
        if len(ticks) >= 3:
            third.set()

    worker = PeriodicThread("test-periodic", tick, 0.005)
    worker.start()
    worker.start()
    assert [t.name for t in threading.enumerate()].count("test-periodic") == 1
    assert third.wait(5)
    assert worker.errors == 1
    assert worker.stop(5) and not worker.is_running and worker.stop()
    assert "test-periodic" not in [t.name for t in threading.enumerate()]


def test_setup_runs_first_and_run_first_false_waits_an_interval():
    order = []
    ran = threading.Event()
    worker = PeriodicThread("test-periodic-2", lambda: (order.append("tick"), ran.set()), 0.05,
                            run_first=False, setup=lambda: order.append("setup"))
    worker.start()
    assert ran.wait(5)
    worker.stop(5)
    assert order[:2] == ["setup", "tick"]


def test_stop_before_first_interval_never_ticks():
    ticks = []
    worker = PeriodicThread("test-periodic-3", lambda: ticks.append(1), 60.0, run_first=False)
    worker.start()
    assert worker.stop(5)
    assert ticks == []
