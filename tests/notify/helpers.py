"""A real SMTP server and a real webhook receiver on loopback, and a shop to pay in."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert, select, update

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import EVENTS, Processor, RetryPolicy, store_event
from actionflow.engine.notifyconfig import NotifySettings, SmtpSettings
from actionflow.engine.outbox import OUTBOX, Sender
from actionflow.engine.sending import create_sender
from actionflow.engine.services import Services
from actionflow.engine.tables import Order, Payment, utcnow
from actionflow.server.config import EXAMPLE_TEMPLATES
from tests.conftest import free_port
from tests.stripe_events import event, stripe_object

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
INTENT = "pi_1PgafyB7WZ01zgkWSjxsAJo3"
SHOP = "Shop <shop@example.com>"
QUICK_RETRY = RetryPolicy(attempts=3, base_seconds=0.0, cap_seconds=0.0)


class MailCatcher:
    """aiosmtpd handler: keeps every accepted mail; refuses the first `refuse` ones."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.mails: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 mailbox busy, try again later"
        mail = message_from_bytes(envelope.content, policy=policy.default)
        self.mails.append(mail)  # type: ignore[arg-type]
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class SmtpServer:
    """A running aiosmtpd on loopback."""

    catcher: MailCatcher
    port: int
    controller: Controller

    def settings(self, **changes: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "tls": "none",
            "sender": SHOP,
            "timeout_seconds": 5.0,
        }
        values.update(changes)
        return SmtpSettings(**values)


def start_smtp(catcher: MailCatcher) -> SmtpServer:
    """Start aiosmtpd with `catcher` on a free loopback port."""
    port = free_port()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    return SmtpServer(catcher, port, controller)


@dataclass
class Shop:
    """A processor and a sender over one database, as the worker runs them."""

    engine: Engine
    settings: NotifySettings
    flows: list[Path] = field(default_factory=lambda: [EXAMPLE_FLOWS])

    def __post_init__(self) -> None:
        services = Services(notify=self.settings)
        self.processor = Processor(
            self.engine, load_project(self.flows), services=services, retry=QUICK_RETRY
        )
        self.sender = create_sender(self.engine, self.settings)

    def work(self, sender: Sender | None = None) -> None:
        """Process every due event and run, then send every due message."""
        sender = sender or self.sender
        for _ in range(50):
            busy = self.processor.process_next_event()
            busy = self.processor.process_next_run() or busy
            busy = sender.send_next() or busy
            if not busy:
                return
        raise AssertionError("the work did not settle in 50 rounds")

    def outbox(self) -> list[dict[str, Any]]:
        with db.read(self.engine) as connection:
            rows = connection.execute(select(OUTBOX).order_by(OUTBOX.c.id))
            return [dict(row) for row in rows.mappings()]

    def replay(self, stripe_event_id: str) -> None:
        """Mark a processed event pending again, as a replay or a retry would."""
        with db.write(self.engine) as connection:
            connection.execute(
                update(EVENTS)
                .where(EVENTS.c.stripe_event_id == stripe_event_id)
                .values(status="pending", next_attempt_at=utcnow())
            )


def notify_settings(smtp: SmtpSettings | None, **changes: Any) -> NotifySettings:
    """Settings with the example templates and quick retries."""
    values: dict[str, Any] = {
        "templates": EXAMPLE_TEMPLATES,
        "smtp": smtp,
        "retry": QUICK_RETRY,
    }
    values.update(changes)
    return NotifySettings(**values)


def order_and_payment(engine: Engine, description: str = "") -> tuple[int, int]:
    """An order of 10.99 USD and its pending payment."""
    now = utcnow()
    with db.write(engine) as connection:
        order_id = connection.execute(
            insert(ORDERS)
            .values(
                price=Decimal("10.99"),
                currency="usd",
                user_id="u1",
                status="pending",
                description=description,
                created_at=now,
                updated_at=now,
            )
            .returning(ORDERS.c.id)
        ).scalar_one()
        payment_id = connection.execute(
            insert(PAYMENTS)
            .values(
                order_id=order_id,
                amount=1099,
                currency="usd",
                status="pending",
                callback_processed=False,
                stripe_payment_intent_id=INTENT,
                refunded_amount=0,
                created_at=now,
                updated_at=now,
            )
            .returning(PAYMENTS.c.id)
        ).scalar_one()
    return int(order_id), int(payment_id)


def succeeded(receipt_email: str | None = "buyer@example.com") -> dict[str, Any]:
    """A payment_intent.succeeded event for INTENT."""
    intent = stripe_object("payment_intent")
    intent.update(status="succeeded", amount_received=1099, receipt_email=receipt_email)
    return event("payment_intent.succeeded", intent)


def deliver(engine: Engine, body: dict[str, Any]) -> bool:
    """Store an event as the webhook endpoint does; False for a duplicate."""
    return store_event(engine, body, json.dumps(body))


class Receiver:
    """A webhook receiver on uvicorn: records each request, answers `statuses`."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = statuses or []
        self.port = free_port()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"path": scope["path"], "headers": headers, "body": body})
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def __enter__(self) -> Receiver:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
