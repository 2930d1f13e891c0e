"""What a running server holds: settings, the database, flows, Stripe, the worker."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from actionflow.engine.flow import FlowSet
from actionflow.engine.inbox import Processor
from actionflow.engine.outbox import Sender
from actionflow.engine.stripe_gateway import StripeGateway
from sqlalchemy import Engine

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
    wake: threading.Event = field(default_factory=threading.Event)
    sender: Sender | None = None
