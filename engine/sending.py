"""The outbox sender with the transports the notification settings allow."""

from __future__ import annotations

from sqlalchemy import Engine

from .mailsend import SmtpTransport
from .notifyconfig import NotifySettings
from .outbox import Deliver, Sender
from .webhooksend import WebhookTransport


def create_sender(engine: Engine, settings: NotifySettings) -> Sender:
    """A sender for `engine`; mail waits in the outbox while SMTP is not set up."""
    transports: dict[str, Deliver] = {"webhook": WebhookTransport(settings.webhooks)}
    if settings.smtp is not None:
        transports["email"] = SmtpTransport(settings.smtp)
    return Sender(engine, settings, transports)
