"""The seam everything attaches to: readers only read the published snapshot (no race, no kernel on
the caller's thread), one violation pipeline (stalls included), one event stream that isolates
subscribers, one context per monitor, and the monitor's own failures exported as counters."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aphrodite_sla import ManualClock, SLAManager, SLAThreshold, Statistic
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import (
    AnomalyDetected,
    MonitorEvent,
    SnapshotPublished,
    StallCleared,
    StallDetected,
    ViolationRaised,
    ViolationResolved,
)
from aphrodite_sla.export.collector import SLACollector
from aphrodite_sla.export.endpoints import SLAEndpoints
from aphrodite_sla.integrations.asgi import HTTP_LATENCY_MS, SLAMiddleware
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder
from aphrodite_sla.integrations.statlogger_core import recorder_for
from aphrodite_sla.self_metrics import Component
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.store import kernels

T0 = 1_700_000_000.0


def p95_sla(**kw):
    base = dict(metric_name="lat_p95", target_value=100.0, tolerance_percent=20.0, measurement_window_minutes=1,
                statistic=Statistic.P95, source_metric="lat", sample_rate_hz=1000.0, min_samples=5)
    base.update(kw)
    return SLAThreshold(**base)


def families(collector) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


# -- readers ---------------------------------------------------------------------------------------
def test_window_statistic_is_exact_while_another_thread_evaluates():
    """Finding 1: window_statistic shared the evaluator's scratch without its lock; reading p95
    while another thread looped evaluate() returned wrong values (25 of 400 in one run)."""
    clock = ManualClock(T0 + 60)
    mgr = SLAManager([p95_sla(), p95_sla(metric_name="lat_p50", statistic=Statistic.P50)], clock=clock,
                     anomaly_detection=False, regression_interval_s=math.inf)
    mgr.watch_quantiles("lat", (0.5, 0.95, 0.99), 60)
    rng = np.random.default_rng(1)
    values = rng.lognormal(4, 0.8, 50_000)
    mgr.record_batch("lat", values, T0 + np.linspace(0.001, 60, values.size))
    expected = {q: float(np.quantile(values, q)) for q in (0.5, 0.95, 0.99)}
    stop = threading.Event()

    def evaluate_forever() -> None:
        while not stop.is_set():
            mgr._evaluate(None)  # the background tick's path

    worker = threading.Thread(target=evaluate_forever)
    worker.start()
    try:
        wrong = []
        for i in range(400):
            q = (0.5, 0.95, 0.99)[i % 3]
            value, n = mgr.window_statistic("lat", {0.5: "p50", 0.95: "p95", 0.99: "p99"}[q], 60)
            if value != expected[q] or n != values.size:
                wrong.append((q, value, n))
    finally:
        stop.set()
        worker.join(30)
    assert wrong == []
    assert mgr.evaluator_stats.evaluations > 10  # the evaluator really ran meanwhile


def test_scrape_and_endpoints_run_no_kernel_on_the_calling_thread(monkeypatch):
    """Finding 2: a scrape and /metrics/summary computed the goodput window with a numba kernel on
    the caller's thread (the engine's event loop inside the engine's app)."""
    ctx = MonitorContext.build(clock=ManualClock(T0))
    ctx.manager.record_batch("goodput_requests", np.ones(30), T0 - 15 + np.arange(30) * 0.5)
    ctx.manager.evaluate(T0)
    calls: list[str] = []
    for name in ("evaluate_windows", "window_quantiles", "window_moments", "window_bounds"):
        original = getattr(kernels, name)

        def spy(*args, _original=original, _name=name):
            calls.append(f"{_name} on {threading.current_thread().name}")
            return _original(*args)

        monkeypatch.setattr(kernels, name, spy)
    main = threading.current_thread().name
    fams = families(SLACollector(ctx.snapshot, model_name="m"))
    assert fams["sla_goodput_requests_per_second"].samples[0].value == pytest.approx(30 / 60)
    ctx.endpoints.summary()
    ctx.endpoints.health()
    assert [c for c in calls if c.endswith(main)] == []


