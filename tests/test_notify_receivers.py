"""Notifications end to end with real receivers: IncidentChanged events published on the event
stream reach a real Alertmanager, local Slack / PagerDuty / webhook servers and an SMTP server,
through the durable outbox and the dispatcher."""
from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import pytest

from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.notify.config import NotificationsConfig
from aphrodite_sla.notify.model import NotificationStatus
from aphrodite_sla.notify.notifier import build_notifier
from tests.tools import incident_change, wait_for

pytest_plugins = ("tests.receivers",)  # the alertmanager and local_receivers fixtures


def _notifier(tmp_path: Path, section: dict, env: dict[str, str], **outbox):
    section = {**section, "outbox": {"initial_backoff_seconds": 0.2, "max_backoff_seconds": 1.0, "poll_interval_seconds": 0.05, **outbox}}
    events = EventStream()
    notifier = build_notifier(NotificationsConfig.from_mapping(section), events, f"sqlite:///{tmp_path / 'incidents.db'}", env=env)
    notifier.start()
    return events, notifier


def _am_alerts(url: str, incident_id: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true", timeout=5) as resp:
        alerts = json.load(resp)
    return [a for a in alerts if a["labels"].get("incident_id") == incident_id]


def test_alertmanager_receives_the_alert_with_our_labels_and_it_resolves(tmp_path, alertmanager):
    events, notifier = _notifier(tmp_path, {"alertmanager": {"url": alertmanager, "resend_interval_seconds": 0.5}}, {})
    try:
        events.publish([incident_change("INC-AM", "opened", severity="high")])
        alerts = wait_for(lambda: _am_alerts(alertmanager, "INC-AM"), what="the alert in Alertmanager")
        labels = alerts[0]["labels"]
        assert labels["alertname"] == "performance_degradation"
        assert labels["severity"] == "high" and labels["source"] == "aphrodite-sla"
        assert labels["model_name"] == "demo-model" and labels["sla"] == "ttft_p95"
        assert alerts[0]["annotations"]["summary"] == "TTFT p95 above SLA (INC-AM)"
        assert alerts[0]["annotations"]["runbook"] == "https://runbooks.local/ttft"
        assert alerts[0]["status"]["state"] == "active"
        # re-sent while firing: the alert's updatedAt moves forward
        first = alerts[0]["updatedAt"]
        wait_for(lambda: _am_alerts(alertmanager, "INC-AM")[0]["updatedAt"] != first, what="a re-send of the firing alert")
        # Alertmanager has the re-send before the dispatcher counts it (the count follows the reply)
        wait_for(lambda: notifier.dispatcher.refresh_stats().receivers["alertmanager"].resends >= 1,
                 what="the re-send counted")

        # the severity rises: a new label set; the high one is resolved in the same request
        events.publish([incident_change("INC-AM", "escalated", severity="critical", level=1)])
        wait_for(lambda: [a["labels"]["severity"] for a in _am_alerts(alertmanager, "INC-AM")] == ["critical"],
                 what="only the critical alert active after the escalation")

        events.publish([incident_change("INC-AM", "resolved", severity="critical", level=1)])
        wait_for(lambda: not _am_alerts(alertmanager, "INC-AM"), what="the alert to resolve (endsAt)")
        # and it stays resolved: a resolved incident is no longer re-sent
        assert not [n for n in notifier.outbox.firing("alertmanager") if n.facts.incident_id == "INC-AM"]
    finally:
        notifier.stop()


def test_slack_pagerduty_webhook_and_email_receive_payloads_in_their_shapes(tmp_path, local_receivers):
    r = local_receivers
    events, notifier = _notifier(tmp_path, r.notifications_config(), r.env)
    try:
        events.publish([incident_change("INC-7", "opened", severity="critical")])
        assert wait_for(lambda: notifier.wait_delivered(0.2) and r.pagerduty.bodies() and r.smtp.messages, what="delivery")
        events.publish([incident_change("INC-7", "acknowledged", severity="critical"), incident_change("INC-7", "resolved", severity="critical")])
        wait_for(lambda: len(r.pagerduty.bodies()) == 3, what="PagerDuty acknowledge and resolve")
        notifier.wait_delivered(5)

        assert not r.pagerduty.rejected and not r.slack.rejected and not r.webhook.rejected
        trigger, ack, resolve = r.pagerduty.bodies()
        assert [trigger["event_action"], ack["event_action"], resolve["event_action"]] == ["trigger", "acknowledge", "resolve"]
        assert trigger["routing_key"] == r.routing_key and trigger["dedup_key"] == ack["dedup_key"] == resolve["dedup_key"] == "fp-INC-7"
        assert trigger["payload"]["severity"] == "critical" and "TTFT p95" in trigger["payload"]["summary"]

        slack = r.slack.bodies()
        assert "opened" in slack[0]["text"] and "resolved" in slack[2]["text"]
        assert len(slack) == 3 and slack[0]["blocks"][0]["type"] == "section" and "CRITICAL" in slack[0]["text"]

        hooks = r.webhook.bodies()
        assert [h["status"] for h in hooks] == ["firing", "firing", "resolved"]
        assert hooks[0]["version"] == "4" and hooks[0]["alerts"][0]["fingerprint"] == "fp-INC-7"
        assert hooks[2]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z" and hooks[0]["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"

        subjects = [m.content for m in r.smtp.messages]
        assert len(subjects) == 2  # opened and resolved (email's default changes), not the acknowledgement
        assert "Subject: [CRITICAL] opened: TTFT p95 above SLA (INC-7)" in subjects[0]
        assert r.smtp.messages[0].rcpt_tos == ["oncall@localhost"]

        stats = notifier.dispatcher.refresh_stats()
        assert stats.receivers["pagerduty"].sent == 3 and stats.receivers["email"].sent == 2
        assert all(s.pending == 0 and s.failed == 0 for s in stats.receivers.values())
    finally:
        notifier.stop()


def test_routing_by_severity_follows_seed_003_and_explicit_receivers_override(tmp_path, local_receivers):
    r = local_receivers
    section = {k: v for k, v in r.notifications_config().items() if k in ("slack", "pagerduty")}
    events, notifier = _notifier(tmp_path, section, r.env)
    try:
        assert notifier.targets(_facts("low")) == ["log"]
        assert notifier.targets(_facts("medium")) == ["log", "slack"]
        assert notifier.targets(_facts("high")) == ["log", "slack"]
        assert sorted(notifier.targets(_facts("critical"))) == ["log", "pagerduty", "slack"]
        events.publish([incident_change("INC-M", "opened", severity="medium"),
                        incident_change("INC-L", "escalated", severity="low", level=3, receivers=("pagerduty",))])
        wait_for(lambda: len(r.slack.bodies()) == 1 and len(r.pagerduty.bodies()) == 1, what="routed deliveries")
        notifier.wait_delivered(5)
        assert "INC-M" in r.slack.bodies()[0]["text"]
        assert r.pagerduty.bodies()[0]["payload"]["custom_details"]["incident_id"] == "INC-L"
        assert r.pagerduty.bodies()[0]["payload"]["severity"] == "info"
    finally:
        notifier.stop()


def _facts(severity: str):
    from aphrodite_sla.notify.notifier import facts_of
    return facts_of(incident_change("X", "opened", severity=severity))


def test_a_republished_change_notifies_once(tmp_path, local_receivers):
    r = local_receivers
    events, notifier = _notifier(tmp_path, {"slack": r.notifications_config()["slack"]}, r.env)
    try:
        change = incident_change("INC-D", "opened", severity="high")
        events.publish([change, change])
        events.drain(5)
        notifier.wait_delivered(5)
        events.publish([change])  # the incident manager re-publishes at start-up
        events.drain(5)
        notifier.wait_delivered(5)
        assert len(r.slack.bodies()) == 1
        escalated = incident_change("INC-D", "escalated", severity="high", level=2)
        events.publish([escalated, escalated])
        wait_for(lambda: len(r.slack.bodies()) == 2, what="the escalation")
        notifier.wait_delivered(5)
        assert len(r.slack.bodies()) == 2
    finally:
        notifier.stop()


def test_a_down_receiver_is_retried_and_never_blocks_the_others(tmp_path, local_receivers):
    r = local_receivers
    r.pagerduty.stop()  # PagerDuty unreachable: connections refused
    events, notifier = _notifier(tmp_path, r.notifications_config(), r.env)
    try:
        events.publish([incident_change("INC-R", "opened", severity="critical")])
        wait_for(lambda: r.slack.bodies() and r.webhook.bodies() and r.smtp.messages, what="the reachable receivers")
        pd = wait_for(lambda: [n for n in notifier.outbox.notifications(receiver="pagerduty") if n.attempts >= 2], what="PagerDuty retries")
        assert pd[0].status is NotificationStatus.PENDING and ("refused" in pd[0].last_error or "URLError" in pd[0].last_error)
        r.pagerduty.start()
        wait_for(r.pagerduty.bodies, what="PagerDuty after it came back")
        notifier.wait_delivered(5)
        row = notifier.outbox.notifications(receiver="pagerduty")[0]
        assert row.status is NotificationStatus.DELIVERED and row.delivered_at is not None
        history = notifier.outbox.attempts_of(row.id)
        assert [a["ok"] for a in history][-1] is True and not all(a["ok"] for a in history)
        assert notifier.dispatcher.refresh_stats().receivers["pagerduty"].failed_attempts >= 2
    finally:
        notifier.stop()


def test_a_permanent_refusal_is_not_retried_and_secrets_are_not_logged_or_stored(tmp_path, local_receivers, caplog):
    r = local_receivers
    env = {**r.env, "LOCAL_PAGERDUTY_ROUTING_KEY": "wrong-key-s3cr3t"}  # PagerDuty answers 400
    events, notifier = _notifier(tmp_path, {"pagerduty": r.notifications_config()["pagerduty"],
                                            "slack": {"webhook_url": "${MISSING_SLACK_URL}"}}, env)
    try:
        with caplog.at_level(logging.DEBUG):
            events.publish([incident_change("INC-S", "opened", severity="critical")])
            row = wait_for(lambda: [n for n in notifier.outbox.notifications(receiver="pagerduty") if n.status is NotificationStatus.FAILED],
                           what="the refused event")[0]
            assert row.attempts == 1 and "400" in row.last_error
            slack = wait_for(lambda: [n for n in notifier.outbox.notifications(receiver="slack") if n.attempts], what="slack attempt")[0]
            assert "MISSING_SLACK_URL" in slack.last_error and slack.status is NotificationStatus.PENDING
        assert "wrong-key-s3cr3t" not in caplog.text
        raw = (tmp_path / "incidents.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("incidents.db-*"))
        assert b"wrong-key-s3cr3t" not in raw and r.slack.url.encode() not in raw
    finally:
        notifier.stop()


def test_bad_events_are_counted_drops(tmp_path, local_receivers):
    events, notifier = _notifier(tmp_path, {}, {})
    try:
        assert notifier.on_event(incident_change("INC-B", "opened", severity="urgent")) == []
        assert notifier.on_event(incident_change("INC-B", "opened", occurred_at=float("nan"))) == []
        # an escalation level naming only receivers nobody configured goes by severity instead (log here)
        assert notifier.on_event(incident_change("INC-B", "escalated", receivers=("nobody",))) == ["fp-INC-B|escalated|L0|log"]
        assert notifier.on_event(incident_change("INC-B", "opened", level=-1)) == []
        assert notifier.on_event(incident_change("INC-B", "opened", receivers="slack")) == []
        expected = {"bad_severity": 1, "bad_time": 1, "unknown_receiver": 1, "bad_escalation_level": 1, "bad_receivers": 1}
        assert notifier.dispatcher.dropped == expected
        assert notifier.dispatcher.refresh_stats().dropped == expected
    finally:
        notifier.stop()


def test_a_hanging_receiver_times_out_and_does_not_hold_up_the_others(tmp_path, local_receivers):
    import socket
    import threading

    r = local_receivers
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections (the kernel does) and never answers
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(hang.accept()[0]) for _ in range(16)], daemon=True).start()
    section = {**r.notifications_config(), "webhook": {"url": f"http://127.0.0.1:{hang.getsockname()[1]}/hook", "timeout_seconds": 0.5}}
    events, notifier = _notifier(tmp_path, section, r.env)
    try:
        events.publish([incident_change(f"INC-H{i}", "opened", severity="critical") for i in range(3)])
        wait_for(lambda: len(r.slack.bodies()) == 3 and len(r.pagerduty.bodies()) == 3 and len(r.smtp.messages) == 3,
                 what="the other receivers while the webhook hangs")
        hung = wait_for(lambda: [n for n in notifier.outbox.notifications(receiver="webhook") if n.attempts >= 1], what="a timed-out attempt")
        assert "timed out" in hung[0].last_error and hung[0].status is NotificationStatus.PENDING
    finally:
        notifier.stop()
        hang.close()
        for s in accepted:
            s.close()


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        import os
        if os.environ.get("CI"):
            pytest.fail("openssl not found (Debian: apt-get install openssl); required when CI is set")
        pytest.skip("openssl not found")
    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def test_email_with_starttls_and_a_password_from_the_environment(tmp_path):
    from aphrodite_sla.notify.local_receivers import SmtpSink

    cert, key = _self_signed(tmp_path)
    sink = SmtpSink(tls_cert=cert, tls_key=key, credentials=("alerts", "pw-from-env")).start()
    email = {"smtp_server": "127.0.0.1", "smtp_port": sink.port, "from_address": "incidents@localhost", "to_addresses": ["oncall@localhost"],
             "starttls": True, "tls_ca_file": cert, "username": "alerts", "password": "${SMTP_PASSWORD}", "timeout_seconds": 5}
    untrusted = {"type": "email", **{k: v for k, v in email.items() if k != "tls_ca_file"}}
    wrong = {"type": "email", **email, "password": "${WRONG_PASSWORD}"}
    events, notifier = _notifier(tmp_path, {"email": email, "receivers": {"untrusted": untrusted, "wrong": wrong}},
                                 {"SMTP_PASSWORD": "pw-from-env", "WRONG_PASSWORD": "nope"})
    try:
        events.publish([incident_change("INC-E", "opened", severity="critical")])
        wait_for(lambda: sink.messages, what="the e-mail over STARTTLS")
        assert "Subject: [CRITICAL] opened: TTFT p95 above SLA (INC-E)" in sink.messages[0].content
        rows = wait_for(lambda: {n.receiver: n for n in notifier.outbox.notifications() if n.attempts} if len(
            [n for n in notifier.outbox.notifications() if n.attempts]) >= 4 else None, what="every receiver attempted")
        assert rows["email"].status is NotificationStatus.DELIVERED
        # a certificate no CA vouches for is refused (a password never goes to an unverified server), and not retried
        assert rows["untrusted"].status is NotificationStatus.FAILED and "certificate" in rows["untrusted"].last_error
        # a refused login (535) is permanent
        assert rows["wrong"].status is NotificationStatus.FAILED and "535" in rows["wrong"].last_error and rows["wrong"].attempts == 1
        assert len(sink.messages) == 1
    finally:
        notifier.stop()
        sink.stop()


def test_an_unwritable_outbox_is_a_counted_drop_not_an_exception(tmp_path, monkeypatch):
    import aphrodite_sla.notify.notifier as notifier_module

    events, notifier = _notifier(tmp_path, {}, {})
    try:
        monkeypatch.setattr(notifier_module, "ENQUEUE_RETRY_S", (0.01, None))
        calls = []

        def locked(*_args):
            calls.append(1)
            raise RuntimeError("database is locked")

        monkeypatch.setattr(notifier.outbox, "enqueue", locked)
        assert notifier.on_event(incident_change("INC-U", "opened")) == []
        assert len(calls) == 2 and notifier.dispatcher.dropped["enqueue_failed"] == 1
    finally:
        notifier.stop()
