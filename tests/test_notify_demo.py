"""``aphrodite-sla notify demo`` (run by ``make demo``): every notification reaches the local
receivers it started, the Slack ones after Slack came back."""
from __future__ import annotations

from aphrodite_sla.notify.demo import run_notification_demo
from aphrodite_sla.notify.model import NotificationStatus


def test_notify_demo_delivers_everything_to_its_local_receivers(tmp_path):
    lines: list[str] = []
    db = tmp_path / "demo.db"
    for _ in range(2):  # a second run starts from a fresh outbox, so it delivers again
        lines.clear()
        outcome = run_notification_demo(db, slack_down_s=0.8, out=lines.append)
        assert outcome.rows and all(n.status is NotificationStatus.DELIVERED for n in outcome.rows)
        assert (outcome.slack, outcome.pagerduty, outcome.webhook, outcome.emails) == (6, 4, 6, 5)
        assert any(n.receiver == "slack" and n.attempts > 1 for n in outcome.rows)  # retried while Slack was down
        assert lines[-1].startswith("local receivers got: Slack 6, PagerDuty 4, webhook 6, e-mail 5")


def test_notify_history_reads_the_outbox_back(tmp_path, capsys):
    import json

    from aphrodite_sla.cli import main

    db = tmp_path / "demo.db"
    run_notification_demo(db, slack_down_s=0.5, out=lambda _line: None)
    capsys.readouterr()
    assert main(["notify", "history", "--database", f"sqlite:///{db}", "--receiver", "slack", "--attempts", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"delivered"} and all(r["receiver"] == "slack" for r in rows)
    retried = [r for r in rows if r["attempts"] > 1]
    assert retried and [a["ok"] for a in retried[0]["history"]][-1] is True and not retried[0]["history"][0]["ok"]
    assert main(["notify", "history", "--database", f"sqlite:///{db}", "--limit", "2", "--json"]) == 0
    newest = json.loads(capsys.readouterr().out)
    assert [r["change"] for r in newest] == ["resolved", "resolved"] and newest[0]["id"] < newest[1]["id"]
    assert main(["notify", "history", "--database", f"sqlite:///{db}"]) == 0 and "notifications (" in capsys.readouterr().out
    assert main(["notify", "history", "--database", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert main(["notify", "history", "--database", f"sqlite:///{db}", "--limit", "0"]) == 2


def test_notify_test_sends_straight_to_each_receiver(tmp_path, capsys, monkeypatch):
    import json

    from aphrodite_sla.cli import main
    from aphrodite_sla.notify.local_receivers import LocalReceivers

    sinks = LocalReceivers.start()
    try:
        for key, value in sinks.env.items():
            monkeypatch.setenv(key, value)
        config = tmp_path / "sla.json"
        config.write_text(json.dumps({"incident_response": {"notifications": sinks.notifications_config()}}))
        assert main(["notify", "test", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert all(f"{name}" in out for name in ("log", "slack", "pagerduty", "webhook", "email")) and "FAILED" not in out
        assert len(sinks.slack.bodies()) == 1 and len(sinks.pagerduty.bodies()) == 1 and len(sinks.smtp.messages) == 1
        assert "test notification" in sinks.slack.bodies()[0]["text"]

        sinks.pagerduty.stop()  # unreachable: exit 1, named
        assert main(["notify", "test", "--config", str(config), "--receiver", "pagerduty", "--severity", "critical"]) == 1
        assert "pagerduty        pagerduty    FAILED" in capsys.readouterr().out
        assert main(["notify", "test", "--config", str(config), "--receiver", "sms"]) == 2
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"notifications": {"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}}}))
        assert main(["notify", "test", "--config", str(bad)]) == 2
        assert "slack.webhook_url: a secret comes from the environment" in capsys.readouterr().err
    finally:
        sinks.stop()
