"""Shared receiver fixtures for the notification tests: the local Slack / PagerDuty / webhook
sinks and SMTP server (aphrodite_sla.notify.local_receivers), a real Alertmanager, and a helper
that builds ``IncidentChanged`` events the way the incident manager publishes them."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aphrodite_sla.events import IncidentChanged
from aphrodite_sla.notify.local_receivers import HttpSink, LocalReceivers, SmtpSink
from tests.tools import start_alertmanager, stop_process


def incident_change(incident_id: str = "INC-1", change: str = "opened", *, severity: str = "critical", level: int = 0,
                    receivers: tuple[str, ...] = (), occurred_at: float | None = None, **extra) -> IncidentChanged:
    now = time.time() if occurred_at is None else occurred_at
    return IncidentChanged(
        fingerprint=f"fp-{incident_id}", episode=incident_id, occurred_at=now, incident_id=incident_id, change=change,
        title=f"TTFT p95 above SLA ({incident_id})", severity=severity,
        status="resolved" if change == "resolved" else "detected", incident_type="performance_degradation",
        summary="p95 time to first token 2.3x its SLA", started_at=now - 60, labels={"model_name": "demo-model", "sla": "ttft_p95"},
        annotations={"runbook": "https://runbooks.local/ttft"}, escalation_level=level, receivers=receivers, **extra,
    )


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def local_receivers() -> Iterator[LocalReceivers]:
    sinks = LocalReceivers.start()
    yield sinks
    sinks.stop()


@pytest.fixture
def slack_sink() -> Iterator[HttpSink]:
    sink = HttpSink("slack").start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    proc, url, _log = start_alertmanager(tmp_path)
    yield url
    stop_process(proc)
