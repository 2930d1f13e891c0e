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
class Services:
    """Stripe (None without a secret key), the order table, notification settings.

    `installation` is the id generated once per database; it is part of every
    Stripe idempotency key, so two databases on one Stripe account never share
    a key even where their row ids and event ids coincide.
    """

    gateway: Any = None
    order_table: Table = field(default_factory=_default_orders)
    notify: NotifySettings | None = None
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
