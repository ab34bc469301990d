"""The outbox, dispatcher, configuration and metrics without network: schema idempotence,
deduplication, ordering per receiver, back-off with jitter, give-up, validation errors."""
from __future__ import annotations

import random
import threading

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from aphrodite_sla.config import ConfigError
from aphrodite_sla.export.notification_collector import NotificationCollector
from aphrodite_sla.notify.config import NotificationsConfig, OutboxConfig
from aphrodite_sla.notify.dispatcher import Dispatcher, backoff_s
from aphrodite_sla.notify.model import DeliveryError, IncidentFacts, NotificationStatus, dedup_key
from aphrodite_sla.notify.notifier import facts_of
from aphrodite_sla.notify.outbox import SCHEMA_VERSION, Outbox, create_engine, ensure_schema
from aphrodite_sla.notify.receiver import Receiver
from tests.tools import incident_change


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


class Scripted(Receiver):
    """Fails the first ``failures`` sends (retryable unless ``permanent``), then records."""

    def __init__(self, name: str, failures: int = 0, permanent: bool = False) -> None:
        from aphrodite_sla.notify.config import ReceiverConfig
        super().__init__(ReceiverConfig(name, "webhook", ("critical",)))
        self.failures, self.permanent, self.sent = failures, permanent, []

    def send(self, facts: IncidentFacts) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryError("down", retryable=not self.permanent)
        self.sent.append((facts.incident_id, facts.change))


def _facts(incident="INC-1", change="opened", **kw) -> IncidentFacts:
    return facts_of(incident_change(incident, change, occurred_at=2_000.0, **kw))