def test_importing_and_reading_never_loads_numba():
    """Readers of a snapshot never need the kernels: in a fresh process, building the collector and
    endpoints and scraping them does not even import numba."""
    script = textwrap.dedent("""
        import sys
        from prometheus_client import CollectorRegistry, generate_latest
        from aphrodite_sla.context import MonitorContext
        from aphrodite_sla.export.collector import SLACollector
        ctx = MonitorContext.build()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SLACollector(ctx.snapshot))
        generate_latest(registry)
        ctx.endpoints.health(); ctx.endpoints.summary()
        print("numba" in sys.modules, "scipy" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# -- one pipeline ------------------------------------------------------------------------------------
def test_a_stall_is_a_violation_on_the_one_stream_and_in_the_snapshot():
    """Finding 3: the stall detector built its own violations and callbacks; active_violations()
    left stalls out and /health/production merged them by hand."""
    clock = ManualClock(T0)
    ctx = MonitorContext.build(clock=clock)
    mgr, stall = ctx.manager, ctx.stall
    seen: list[MonitorEvent] = []
    mgr.register_violation_callback(seen.append)
    resolved: list[tuple[str, float]] = []
    mgr.register_resolution_callback(lambda name, at: resolved.append((name, at)))
    kinds: list[type] = []
    mgr.subscribe(lambda e: kinds.append(type(e)), StallDetected, StallCleared)
    stall.on_record(clock(), 3, 0)
    clock.advance(31)
    stall.check()
    assert [v.metric_name for v in seen] == ["engine_stalled"]
    assert [v.metric_name for v in mgr.active_violations()] == ["engine_stalled"]
    assert mgr.snapshot().engine_stalled
    status, payload = ctx.endpoints.health()
    assert status == 503 and payload["active_violations"] == 1 and payload["violations"][0]["sla"] == "engine_stalled"
    assert not payload["serving"]
    stall.on_record(clock(), 3, 5)
    stall.check()
    assert resolved == [("engine_stalled", clock())] and kinds == [StallDetected, StallCleared]
    assert mgr.active_violations() == []
    mgr.evaluate()  # an evaluation keeps the stall detector's part of the snapshot
    assert mgr.snapshot().stall is not None and not mgr.snapshot().engine_stalled


# -- the event stream ------------------------------------------------------------------------------
def test_a_raising_or_slow_subscriber_stops_neither_evaluation_nor_others():
    clock = ManualClock(T0)
    mgr = SLAManager([p95_sla()], clock=clock, anomaly_detection=False, regression_interval_s=math.inf,
                     page_rules=PageRulesConfig(enabled=False))  # one violation, the sustained rule's
    release = threading.Event()
    good: list[ViolationRaised] = []

    def raising(event: MonitorEvent) -> None:
        raise RuntimeError("pager down")

    def slow(event: MonitorEvent) -> None:
        release.wait(30)

    mgr.subscribe(raising, ViolationRaised, name="raising")
    slow_sub = mgr.events.subscribe(slow, name="slow", queue_size=2)
    mgr.subscribe(good.append, ViolationRaised, name="good")
    started = time.monotonic()
    for _ in range(40):  # each _evaluate publishes an event to "slow": its queue of 2 overflows
        clock.advance(5)
        mgr.record_batch("lat", np.full(50, 500.0))
        mgr._evaluate(None)
    assert time.monotonic() - started < 20  # evaluation never waited for the slow subscriber
    assert mgr.events.drain(5) is False  # the slow one still holds an event
    assert mgr.evaluator_stats.evaluations == 40
    for sub in mgr.events.subscriptions:
        if sub.name == "good":
            assert sub.wait_idle(time.monotonic() + 10)
    assert len(good) == 1
    assert slow_sub.dropped > 0 and mgr.events.dropped() == {"slow": slow_sub.dropped}
    release.set()
    assert mgr.events.drain(10)
    assert mgr.self_metrics.errors_of(Component.SUBSCRIBER) == 1
    snap = mgr._evaluate(None)
    assert snap.health.dropped_events["slow"] == slow_sub.dropped


def test_subscriptions_match_by_class_and_deliver_in_order():
    stream = EventStream()
    got: list[MonitorEvent] = []
    stream.subscribe(got.append, ViolationRaised)
    v = p95_sla()  # any payload
    events = [StallDetected("f", "e1", 1.0, None, None), ViolationResolved("f", "e1", 2.0, None, 1.0),  # type: ignore[arg-type]
              ViolationRaised("g", "e2", 3.0, v)]  # type: ignore[arg-type]
    stream.publish(events)
    assert stream.drain(5)
    assert got == [events[0], events[2]]  # a StallDetected is a ViolationRaised; resolutions are not


def test_subscribe_rejects_what_is_not_an_event_class():
    stream = EventStream()
    with pytest.raises(TypeError):
        stream.subscribe(print, str)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        stream.subscribe("not callable")  # type: ignore[arg-type]


# -- one context -------------------------------------------------------------------------------------
async def test_two_contexts_share_no_server_state():
    """Finding 4: process-wide globals in asgi.py (manager, admission, engine handle, in-flight)
    meant two monitors in one process shared state."""
    a, b = MonitorContext.build(clock=ManualClock(T0)), MonitorContext.build(clock=ManualClock(T0))

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    mw = SLAMiddleware(app, context=a)
    b.server.admission.close(reason="b only")
    await mw({"type": "http", "path": "/v1/completions", "method": "POST", "headers": []}, receive, send)
    assert a.manager.store.buffer(HTTP_LATENCY_MS).count == 1
    assert b.manager.store.buffer(HTTP_LATENCY_MS).count == 0
    assert a.server.middleware_installed and not b.server.middleware_installed
    assert a.server.admission.stats().rejected == 0


def test_recorder_lookup_needs_no_runtime_global():
    mgr = SLAManager(clock=ManualClock(T0))
    first = recorder_for(mgr)
    assert recorder_for(mgr) is first is EngineStatsRecorder.for_manager(mgr)
    assert recorder_for(type("Monitor", (), {"sla_manager": mgr})()) is first
    ctx = MonitorContext.build(clock=ManualClock(T0))
    assert recorder_for(ctx) is ctx.recorder and recorder_for(ctx.manager) is ctx.recorder
    with pytest.raises(TypeError, match="production_monitor"):
        recorder_for(object())


# -- publication order ---------------------------------------------------------------------------------
def test_multiprocess_mirror_publishes_the_evaluation_just_run(tmp_path):
    """Finding 6: the mirror ran as a pre-evaluation hook, so the engine's /metrics showed the
    previous evaluation."""
    script = textwrap.dedent("""
        import numpy as np
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
        from aphrodite_sla.clock import ManualClock
        from aphrodite_sla.config import SLAConfig
        from aphrodite_sla.runtime import SLARuntime

        clock = ManualClock(1_700_000_000.0)
        rt = SLARuntime(SLAConfig(system_sampler=False), clock=clock)
        rt._register_collector()
        clock.advance(1.0)
        rt.manager.record_batch("ttft_ms", np.full(20, 9000.0))
        rt.manager.evaluate()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry).decode()
        print([l for l in text.splitlines() if l.startswith("sla_evaluations_total{")][0])
    """)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(" 1.0"), proc.stdout


# -- the monitor's own health ------------------------------------------------------------------------
def test_monitor_failures_are_exported_as_counters():
    """Finding 7: evaluator, hook, subscriber and recorder failures were counted privately or not
    at all; now each is ``sla_monitor_errors_total{component}``, and evaluation durations a histogram."""
    clock = ManualClock(T0)
    ctx = MonitorContext.build(clock=clock)
    mgr = ctx.manager
    mgr.register_violation_callback(lambda v: 1 / 0)
    mgr.register_pre_evaluation_hook(lambda: {}["missing"])

    class BadStats:
        @property
        def num_generation_tokens(self):
            raise RuntimeError("unreadable")

    ctx.recorder.record(object(), BadStats())
    for _ in range(60):
        clock.advance(5)
        mgr.record_batch("ttft_ms", np.full(20, 9000.0))
        mgr.evaluate()
    fams = families(SLACollector(mgr.snapshot, model_name="m", self_metrics=mgr.self_metrics))
    errors = {s.labels["component"]: s.value for s in fams["sla_monitor_errors"].samples}
    assert errors["subscriber"] >= 1 and errors["pre_evaluation_hook"] == 60 and errors["recorder"] == 1
    hist = fams["sla_evaluation_duration_seconds"]
    count = [s.value for s in hist.samples if s.name.endswith("_count")]
    assert count == [60.0]
    assert fams["sla_evaluator_running"].samples[0].value == 0.0
    summary = ctx.endpoints.summary()
    assert summary["evaluator"]["errors"]["pre_evaluation_hook"] == 60


def test_label_names_say_what_they_label():
    """Finding 8: ``metric`` meant the SLA in two families and the series in two others."""
    clock = ManualClock(T0)
    ctx = MonitorContext.build(clock=clock)
    mgr = ctx.manager
    mgr.record_measurement("ttft_ms", -5.0)  # a dropped sample
    for _ in range(80):
        clock.advance(5)
        mgr.record_batch("ttft_ms", np.full(20, 9000.0))
        mgr.evaluate()
    fams = families(SLACollector(mgr.snapshot))
    assert {tuple(sorted(s.labels)) for s in fams["sla_violations"].samples} == {("model_name", "severity", "sla")}
    assert {tuple(sorted(s.labels)) for s in fams["sla_threshold_breaches"].samples} == {("model_name", "sla")}
    assert {tuple(sorted(s.labels)) for s in fams["sla_window_quantile"].samples} == {("model_name", "q", "series")}
    assert {tuple(sorted(s.labels)) for s in fams["sla_dropped_samples"].samples} == {("model_name", "reason", "series")}
    assert any(s.labels["series"] == "ttft_ms" for s in fams["sla_window_quantile"].samples)


def test_endpoints_reject_a_manager_where_a_snapshot_source_belongs():
    with pytest.raises(TypeError, match="snapshot source"):
        SLAEndpoints(object())  # type: ignore[arg-type]


def test_anomaly_and_snapshot_events_reach_subscribers():
    clock = ManualClock(T0)
    mgr = SLAManager([p95_sla()], clock=clock, regression_interval_s=math.inf)
    got: list[type] = []
    mgr.subscribe(lambda e: got.append(type(e)), AnomalyDetected, SnapshotPublished)
    rng = np.random.default_rng(0)
    for i in range(300):
        clock.advance(5)
        level = 60.0 if i < 250 else 95.0
        mgr.record_batch("lat", level + rng.normal(0, 1, 50))
        mgr.evaluate()
    assert got.count(SnapshotPublished) == 300 and AnomalyDetected in got
