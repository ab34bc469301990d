"""Shared receiver fixtures for the notification tests: the local Slack / PagerDuty / webhook
sinks and SMTP server (aphrodite_sla.notify.local_receivers), a real Alertmanager, and a helper
that builds ``IncidentChanged`` events the way the incident manager publishes them."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aphrodite_sla.notify.local_receivers import HttpSink, LocalReceivers, SmtpSink
from tests.tools import start_alertmanager, stop_process


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
