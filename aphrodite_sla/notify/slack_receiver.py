"""Slack incoming webhook: ``POST`` ``{text, blocks}`` to the webhook URL (a secret: it carries
the token, so it comes from the environment and errors name only its host)."""
from __future__ import annotations

from typing import Any

from aphrodite_sla.notify.model import IncidentFacts
from aphrodite_sla.notify.receiver import Receiver, post_json

_ICONS = {"low": ":information_source:", "medium": ":warning:", "high": ":rotating_light:", "critical": ":fire:"}


def slack_message(facts: IncidentFacts, channel: str | None = None) -> dict[str, Any]:
    icon = ":white_check_mark:" if facts.resolving else _ICONS.get(facts.severity, ":warning:")
    headline = f"{icon} [{facts.severity.upper()}] {facts.title} — {facts.change}"
    fields = [
        f"*Incident:* `{facts.incident_id}`", f"*Status:* {facts.status}", f"*Type:* {facts.incident_type}",
        f"*Escalation:* L{facts.escalation_level}", f"*By:* {facts.actor}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*" + (f"\n{facts.summary}" if facts.summary else "")}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(fields)}]},
    ]
    if facts.url:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{facts.url}|Open the incident>"}})
    message: dict[str, Any] = {"text": headline, "blocks": blocks}
    if channel:
        message["channel"] = channel
    return message


class SlackReceiver(Receiver):
    def send(self, facts: IncidentFacts) -> None:
        post_json(self.secret("webhook_url"), slack_message(facts, self.config.options.get("channel")),
                  timeout_s=self.config.timeout_s, secret_url=True, accept=(200,))
