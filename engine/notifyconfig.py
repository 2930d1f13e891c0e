"""What notifications are configured with: templates, SMTP, outbound webhooks.

The server builds these from actionflow.yaml and the environment; the engine
only reads them. Passwords and signing secrets live here and nowhere else: they
are never put in an outbox row, a log line or an error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .inbox import RetryPolicy

TLS_MODES = ("none", "starttls", "ssl")

# A row still `sending` this long after it was claimed belongs to a process
# that died mid-send; it is reported, never sent again.
STALE_SENDING_SECONDS = 900.0


@dataclass(frozen=True)
class SmtpSettings:
    """An SMTP server to send mail through."""

    host: str
    port: int = 587
    tls: str = "starttls"  # none, starttls or ssl
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "actionflow@localhost"
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class WebhookSettings:
    """Where notify.webhook may post, and how it signs what it posts."""

    allow_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class NotifySettings:
    """Everything notify.* steps and the outbox sender need."""

    templates: Path | None = None
    smtp: SmtpSettings | None = None
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stale_sending_seconds: float = STALE_SENDING_SECONDS
