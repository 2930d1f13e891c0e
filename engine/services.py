"""What a flow run may use beyond its database connection."""

from __future__ import annotations

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
    """Stripe (None without a secret key), the order table, notification settings."""

    gateway: Any = None
    order_table: Table = field(default_factory=_default_orders)
    notify: NotifySettings | None = None
    dry_run: DryRunCapture | None = None
