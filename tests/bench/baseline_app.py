"""A hand-written baseline of the payment path, to measure actionflow against.

It does the work `actionflow serve` does for `payment_intent.succeeded`, written
directly instead of as flows: the endpoint verifies the signature with the
stripe library on the raw body, stores the event once (unique on its Stripe id),
and acknowledges only after the commit; a worker claims each stored event and,
in one transaction, settles the payment, marks the order paid and records the
event processed. Same schema (the benchmark creates it with actionflow's
migrations), same SQLite settings (WAL, synchronous=FULL, BEGIN IMMEDIATE), same
PostgreSQL claim (FOR UPDATE SKIP LOCKED), one log line per event received and
per event processed. It writes no flow_run records: a hand-written app has none.

It does not import actionflow, so a change to the product never changes the
yardstick. The benchmark (payment_path.py) starts it as:

    python tests/bench/baseline_app.py serve --port 8001 [--no-worker]
    python tests/bench/baseline_app.py worker

with ACTIONFLOW_DATABASE_URL and STRIPE_WEBHOOK_SECRET in the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import stripe
import uvicorn
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("baseline")

TOLERANCE_SECONDS = 300
IDLE_SECONDS = 0.5
HANDLED = ("payment_intent.succeeded", "payment_intent.payment_failed")
SETTLED = ("succeeded", "mismatch")

metadata = MetaData()
EVENTS = Table(
    "webhook_event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("stripe_event_id", String),
    Column("type", String),
    Column("api_version", String),
    Column("object_id", String),
    Column("stripe_created", BigInteger),
    Column("livemode", Boolean),
    Column("payload", Text),
    Column("status", String),
    Column("attempts", Integer),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("note", Text),
    Column("received_at", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True)),
)
PAYMENTS = Table(
    "payment",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer),
    Column("amount", BigInteger),
    Column("currency", String),
    Column("status", String),
    Column("callback_processed", Boolean),
    Column("stripe_payment_intent_id", String),
    Column("amount_received", BigInteger),
    Column("failure_message", Text),
    Column("updated_at", DateTime(timezone=True)),
)
ORDERS = Table(
    "order",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("status", String),
    Column("updated_at", DateTime(timezone=True)),
)

CLAIM = (
    select(EVENTS.c.id, EVENTS.c.stripe_event_id, EVENTS.c.type, EVENTS.c.payload)
    .where(EVENTS.c.status == "pending", EVENTS.c.next_attempt_at <= bindparam("now"))
    .order_by(EVENTS.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
FIND_PAYMENT = select(
    PAYMENTS.c.id,
    PAYMENTS.c.order_id,
    PAYMENTS.c.amount,
    PAYMENTS.c.currency,
    PAYMENTS.c.status,
).where(PAYMENTS.c.stripe_payment_intent_id == bindparam("intent"))
SET_PAYMENT = update(PAYMENTS).where(
    PAYMENTS.c.id == bindparam("payment_id"), PAYMENTS.c.status.not_in(SETTLED)
)
PAY_ORDER = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("order_id"))
    .values(status="paid", updated_at=bindparam("now"))
)
FINISH = (
    update(EVENTS)
    .where(EVENTS.c.id == bindparam("event_id"))
    .values(
        status=bindparam("status"),
        note=bindparam("note"),
        processed_at=bindparam("now"),
        last_error=None,
        attempts=EVENTS.c.attempts + 1,
    )
)


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def create_db_engine(url: str) -> Engine:
    """An engine with the SQLite settings the product uses, or a PostgreSQL pool."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # durable before the answer
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed on success, rolled back on error."""
    with engine.connect() as connection, connection.begin():
        yield connection


def store_event(engine: Engine, stored: Any, event: dict[str, Any], text: str) -> bool:
    """Insert the event unless its id is known; True if it is new."""
    now = utcnow()
    intent = event.get("data", {}).get("object", {})
    values = {
        "stripe_event_id": event["id"],
        "type": event["type"],
        "api_version": event.get("api_version"),
        "object_id": intent.get("id"),
        "stripe_created": event.get("created") or 0,
        "livemode": bool(event.get("livemode")),
        "payload": text,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "received_at": now,
    }
    with transaction(engine) as connection:
        return connection.execute(stored, values).first() is not None


def process_next(engine: Engine) -> bool:
    """Claim one pending event and settle its payment; False when none is due."""
    with transaction(engine) as connection:
        row = connection.execute(CLAIM, {"now": utcnow()}).first()
        if row is None:
            return False
        try:
            status, note = settle(connection, row.type, json.loads(row.payload))
        except Exception:
            log.exception("event failed event=%s", row.stripe_event_id)
            status, note = "failed", "processing raised; see the log"
        connection.execute(
            FINISH,
            {"event_id": row.id, "status": status, "note": note, "now": utcnow()},
        )
    log.info("event %s event=%s type=%s", status, row.stripe_event_id, row.type)
    return True


def settle(
    connection: Connection, kind: str, event: dict[str, Any]
) -> tuple[str, str | None]:
    """Record what Stripe reports on the payment; the event's status and a note."""
    if kind not in HANDLED:
        return "ignored", f"no handler for {kind}"
    intent = event["data"]["object"]
    payment = connection.execute(FIND_PAYMENT, {"intent": intent["id"]}).first()
    if payment is None:
        return "processed", f"no payment row for PaymentIntent {intent['id']}"
    if payment.status in SETTLED:
        return "processed", f"payment {payment.id} is already {payment.status}"
    now = utcnow()
    if kind == "payment_intent.payment_failed":
        message = (intent.get("last_payment_error") or {}).get("message")
        _set_payment(connection, payment.id, "failed", now, message or "failed")
        return "processed", None
    received = intent.get("amount_received", intent["amount"])
    currency = str(intent["currency"]).lower()
    if received != payment.amount or currency != payment.currency:
        message = f"Stripe took {received} {currency}, expected {payment.amount}"
        _set_payment(connection, payment.id, "mismatch", now, message, received)
        return "processed", "amount or currency mismatch"
    _set_payment(connection, payment.id, "succeeded", now, None, received)
    connection.execute(PAY_ORDER, {"order_id": payment.order_id, "now": now})
    return "processed", None


