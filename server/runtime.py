"""What a running server holds: settings, the database, flows, Stripe, the worker."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, Table

from actionflow.engine.flow import FlowSet
from actionflow.engine.inbox import Processor
from actionflow.engine.outbox import Sender
from actionflow.engine.services import Services, idempotency_key
from actionflow.engine.stripe_gateway import StripeGateway

from .config import Settings


@dataclass
class Runtime:
    """Shared by the endpoints and the worker of one process."""

    settings: Settings
    engine: Engine
    flows: FlowSet
    processor: Processor
    admin_token: str
    webhook_secrets: list[str]
    gateway: StripeGateway | None
    token_secret: str = ""
    services: Services = field(default_factory=Services)
    wake: threading.Event = field(default_factory=threading.Event)
    sender: Sender | None = None
    installation: str = "local"

    def idempotency_key(self, kind: str, key: object) -> str:
        """A Stripe idempotency key that no other actionflow database repeats.

        Row ids restart in every new database; the installation id, generated
        once per database, keeps two databases on one Stripe account apart.
        """
        return idempotency_key(self.installation, kind, key)

    @property
    def order_table(self) -> Table:
        """The linked order table, its columns keyed id, price, currency, ..."""
        return self.services.order_table
