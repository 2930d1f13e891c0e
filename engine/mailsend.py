"""Sending one outbox mail over SMTP (plain, STARTTLS or implicit TLS).

Errors are translated here into DeliveryError messages that name the server
and what it answered, never the password.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from .notifyconfig import SmtpSettings
from .outbox import DeliveryError


def message_id(key: str, sender: str) -> str:
    """A Message-ID that depends only on the idempotency key (and our domain)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2].strip(" >") or "actionflow.invalid"
    return f"<{digest}.actionflow@{domain}>"


def build_message(row: dict[str, Any], smtp: SmtpSettings) -> EmailMessage:
    """The mail an outbox row describes."""
    mail = json.loads(row["payload"])
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = ", ".join(mail["to"])
    message["Subject"] = mail["subject"]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id(row["key"], smtp.sender)
    if mail.get("text") is not None:
        message.set_content(mail["text"])
        if mail.get("html") is not None:
            message.add_alternative(mail["html"], subtype="html")
    else:
        message.set_content(mail["html"], subtype="html")
    return message


class SmtpTransport:
    """Delivers outbox rows of kind `email` through one SMTP server."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    def __call__(self, row: dict[str, Any]) -> None:
        """Send the row's mail; DeliveryError if the server refuses it."""
        message = build_message(row, self.smtp)
        where = f"{self.smtp.host}:{self.smtp.port}"
        try:
            with self._connect() as client:
                if self.smtp.tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if self.smtp.username:
                    client.login(self.smtp.username, self.smtp.password or "")
                client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP server {where} refused the login of user "
                f"{self.smtp.username!r}: {_answer(exc)}; check "
                "ACTIONFLOW_SMTP_PASSWORD and smtp.username"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise DeliveryError(
                f"SMTP server {where} refused the recipient(s) {refused}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            answer = _answer(exc)
            raise DeliveryError(f"SMTP server {where} answered {answer}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"cannot send through SMTP server {where}: {type(exc).__name__}: "
                f"{_redacted(str(exc), self.smtp.password)}"
            ) from None

    def _connect(self) -> smtplib.SMTP:
        timeout = self.smtp.timeout_seconds
        if self.smtp.tls == "ssl":
            return smtplib.SMTP_SSL(
                self.smtp.host,
                self.smtp.port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        return smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=timeout)


def _answer(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{exc.smtp_code} {' '.join(str(text).split())}"


def _redacted(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