def _set_payment(
    connection: Connection,
    payment_id: int,
    status: str,
    now: datetime,
    message: str | None,
    received: int | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "callback_processed": True,
        "failure_message": message,
        "updated_at": now,
    }
    if received is not None:
        values["amount_received"] = received
    connection.execute(SET_PAYMENT.values(values), {"payment_id": payment_id})


class Worker:
    """Processes stored events until stopped; `wake` ends an idle wait early."""

    def __init__(self, engine: Engine, wake: threading.Event) -> None:
        self.engine = engine
        self.wake = wake
        self.stopping = threading.Event()

    def run(self) -> None:
        """Process until stopped."""
        while not self.stopping.is_set():
            try:
                busy = process_next(self.engine)
            except Exception:
                log.exception("worker step failed")
                self.stopping.wait(2.0)
                continue
            if not busy:
                self.wake.wait(IDLE_SECONDS)
                self.wake.clear()

    def stop(self) -> None:
        """Stop after the event in progress."""
        self.stopping.set()
        self.wake.set()


def create_app(engine: Engine, secret: str, *, run_worker: bool) -> Starlette:
    """The webhook endpoint and a health check, with the worker in a thread."""
    wake = threading.Event()
    worker = Worker(engine, wake)
    dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    stored = (
        dialect_insert(EVENTS)
        .on_conflict_do_nothing(index_elements=["stripe_event_id"])
        .returning(EVENTS.c.id)
    )

    async def receive(request: Request) -> Response:
        body = await request.body()
        header = request.headers.get("stripe-signature")
        if not header:
            return _error(400, "the Stripe-Signature header is missing")
        try:
            text = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, header, secret, TOLERANCE_SECONDS
            )
            event = json.loads(text)
        except (UnicodeDecodeError, ValueError, stripe.SignatureVerificationError):
            return _error(400, "the body or its signature is not valid")
        if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
            return _error(400, "the body is not a Stripe event")
        new = await run_in_threadpool(store_event, engine, stored, event, text)
        if new:
            wake.set()
        log.info(
            "event received event=%s type=%s new=%s", event["id"], event["type"], new
        )
        return JSONResponse({"received": True, "duplicate": not new})

    async def healthz(request: Request) -> Response:
        def check() -> None:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")

        await run_in_threadpool(check)
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        thread = threading.Thread(target=worker.run, name="baseline-worker")
        if run_worker:
            thread.start()
        try:
            yield
        finally:
            if run_worker:
                worker.stop()
                thread.join(30)
            engine.dispose()

    return Starlette(
        routes=[
            Route("/webhooks/stripe", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"status": status, "message": message}}, status)


def main() -> None:
    """`serve` the endpoint (and worker), or run a `worker` alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "worker"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--no-worker", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    engine = create_db_engine(
        os.environ.get("ACTIONFLOW_DATABASE_URL", "sqlite:///baseline.db")
    )
    if options.command == "worker":
        worker = Worker(engine, threading.Event())
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        signal.signal(signal.SIGINT, lambda *_: worker.stop())
        worker.run()
        return
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set STRIPE_WEBHOOK_SECRET to the webhook signing secret")
    app = create_app(engine, secret, run_worker=not options.no_worker)
    uvicorn.run(app, host=options.host, port=options.port, access_log=False)


if __name__ == "__main__":
    main()
