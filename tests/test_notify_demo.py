"""``aphrodite-sla notify-demo`` (run by ``make demo``): every notification reaches the local
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
