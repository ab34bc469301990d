"""Shared test helpers: Prometheus's own binaries, and the simulator and a real Prometheus run as
subprocesses (the end-to-end and calibration tests)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aphrodite_sla.events import IncidentChanged


def require_tool(name: str) -> str:
    """The path of ``name`` (``prometheus``, ``promtool``). Missing: a failure when CI is set (CI
    must test against the real thing), a skip naming the install command otherwise."""
    path = shutil.which(name)
    if path is None:
        reason = f"`{name}` not found on PATH (Debian/Ubuntu: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM the process's own session (it and its children, nothing else), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_simulator(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60.0) -> tuple[subprocess.Popen, str, list[str]]:
    """`aphrodite-sla simulate ARGS --port 0` in its own session, its output drained by a thread
    into the returned list; returns once it printed its exporter's URL (``http://127.0.0.1:P``,
    without ``/metrics``). The caller stops it (``stop_process``)."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "aphrodite_sla.cli", "simulate", *args, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )
    output: list[str] = []
    box: dict[str, str] = {}
    got = threading.Event()

    def drain() -> None:
        for line in sim.stdout:  # type: ignore[union-attr]
            output.append(line)
            m = re.match(r"exporter: (http://127\.0\.0\.1:\d+)/metrics", line)
            if m:
                box["url"] = m.group(1)
                got.set()

    threading.Thread(target=drain, daemon=True).start()
    if not got.wait(timeout_s):
        stop_process(sim)
        pytest.fail(f"the simulator did not start its exporter within {timeout_s:.0f} s:\n" + "".join(output))
    return sim, box["url"], output


def start_prometheus(work: Path, config: str, diagnostics: Callable[[], str] = lambda: "") -> tuple[subprocess.Popen, str, Path]:
    """A real ``prometheus`` on 127.0.0.1 with ``config`` (its YAML) and storage under ``work``;
    returns (process, URL, log path) once it answers ``/-/ready``, or fails the test with
    ``diagnostics()`` and the log's tail."""
    prometheus = require_tool("prometheus")
    (work / "prometheus.yml").write_text(config)
    port = free_port()
    return _start_until_ready("prometheus", [
        prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h", "--log.level=info"], work, port, diagnostics)


def _start_until_ready(name: str, argv: list[str], work: Path, port: int,
                       diagnostics: Callable[[], str] = lambda: "") -> tuple[subprocess.Popen, str, Path]:
    """Start ``argv`` (logging to ``work/<name>.log``) and wait up to 30 s for ``/-/ready`` on
    ``port``; a process that exits or never answers fails the test with the log's tail."""
    log = work / f"{name}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}:\n{diagnostics()}\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url, log
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail(f"{name} not ready within 30 s:\n{diagnostics()}\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def start_alertmanager(work: Path) -> tuple[subprocess.Popen, str, Path]:
    """A real Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1 with a null receiver
    and clustering off; returns (process, URL, log path) once ``/-/ready`` answers. Missing binary:
    a failure when CI is set, a skip naming the package otherwise."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        reason = "`prometheus-alertmanager` not found on PATH (Debian/Ubuntu: apt-get install prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    (work / "alertmanager.yml").write_text(
        "route:\n  receiver: 'null'\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n")
    port = free_port()
    return _start_until_ready("alertmanager", [
        binary, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=info"], work, port)


def incident_change(incident_id: str = "INC-1", change: str = "opened", *, severity: str = "critical", level: int = 0,
                    receivers: tuple[str, ...] = (), occurred_at: float | None = None, **extra) -> IncidentChanged:
    """An ``IncidentChanged`` as the incident manager publishes it (the notification tests' input)."""
    now = time.time() if occurred_at is None else occurred_at
    return IncidentChanged(
        fingerprint=f"fp-{incident_id}", episode=incident_id, occurred_at=now, incident_id=incident_id, change=change,
        title=f"TTFT p95 above SLA ({incident_id})", severity=severity,
        status="resolved" if change == "resolved" else "detected", incident_type="performance_degradation",
        summary="p95 time to first token 2.3x its SLA", started_at=now - 60, labels={"model_name": "demo-model", "sla": "ttft_p95"},
        annotations={"runbook": "https://runbooks.local/ttft"}, escalation_level=level, receivers=receivers, **extra,
    )


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned); fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def record_gpu_throttling(ctx: Any, clock: Any, *, seed: int, fingerprint: str, episode: str,
                          violation: Callable[[float], Any]) -> None:
    """Eight minutes of steady traffic into ``ctx``'s manager with the GPU throttling at 400 s (ITL
    15 ms instead of 10), evaluated every 5 s; the ITL violation is raised 30 s into the fault and
    the stream drained. What the RCA tests analyse (RCA names ``gpu_throttling``)."""
    import numpy as np

    from aphrodite_sla.events import ViolationRaised

    m = ctx.manager
    for name in ("gpu_throttled", "system_cpu_percent", "process_cpu_percent"):
        m.register_metric(name, 600.0, 1.0)
    rng = np.random.default_rng(seed)
    t0 = clock()
    fault_at, raised = t0 + 400.0, False
    while clock() - t0 < 480.0:
        clock.advance(0.5)
        now = clock()
        slow = now >= fault_at
        m.record_measurement("itl_ms", (15.0 if slow else 10.0) + rng.normal(0, 0.3))
        m.record_measurement("num_running_reqs", 40.0 + rng.normal(0, 2))
        m.record_measurement("kv_cache_usage_percent", 35.0 + rng.normal(0, 1))
        m.record_measurement("gpu_throttled", 1.0 if slow else 0.0)
        m.record_measurement("system_cpu_percent", 20.0 + rng.normal(0, 1))
        m.record_measurement("process_cpu_percent", 12.0)
        if int(now * 2) % 10 == 0:  # every 5 s
            m.evaluate(now)
        if not raised and now >= fault_at + 30.0:
            raised = True
            m.events.publish([ViolationRaised(fingerprint, episode, now, violation(now))])
    assert m.events.drain(10.0)
