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
class Services:
    """Stripe (None without a secret key), the order table, notification settings."""

    gateway: Any = None
    order_table: Table = field(default_factory=_default_orders)
    notify: NotifySettings | None = None
