"""What a flow run may use beyond its database connection."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from .notifyconfig import NotifySettings
from .tables import Order


def _default_orders() -> Table:
    return Order.__table__  # type: ignore[attr-defined, no-any-return]


@dataclass
class DryRunCapture:
    """A dry run's notebook: notify steps describe here what they would send.

    With one in the services, notify.log writes its line here instead of the
    log, and notify.email and notify.webhook note the message they queue (the
    dry run rolls the queue back, so nothing is sent).
    """

    notifications: list[dict[str, Any]] = field(default_factory=list)
    # False: no allow-list is configured, so a webhook host is let through and
    # the note says that a real run would refuse it.
    webhooks_configured: bool = True


@dataclass
class Services:
    """Stripe (None without a secret key), the order table, notification settings.

    `installation` is the id generated once per database; it is part of every
    Stripe idempotency key, so two databases on one Stripe account never share
    a key even where their row ids and event ids coincide.
    """

    gateway: Any = None
    order_table: Table = field(default_factory=_default_orders)
    notify: NotifySettings | None = None
    dry_run: DryRunCapture | None = None
    installation: str = "local"

    def idempotency_key(self, kind: str, key: object) -> str:
        """A Stripe idempotency key for `key`, unique to this database."""
        return idempotency_key(self.installation, kind, key)


def idempotency_key(installation: str, kind: str, key: object) -> str:
    """The Stripe idempotency key for `key` of `kind` in the database `installation`.

    Stripe keeps keys up to 255 characters; a longer one is shortened with a
    hash of its tail, so it stays the same for the same input.
    """
    text = f"af-{installation}-{kind}-{key}"
    if len(text) <= 255:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[:190]}-{digest}"
