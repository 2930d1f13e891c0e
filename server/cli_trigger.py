"""`actionflow trigger TYPE`: send a realistic, signed Stripe event to a running server.

For trying the whole path without a Stripe account: the event is built from
the rows in the configured database, signed with the configured webhook secret
and posted to the server's webhook endpoint, exactly as Stripe would deliver it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import click
import httpx
from sqlalchemy import Connection, Engine, insert, select

from actionflow.engine import db, sample_events
from actionflow.engine.errors import ActionflowError
from actionflow.engine.money import to_minor_units
from actionflow.engine.redact import redact
from actionflow.engine.tables import Order, Payment, RecurringPayment, utcnow

from .cli_params import AMOUNT, ROW_ID
from .config import Settings, load_settings

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
RECURRING = RecurringPayment.__table__  # type: ignore[attr-defined]
WEBHOOK_PATH = "/webhooks/stripe"


@click.command()
@click.argument("event_type", metavar="TYPE")
@click.option(
    "--order", "order_id", type=ROW_ID, help="Build the event for this order."
)
@click.option("--payment", "payment_id", type=ROW_ID, help="... or for this payment.")
@click.option(
    "--recurring-payment",
    "recurring_id",
    type=ROW_ID,
    help="... or this recurring payment.",
)
@click.option(
    "--amount", type=AMOUNT, help="Refund amount in minor units (charge.refunded)."
)
@click.option(
    "--billing-reason",
    type=click.Choice(sample_events.BILLING_REASONS),
    default="subscription_cycle",
    show_default=True,
    help="For invoice events: subscription_cycle (a renewal), "
    "subscription_create (the first invoice), or another of Stripe's reasons.",
)
@click.option(
    "--url",
    default=f"http://127.0.0.1:8000{WEBHOOK_PATH}",
    show_default=True,
    help="The running server's webhook endpoint.",
)
@click.option("--config", type=click.Path(dir_okay=False), help="Config file.")
def trigger(
    event_type: str,
    order_id: int | None,
    payment_id: int | None,
    recurring_id: int | None,
    amount: int | None,
    billing_reason: str,
    url: str,
    config: str | None,
) -> None:
    """Build a TYPE event for a row of the database, sign it, and post it to --url."""
    settings = load_settings(Path(config) if config else None)
    _refuse_live_keys(settings)
    kind = sample_events.needs(event_type)
    # Before any row is written: a test payment made for a server that is not
    # there would be left behind.
    _check_endpoint(url)
    engine = db.create_db_engine(settings.database_url)
    try:
        db.prepare(engine)
        row = _row(engine, kind, order_id, payment_id, recurring_id)
        options = _options(engine, kind, row, amount, billing_reason)
        event = sample_events.build(event_type, row, **options)
        secret = _secret(settings, engine)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    payload = json.dumps(event)
    header = _signature(payload, secret)
    answer = _post(url, payload, header)
    click.echo(f"sent {event_type} {event['id']} -> HTTP {answer.status_code}")
    if answer.status_code == 404:
        raise click.ClickException(_not_found(url))
    if answer.status_code >= 300:
        click.echo(redact(answer.text[:2000]), err=True)
        raise SystemExit(1)


def _refuse_live_keys(settings: Settings) -> None:
    key = settings.stripe_secret_key or ""
    if key.startswith(("sk_live_", "rk_live_")):
        raise click.ClickException(
            "trigger sends made-up events; it refuses to run with a live Stripe key"
        )


def _row(
    engine: Engine,
    kind: str,
    order_id: int | None,
    payment_id: int | None,
    recurring_id: int | None,
) -> dict[str, Any]:
    with db.write(engine) as connection:
        if kind == "payment":
            return _payment(connection, order_id, payment_id)
        return _recurring(connection, order_id, recurring_id)


def _payment(
    connection: Connection, order_id: int | None, payment_id: int | None
) -> dict[str, Any]:
    if payment_id is not None:
        row = (
            connection.execute(select(PAYMENTS).where(PAYMENTS.c.id == payment_id))
            .mappings()
            .first()
        )
        if row is None:
            raise ActionflowError(f"payment {payment_id} does not exist")
        if not row["stripe_payment_intent_id"]:
            raise ActionflowError(f"payment {payment_id} has no PaymentIntent yet")
        return dict(row)
    if order_id is None:
        raise ActionflowError("name the row: --order ID or --payment ID")
    query = (
        select(PAYMENTS)
        .where(
            PAYMENTS.c.order_id == order_id,
            PAYMENTS.c.stripe_payment_intent_id.is_not(None),
        )
        .order_by(PAYMENTS.c.id.desc())
    )
    row = connection.execute(query).mappings().first()
    return dict(row) if row is not None else _test_payment(connection, order_id)


def _test_payment(connection: Connection, order_id: int) -> dict[str, Any]:
    """An order with no payment yet gets one, as the payment action would make it."""
    order = (
        connection.execute(select(ORDERS).where(ORDERS.c.id == order_id))
        .mappings()
        .first()
    )
    if order is None:
        raise ActionflowError(f"order {order_id} does not exist")
    now = utcnow()
    values = {
        "order_id": order_id,
        "amount": to_minor_units(order["price"], order["currency"]),
        "currency": order["currency"].lower(),
        "status": "pending",
        "callback_processed": False,
        "stripe_payment_intent_id": f"pi_trigger_{secrets.token_hex(10)}",
        "refunded_amount": 0,
        "created_at": now,
        "updated_at": now,
    }
    row = (
        connection.execute(insert(PAYMENTS).values(values).returning(PAYMENTS))
        .mappings()
        .one()
    )
    click.echo(
        f"created payment {row['id']} for order {order_id} (no Stripe call was made)"
    )
    return dict(row)


def _recurring(
    connection: Connection, order_id: int | None, recurring_id: int | None
) -> dict[str, Any]:
    query = select(RECURRING)
    if recurring_id is not None:
        query = query.where(RECURRING.c.id == recurring_id)
    elif order_id is not None:
        query = query.where(RECURRING.c.order_id == order_id).order_by(
            RECURRING.c.id.desc()
        )
    else:
        raise ActionflowError("name the row: --recurring-payment ID or --order ID")
    row = connection.execute(query).mappings().first()
    if row is None or not row["stripe_subscription_id"]:
        raise ActionflowError("no recurring payment with a Stripe subscription matches")
    return dict(row)


def _options(
    engine: Engine,
    kind: str,
    row: dict[str, Any],
    amount: int | None,
    billing_reason: str,
) -> dict[str, Any]:
    if kind == "payment":
        return {"amount": amount}
    with db.read(engine) as connection:
        order = (
            connection.execute(select(ORDERS).where(ORDERS.c.id == row["order_id"]))
            .mappings()
            .one()
        )
    currency = order["currency"].lower()
    return {
        "amount": amount or to_minor_units(order["price"], currency),
        "currency": currency,
        "billing_reason": billing_reason,
    }


def _secret(settings: Settings, engine: Engine) -> str:
    if settings.webhook_secrets:
        return settings.webhook_secrets[0]
    from .app import generated_secret

    return generated_secret(engine, "webhook_secret", "whsec_")


def _signature(payload: str, secret: str) -> str:
    """Stripe's documented scheme: HMAC-SHA256 of "timestamp.payload"."""
    timestamp = int(time.time())
    message = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _check_endpoint(url: str) -> None:
    """Refuse a --url that is not an HTTP address, or where no server answers."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise click.BadParameter(
            f"{url[:200]!r} is not an http:// or https:// address; give the "
            "server's webhook endpoint, such as http://127.0.0.1:8000/webhooks/stripe",
            param_hint="--url",
        )
    try:
        # The endpoint takes only POST: a running server answers 405 here, and
        # 404 only when the path is wrong.
        answer = httpx.get(url, timeout=10)
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach {url}: {type(exc).__name__}; is the server running?"
        ) from None
    if answer.status_code == 404:
        raise click.ClickException(_not_found(url))


def _not_found(url: str) -> str:
    origin = httpx.URL(url).copy_with(path="/", query=None, fragment=None)
    endpoint = str(origin).rstrip("/") + WEBHOOK_PATH
    return (
        f"the server at {url} answered HTTP 404: nothing is there; give the full "
        f"webhook endpoint, such as {endpoint}"
    )


def _post(url: str, payload: str, header: str) -> httpx.Response:
    try:
        return httpx.post(
            url,
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": header},
            timeout=10,
        )
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach {url}: {type(exc).__name__}; is the server running?"
        ) from None
