"""The subscription actions: start one for an order, cancel one.

A subscription gets its recurring payment row first; the row's id goes into
the Stripe subscription's metadata and into the idempotency key, so a retried
start never makes a second subscription, and a webhook that arrives before
the answer finds its row. Each user has one Stripe customer, created once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from actionflow.engine import changes as change_log
from actionflow.engine import db
from actionflow.engine.errors import StripeCallError
from actionflow.engine.stripe_gateway import StripeGateway
from actionflow.engine.tables import StripeCustomer, utcnow

from .actions import _gateway
from .auth import Principal
from .http import ApiError, field
from .orders import RECURRING, check_owner, find_order
from .runtime import Runtime

log = logging.getLogger("actionflow.subscriptions")

CUSTOMERS: Table = StripeCustomer.__table__  # type: ignore[attr-defined]
# Subscription statuses after which nothing more happens.
ENDED = ("canceled", "incomplete_expired", "failed")


def stripe_subscription(
    runtime: Runtime, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    """Start a Stripe subscription to `priceId` for order `orderId`."""
    order_id = field(data, "orderId", int, "the order's id, an integer")
    price_id = field(data, "priceId", str, "a Stripe price id such as price_123")
    if not price_id.strip():
        raise ApiError(400, "priceId must be a Stripe price id such as price_123")
    gateway = _gateway(runtime)
    with db.write(runtime.engine) as connection:
        order = find_order(connection, runtime.order_table, order_id, lock=True)
        user_id = str(order["user_id"])
        check_owner(principal, user_id)
        if order["status"] != "pending":
            raise ApiError(
                409,
                f"order {order_id} is {order['status']}; only a pending order "
                "starts a subscription",
            )
        recurring = _recurring_for(connection, order_id, user_id, price_id)
    customer = _customer_for(runtime, gateway, user_id)
    try:
        subscription = gateway.create_subscription(
            customer=customer,
            price=price_id,
            metadata={
                "order_id": str(order_id),
                "recurring_payment_id": str(recurring["id"]),
                "user_id": user_id,
            },
            idempotency_key=runtime.idempotency_key("subscription", recurring["id"]),
        )
    except StripeCallError as exc:
        _failed(runtime, recurring["id"], exc)
    _record_subscription(runtime, recurring["id"], customer, subscription)
    log.info(
        "subscription created recurring_payment=%s subscription=%s status=%s",
        recurring["id"],
        subscription["id"],
        subscription.get("status"),
    )
    return {
        "recurringPaymentId": recurring["id"],
        "orderId": order_id,
        "stripeSubscriptionId": subscription["id"],
        "stripeCustomerId": customer,
        "status": subscription.get("status"),
        "latestInvoice": _id_of(subscription.get("latest_invoice")),
    }


def _recurring_for(
    connection: Connection, order_id: int, user_id: str, price_id: str
) -> dict[str, Any]:
    rows = connection.execute(
        select(RECURRING)
        .where(RECURRING.c.order_id == order_id, RECURRING.c.status.not_in(ENDED))
        .order_by(RECURRING.c.id)
    ).mappings()
    for row in rows:
        if row["stripe_subscription_id"]:
            raise ApiError(
                409,
                f"order {order_id} already has subscription "
                f"{row['stripe_subscription_id']} (recurring payment {row['id']}, "
                f"{row['status']}); cancel it first",
            )
        if row["stripe_price_id"] == price_id:
            return dict(row)  # an earlier attempt that got no answer: retry it
    now = utcnow()
    values = {
        "order_id": order_id,
        "user_id": user_id,
        "status": "incomplete",
        "stripe_price_id": price_id,
        "cancel_at_period_end": False,
        "callback_processed": False,
        "last_event_at": 0,
        "created_at": now,
        "updated_at": now,
    }
    result = connection.execute(insert(RECURRING).values(values).returning(RECURRING))
    row = dict(result.mappings().one())
    change_log.record(connection, "recurring_payment", row)
    return row


def _customer_for(runtime: Runtime, gateway: StripeGateway, user_id: str) -> str:
    with db.read(runtime.engine) as connection:
        found = _stored_customer(connection, user_id)
    if found is not None:
        return found
    try:
        customer = gateway.create_customer(
            metadata={"user_id": user_id},
            idempotency_key=runtime.idempotency_key("customer", user_id),
        )
    except StripeCallError as exc:
        raise ApiError(exc.status, exc.message) from None
    with db.write(runtime.engine) as connection:
        builder = (
            pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        )
        connection.execute(
            builder(CUSTOMERS)
            .values(
                user_id=user_id, stripe_customer_id=customer["id"], created_at=utcnow()
            )
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        stored = _stored_customer(connection, user_id)
    assert stored is not None  # inserted just now, or by a concurrent call
    return stored


def _stored_customer(connection: Connection, user_id: str) -> str | None:
    return connection.execute(  # type: ignore[no-any-return]
        select(CUSTOMERS.c.stripe_customer_id).where(CUSTOMERS.c.user_id == user_id)
    ).scalar_one_or_none()


def _failed(runtime: Runtime, recurring_id: int, exc: StripeCallError) -> NoReturn:
    if exc.status < 500:
        with db.write(runtime.engine) as connection:
            connection.execute(
                update(RECURRING)
                .where(
                    RECURRING.c.id == recurring_id,
                    RECURRING.c.stripe_subscription_id.is_(None),
                )
                .values(status="failed", updated_at=utcnow())
            )
            change_log.record_row(connection, "recurring_payment", recurring_id)
    raise ApiError(exc.status, exc.message) from None


def _record_subscription(
    runtime: Runtime, recurring_id: int, customer: str, subscription: dict[str, Any]
) -> None:
    with db.write(runtime.engine) as connection:
        connection.execute(
            update(RECURRING)
            .where(RECURRING.c.id == recurring_id)
            .values(
                stripe_subscription_id=subscription["id"],
                stripe_customer_id=customer,
                updated_at=utcnow(),
            )
        )
        # Webhooks are the record of the status; the answer only fills in a
        # row no event has touched yet.
        connection.execute(
            update(RECURRING)
            .where(RECURRING.c.id == recurring_id, RECURRING.c.last_event_at == 0)
            .values(**_state(subscription))
        )
        change_log.record_row(connection, "recurring_payment", recurring_id)


def stripe_subscription_cancel(
    runtime: Runtime, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    """Cancel a subscription now, or at the end of its paid period."""
    recurring_id = field(
        data, "recurringPaymentId", int, "the recurring payment's id, an integer"
    )
    at_period_end = field(
        data, "atPeriodEnd", bool, "true to cancel at the end of the period paid for"
    )
    gateway = _gateway(runtime)
    with db.read(runtime.engine) as connection:
        row = _cancelable(connection, principal, recurring_id)
    when = "period-end" if at_period_end else "now"
    try:
        subscription = gateway.cancel_subscription(
            row["stripe_subscription_id"],
            at_period_end=at_period_end,
            idempotency_key=runtime.idempotency_key("cancel", f"{recurring_id}-{when}"),
        )
    except StripeCallError as exc:
        raise ApiError(exc.status, exc.message) from None
    state = _state(subscription)
    with db.write(runtime.engine) as connection:
        connection.execute(
            update(RECURRING)
            .where(RECURRING.c.id == recurring_id, RECURRING.c.status.not_in(ENDED))
            .values(**state)
        )
        change_log.record_row(connection, "recurring_payment", recurring_id)
    log.info(
        "subscription cancel requested recurring_payment=%s at_period_end=%s",
        recurring_id,
        at_period_end,
    )
    return {
        "recurringPaymentId": recurring_id,
        "stripeSubscriptionId": subscription["id"],
        "status": state["status"],
        "cancelAtPeriodEnd": state["cancel_at_period_end"],
    }


def _cancelable(
    connection: Connection, principal: Principal, recurring_id: int
) -> dict[str, Any]:
    row = (
        connection.execute(select(RECURRING).where(RECURRING.c.id == recurring_id))
        .mappings()
        .first()
    )
    if row is None:
        raise ApiError(404, f"recurring payment {recurring_id} does not exist")
    if not principal.is_admin and principal.user_id != row["user_id"]:
        raise ApiError(403, "this subscription belongs to another user")
    if not row["stripe_subscription_id"]:
        raise ApiError(
            409, f"recurring payment {recurring_id} has no Stripe subscription"
        )
    if row["status"] in ENDED:
        raise ApiError(
            409, f"recurring payment {recurring_id} is already {row['status']}"
        )
    return dict(row)


def _state(subscription: dict[str, Any]) -> dict[str, Any]:
    """The columns a subscription object sets, read in either API shape."""
    return {
        "status": str(subscription.get("status") or "incomplete"),
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "current_period_end": _timestamp(period_end(subscription)),
        "ended_at": _timestamp(subscription.get("ended_at")),
        "updated_at": utcnow(),
    }


def period_end(subscription: dict[str, Any]) -> int | None:
    """The current period's end: on the items since 2025, on the subscription before."""
    value = subscription.get("current_period_end")
    if isinstance(value, int):
        return value
    items = (subscription.get("items") or {}).get("data") or []
    ends = [item.get("current_period_end") for item in items if isinstance(item, dict)]
    known = [end for end in ends if isinstance(end, int)]
    return min(known) if known else None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("id"))
    return str(value) if value else None
