"""What a flow run may use beyond its database connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from .tables import Order


def _default_orders() -> Table:
    return Order.__table__  # type: ignore[attr-defined, no-any-return]


@dataclass
class Services:
    """Stripe (None when no secret key is set) and the linked order table."""

    gateway: Any = None
    order_table: Table = field(default_factory=_default_orders)
