"""E-mail over SMTP (``smtplib``), STARTTLS when ``starttls: true``, login when ``username`` is
set (the password from the environment). Every SMTP call runs under ``timeout_seconds``.

Why a verifying TLS context: ``smtplib.starttls()`` without one accepts any certificate, so a
password sent after it could go to anyone on the path; ours checks the chain and the host name
(``tls_ca_file`` adds a private CA)."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from aphrodite_sla.notify.alert_format import rfc3339
from aphrodite_sla.notify.model import DeliveryError, IncidentFacts
from aphrodite_sla.notify.receiver import Receiver


def email_message(facts: IncidentFacts, sender: str, recipients: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[{facts.severity.upper()}] {facts.change}: {facts.title}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["X-Incident-Id"] = facts.incident_id
    lines = [
        f"Incident {facts.incident_id} {facts.change} ({facts.status}).", "",
        f"Title:      {facts.title}", f"Severity:   {facts.severity}", f"Type:       {facts.incident_type}",
        f"Escalation: L{facts.escalation_level}", f"By:         {facts.actor}", f"At:         {rfc3339(facts.occurred_at)}",
    ]
    if facts.summary:
        lines += ["", facts.summary]
    if facts.url:
        lines += ["", facts.url]
    msg.set_content("\n".join(lines) + "\n")
    return msg


class EmailReceiver(Receiver):
    def send(self, facts: IncidentFacts) -> None:
        o = self.config.options
        recipients = [str(a) for a in o["to_addresses"]]
        msg = email_message(facts, str(o["from_address"]), recipients)
        password = self.optional_secret("password")
        host, port = str(o["smtp_server"]), int(o.get("smtp_port", 25))
        try:
            with smtplib.SMTP(host, port, timeout=self.config.timeout_s) as smtp:
                if o.get("starttls"):
                    smtp.starttls(context=ssl.create_default_context(cafile=o.get("tls_ca_file")))
                if o.get("username"):
                    smtp.login(str(o["username"]), password or "")
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as err:
            # 5xx replies are permanent (mailbox unknown, auth refused); 4xx are "try later"
            raise DeliveryError(f"SMTP {host}:{port}: {err.smtp_code} {err.smtp_error!r}", retryable=err.smtp_code < 500) from None
        except ssl.SSLCertVerificationError as err:  # a wrong certificate stays wrong: no retry
            raise DeliveryError(f"SMTP {host}:{port}: TLS certificate refused: {err.verify_message}", retryable=False) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as err:
            raise DeliveryError(f"SMTP {host}:{port}: {type(err).__name__}: {err}") from None