def test_schema_is_idempotent_and_versioned(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert ensure_schema(engine) == ensure_schema(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        names = set(sa.inspect(engine).get_table_names())
    assert {"notification_outbox", "notification_attempts", "notification_schema_version"} <= names
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE notification_schema_version SET version = 99"))
    with pytest.raises(RuntimeError, match="newer"):
        ensure_schema(engine)


def test_enqueue_deduplicates_by_fingerprint_change_level_and_receiver(tmp_path):
    outbox = Outbox(create_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert len(outbox.enqueue(_facts(), ["slack", "pagerduty", "slack"])) == 2
    assert outbox.enqueue(_facts(), ["slack", "pagerduty"]) == []
    assert len(outbox.enqueue(_facts(level=2), ["slack"])) == 1  # another escalation level
    assert len(outbox.enqueue(_facts(change="resolved"), ["slack"])) == 1
    assert dedup_key(_facts(), "slack") == "fp-INC-1|opened|L0|slack"
    # a reminder repeats at one level: each occurrence is its own key
    r1 = facts_of(incident_change("INC-1", "reminder", occurred_at=3_000.0))
    r2 = facts_of(incident_change("INC-1", "reminder", occurred_at=3_900.0))
    assert len(outbox.enqueue(r1, ["slack"])) == 1 and len(outbox.enqueue(r2, ["slack"])) == 1 and outbox.enqueue(r2, ["slack"]) == []


def test_concurrent_enqueues_of_one_change_insert_one_row(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    outboxes = [Outbox(engine) for _ in range(4)]
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda o=o: results.append(o.enqueue(_facts(), ["slack"]))) for o in outboxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 1


def test_claims_are_leases_and_rows_of_one_incident_go_in_order(tmp_path):
    clock = Clock()
    outbox = Outbox(create_engine(f"sqlite:///{tmp_path / 'x.db'}"), clock=clock, lease_s=30)
    outbox.enqueue(_facts(change="opened"), ["pd"])
    outbox.enqueue(_facts(change="resolved"), ["pd"])
    outbox.enqueue(_facts("INC-2"), ["slack"])
    first = outbox.claim_due(10)
    assert sorted((n.receiver, n.facts.change) for n in first) == [("pd", "opened"), ("slack", "opened")]
    assert outbox.claim_due(10) == []  # leased; and the resolve waits for its trigger
    pd = next(n for n in first if n.receiver == "pd")
    outbox.mark_failed(pd, clock.t, "down", retry_at=clock.t + 5)
    clock.t += 1
    assert outbox.claim_due(10) == []  # the trigger is still pending: the resolve may not overtake it
    clock.t += 40  # the slack row's lease ran out (its dispatcher died): claimable again
    again = outbox.claim_due(10)
    assert sorted(n.receiver for n in again) == ["pd", "slack"] and next(n for n in again if n.receiver == "pd").facts.change == "opened"


def test_backoff_doubles_with_equal_jitter_and_is_capped():
    rng = random.Random(1)
    for attempt, base in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 300.0), (100, 300.0)]:
        delays = [backoff_s(attempt, 2.0, 300.0, rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base / 4  # jittered, not fixed


def _dispatch_until_idle(d: Dispatcher, clock: Clock, outbox: Outbox) -> None:
    """Run the dispatcher's own thread (the only claimer); between sends, jump the clock so every
    back-off is due at once."""
    import time
    d.start()
    try:
        deadline = time.monotonic() + 20
        while outbox.notifications(status=NotificationStatus.PENDING) and time.monotonic() < deadline:
            time.sleep(0.02)
            with d._lock:
                idle = sum(d._in_flight.values()) == 0
            if idle:
                clock.t += 3600
                d.wake()
    finally:
        d.stop()


def test_dispatcher_retries_until_delivered_and_gives_up_on_permanent_refusals(tmp_path):
    clock = Clock()
    outbox = Outbox(create_engine(f"sqlite:///{tmp_path / 'x.db'}"), clock=clock)
    flaky, refusing, exhausted = Scripted("flaky", failures=3), Scripted("refusing", failures=1, permanent=True), Scripted("down", failures=99)
    config = OutboxConfig(max_attempts=5, initial_backoff_s=1, max_backoff_s=10, poll_interval_s=10, workers=2)
    d = Dispatcher(outbox, {r.name: r for r in (flaky, refusing, exhausted)}, config, clock=clock)
    outbox.enqueue(_facts(), ["flaky", "refusing", "down", "unknown"])
    _dispatch_until_idle(d, clock, outbox)
    rows = {n.receiver: n for n in outbox.notifications()}
    assert rows["flaky"].status is NotificationStatus.DELIVERED and rows["flaky"].attempts == 4 and flaky.sent == [("INC-1", "opened")]
    assert rows["refusing"].status is NotificationStatus.FAILED and rows["refusing"].attempts == 1
    assert rows["down"].status is NotificationStatus.FAILED and rows["down"].attempts == 5 and rows["down"].last_error == "down"
    assert rows["unknown"].status is NotificationStatus.FAILED and "not configured" in rows["unknown"].last_error
    assert len(outbox.attempts_of(rows["flaky"].id)) == 4
    stats = d.refresh_stats()
    assert (stats.receivers["flaky"].sent, stats.receivers["flaky"].failed_attempts) == (1, 3)
    assert stats.receivers["down"].failed == 1
    registry = CollectorRegistry()
    registry.register(NotificationCollector(lambda: stats, model_name="m"))
    text = generate_latest(registry).decode()
    assert 'notifications_sent_total{model_name="m",receiver="flaky"} 1.0' in text
    assert 'notifications_failed_total{model_name="m",receiver="down"} 1.0' in text
    assert 'notification_attempts_failed_total{model_name="m",receiver="down"} 5.0' in text
    assert 'notifications_pending{model_name="m",receiver="flaky"} 0.0' in text
    outbox.enqueue(_facts("INC-9"), ["flaky"])  # pending: never purged
    assert outbox.purge(before=clock.t + 1) == 4
    assert [n.facts.incident_id for n in outbox.notifications()] == ["INC-9"] and outbox.attempts_of(rows["flaky"].id) == []


@pytest.mark.parametrize(("section", "message"), [
    ({"slak": {}}, r"notifications\.slak: unknown key"),
    ({"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}}, r"notifications\.slack\.webhook_url: a secret comes from the environment"),
    ({"slack": {}}, r"notifications\.slack\.webhook_url: required"),
    ({"pagerduty": {"routing_key": "${K}", "notify_on_severity": ["urgent"]}}, r"pagerduty\.notify_on_severity: 'urgent'"),
    ({"email": {"smtp_server": "h", "from_address": "a@b", "to_addresses": ["nobody"]}}, r"email\.to_addresses: must be a non-empty list"),
    ({"email": {"smtp_server": "h", "from_address": "a@b", "to_addresses": ["x@y"], "smtp_port": "25"}}, r"email\.smtp_port: must be int"),
    ({"alertmanager": {"url": "localhost:9093"}}, r"alertmanager\.url: must be an http"),
    ({"alertmanager": {"url": "http://a", "resend_interval_seconds": float("nan")}}, r"resend_interval_seconds: must be a finite number"),
    ({"webhook": {"url": "http://a", "timeout_seconds": -1}}, r"webhook\.timeout_seconds"),
    ({"routing": {"critical": ["pagerduty"]}}, r"routing\.critical: 'pagerduty' is not a configured"),
    ({"routing": {"severe": []}}, r"routing\.severe: not a severity"),
    ({"outbox": {"max_attempts": 0}}, r"outbox\.max_attempts: must be > 0"),
    ({"outbox": {"retries": 3}}, r"outbox\.retries: unknown key"),
    ({"receivers": {"oncall": {"type": "sms"}}}, r"receivers\.oncall\.type"),
])
def test_config_errors_name_the_bad_key(section, message):
    with pytest.raises(ConfigError, match=message):
        NotificationsConfig.from_mapping(section, section="notifications")


def test_config_seed_shape_routing_and_env():
    cfg = NotificationsConfig.from_mapping({
        "slack": {"enabled": True, "webhook_url": "${SLACK_WEBHOOK_URL}", "notify_on_severity": ["critical", "high", "medium"]},
        "pagerduty": {"enabled": True, "api_key": "${PAGERDUTY_API_KEY}", "service_key": "${PAGERDUTY_SERVICE_KEY}",
                      "notify_on_severity": ["critical"]},
        "email": {"enabled": False, "smtp_server": "smtp.example.com", "smtp_port": 587, "from_address": "incidents@example.com"},
        "receivers": {"oncall-l3": {"type": "slack", "webhook_url": "${L3_SLACK}"}},
    })
    assert [r.name for r in cfg.receivers] == ["log", "slack", "pagerduty", "oncall-l3"]
    assert cfg.receiver("pagerduty").secret_env("routing_key") == "PAGERDUTY_SERVICE_KEY"
    assert cfg.route("low") == ("log",) and cfg.route("critical") == ("log", "slack", "pagerduty", "oncall-l3")
    routed = NotificationsConfig.from_mapping({"slack": {"webhook_url": "${S}"}, "routing": {"critical": ["slack"]}})
    assert routed.route("critical") == ("slack",) and routed.route("low") == ()
    env = NotificationsConfig.from_mapping({}).with_env({"ALERTMANAGER_URL": "http://127.0.0.1:9093",
                                                          "PAGERDUTY_ROUTING_KEY": "k", "INCIDENT_DATABASE_URL": "sqlite:///n.db"})
    assert [r.kind for r in env.receivers] == ["log", "alertmanager", "pagerduty"] and env.outbox.database_url == "sqlite:///n.db"
