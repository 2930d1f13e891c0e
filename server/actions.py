"""POST /actions/<name>: the payment actions.

stripe-payment charges an order once: at most one open PaymentIntent exists per
order. A second call while one is open answers with that same PaymentIntent,
also after a declined card (the customer tries again on the same intent), and a
payment row whose PaymentIntent could not be created is retried with its own
idempotency key, so a retried create never makes a second PaymentIntent. While
an intent is being paid (processing, succeeded, awaiting capture) no new one is
made: its webhook settles the payment.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from actionflow.engine import changes as change_log
from actionflow.engine import db
from actionflow.engine.errors import PaymentError, StripeCallError
from actionflow.engine.money import (
    check_chargeable,
    minor_unit_exponent,
    to_minor_units,
)
from actionflow.engine.stripe_gateway import StripeGateway
from actionflow.engine.tables import utcnow

from .auth import Principal, caller
from .http import ApiError, field, json_response, read_json
from .orders import PAYMENTS, check_owner, find_order
from .runtime import Runtime

log = logging.getLogger("actionflow.actions")

# PaymentIntent statuses in which the customer can still pay.
OPEN_INTENT = {"requires_payment_method", "requires_confirmation", "requires_action"}
# Statuses in which money is moving or moved: never replaced by a new intent.
PAID_INTENT = {"processing", "requires_capture", "succeeded"}
# Payment statuses whose PaymentIntent may still be paid.
UNSETTLED = ("pending", "failed")
# Payment statuses in which Stripe has taken the customer's money.
TOOK_MONEY = ("succeeded", "mismatch")


async def run_action(request: Request) -> Response:
    """Dispatch to the action named in the path."""
    runtime: Runtime = request.app.state.runtime
    principal = caller(request)
    name = request.path_params["name"]
    action = ACTIONS.get(name)
    if action is None:
        raise ApiError(
            404, f"unknown action {name!r}; actions are: {', '.join(sorted(ACTIONS))}"
        )
    data = await read_json(request)
    result = await run_in_threadpool(action, runtime, principal, data)
    return json_response(result)


def stripe_payment(
    runtime: Runtime, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    """Create (or reuse) the PaymentIntent that pays an order."""
    order_id = field(data, "orderId", int, "the order's id, an integer")
    currency = field(data, "currency", str, "an ISO currency code such as usd").lower()
    amount = field(
        data, "amount", int, "the amount in minor units, e.g. 1000 for 10.00 usd"
    )
    gateway = _gateway(runtime)
    with db.write(runtime.engine) as connection:
        order = _payable_order(runtime, connection, principal, order_id)
        _check_amount(order, currency, amount)
        _refuse_if_money_taken(connection, order_id)
        payment = _open_payment(connection, order_id) or _new_payment(
            connection, order_id, amount, currency
        )
    intent = _intent_for(runtime, gateway, payment)
    return {
        "paymentId": payment["id"],
        "clientSecret": intent["client_secret"],
        "publishableKey": runtime.settings.stripe_publishable_key,
        "stripePaymentIntentId": intent["id"],
    }


def _gateway(runtime: Runtime) -> StripeGateway:
    if runtime.gateway is None:
        raise ApiError(503, "Stripe is not configured; set STRIPE_SECRET_KEY")
    return runtime.gateway


def _payable_order(
    runtime: Runtime, connection: Connection, principal: Principal, order_id: int
) -> Any:
    # The row lock (PostgreSQL) or the write lock (SQLite) makes concurrent
    # calls for one order take turns, so they cannot both open a payment.
    order = find_order(connection, runtime.order_table, order_id, lock=True)
    check_owner(principal, order["user_id"])
    if order["status"] != "pending":
        raise ApiError(
            409, f"order {order_id} is {order['status']}; only a pending order is paid"
        )
    return order


def _check_amount(order: Any, currency: str, amount: int) -> None:
    if currency != order["currency"].lower():
        raise ApiError(
            400,
            f"currency {currency} does not match the order's currency "
            f"{order['currency']}",
        )
    price = _plain(order["price"], currency)
    try:
        expected = to_minor_units(price, currency)
        if amount != expected:
            raise ApiError(
                400,
                f"amount {amount} does not match the order's price {price} "
                f"{currency}, which is {expected} in minor units",
            )
        check_chargeable(amount, currency)
    except PaymentError as exc:
        raise ApiError(exc.status, exc.message) from None


def _plain(price: Any, currency: str) -> Any:
    """A stored price without its column's padding: 10.000000 usd -> 10.00."""
    if not isinstance(price, Decimal) or not price.is_finite():
        return price
    try:
        places = minor_unit_exponent(currency)
    except PaymentError:
        return price
    exponent = price.normalize().as_tuple().exponent
    if isinstance(exponent, int):
        places = max(places, -exponent)
    return price.quantize(Decimal(1).scaleb(-places))


def _refuse_if_money_taken(connection: Connection, order_id: int) -> None:
    """A pending order one of whose payments took money is not charged again.

    The order stays pending when an extension that marks it paid failed or is
    missing, and after a mismatch (Stripe took another amount); charging again
    would take the money twice. A payment refunded in full no longer counts.
    """
    query = (
        select(PAYMENTS)
        .where(
            PAYMENTS.c.order_id == order_id,
            PAYMENTS.c.status.in_(TOOK_MONEY),
            func.coalesce(PAYMENTS.c.amount_received, PAYMENTS.c.amount)
            > PAYMENTS.c.refunded_amount,
        )
        .order_by(PAYMENTS.c.id)
        .limit(1)
    )
    taken = connection.execute(query).mappings().first()
    if taken is None:
        return
    received = taken["amount_received"] or taken["amount"]
    raise ApiError(
        409,
        f"order {order_id} already has payment {taken['id']} ({taken['status']}, "
        f"{received} {taken['currency']} taken by Stripe); a second charge would "
        "take the money twice: settle or refund that payment first",
    )


def _open_payment(connection: Connection, order_id: int) -> dict[str, Any] | None:
    query = (
        select(PAYMENTS)
        .where(PAYMENTS.c.order_id == order_id, PAYMENTS.c.status.in_(UNSETTLED))
        .order_by(PAYMENTS.c.id.desc())
        .limit(1)
    )
    row = connection.execute(query).mappings().first()
    return dict(row) if row is not None else None


def _new_payment(
    connection: Connection, order_id: int, amount: int, currency: str
) -> dict[str, Any]:
    now = utcnow()
    values = {
        "order_id": order_id,
        "amount": amount,
        "currency": currency,
        "status": "pending",
        "callback_processed": False,
        "refunded_amount": 0,
        "created_at": now,
        "updated_at": now,
    }
    result = connection.execute(insert(PAYMENTS).values(values).returning(PAYMENTS))
    row = dict(result.mappings().one())
    change_log.record(connection, "payment", row)
    return row


def _intent_for(
    runtime: Runtime, gateway: StripeGateway, payment: dict[str, Any]
) -> dict[str, Any]:
    if payment["stripe_payment_intent_id"]:
        return _existing_intent(runtime, gateway, payment)
    try:
        intent = gateway.create_payment_intent(
            amount=payment["amount"],
            currency=payment["currency"],
            metadata={
                "order_id": str(payment["order_id"]),
                "payment_id": str(payment["id"]),
            },
            idempotency_key=runtime.idempotency_key("payment", payment["id"]),
        )
    except StripeCallError as exc:
        if exc.status < 500:
            _close_payment(runtime, payment["id"], exc.message)
        raise ApiError(exc.status, exc.message) from None
    _check_intent(payment, intent)
    with db.write(runtime.engine) as connection:
        _update_payment(
            connection, payment["id"], stripe_payment_intent_id=intent["id"]
        )
    log.info("payment intent created payment=%s intent=%s", payment["id"], intent["id"])
    return intent


def _existing_intent(
    runtime: Runtime, gateway: StripeGateway, payment: dict[str, Any]
) -> dict[str, Any]:
    intent = _call(gateway.retrieve_payment_intent, payment["stripe_payment_intent_id"])
    _check_intent(payment, intent)
    status = intent["status"]
    if status in OPEN_INTENT:
        if payment["status"] == "failed":
            # A declined card leaves the intent open: the customer retries on it.
            with db.write(runtime.engine) as connection:
                _update_payment(
                    connection, payment["id"], status="pending", failure_message=None
                )
        return intent
    if status in PAID_INTENT:
        raise ApiError(
            409,
            f"payment {payment['id']} is being paid (its PaymentIntent is {status}); "
            "its webhook will settle it, so no new payment is started",
        )
    _close_payment(runtime, payment["id"], f"PaymentIntent is {status}")
    raise ApiError(
        409,
        f"payment {payment['id']} can no longer be paid (its PaymentIntent is "
        f"{status}); call the action again to start a new payment",
    )


def _check_intent(payment: dict[str, Any], intent: dict[str, Any]) -> None:
    """Refuse a PaymentIntent that is not the one this payment asked for."""
    metadata = intent.get("metadata") or {}
    expected = (payment["amount"], payment["currency"], str(payment["id"]))
    found = (intent.get("amount"), intent.get("currency"), metadata.get("payment_id"))
    if found != expected:
        log.error(
            "payment intent does not match payment=%s intent=%s",
            payment["id"],
            intent.get("id"),
        )
        raise ApiError(
            502,
            f"Stripe answered with PaymentIntent {intent.get('id')} for "
            f"{found[0]} {found[1]} (payment {found[2]}), but payment "
            f"{payment['id']} is for {payment['amount']} {payment['currency']}; "
            "nothing was charged, and the payment is left as it was",
        )


def _call(function: Any, *args: Any) -> dict[str, Any]:
    try:
        return function(*args)  # type: ignore[no-any-return]
    except StripeCallError as exc:
        raise ApiError(exc.status, exc.message) from None


def _close_payment(runtime: Runtime, payment_id: int, reason: str) -> None:
    """A payment that can never be paid is canceled, so the next call starts afresh."""
    with db.write(runtime.engine) as connection:
        _update_payment(
            connection, payment_id, status="canceled", failure_message=reason
        )


def _update_payment(connection: Connection, payment_id: int, **values: Any) -> None:
    """Change an unsettled payment, logging the change for subscribers."""
    query = (
        update(PAYMENTS)
        .where(PAYMENTS.c.id == payment_id, PAYMENTS.c.status.in_(UNSETTLED))
        .values(**values, updated_at=utcnow())
        .returning(PAYMENTS)
    )
    row = connection.execute(query).mappings().first()
    if row is not None:
        change_log.record(connection, "payment", dict(row))


ACTIONS = {"stripe-payment": stripe_payment}

# The other actions live in modules of their own and use the helpers above.
from .refunds import stripe_refund  # noqa: E402
from .subscriptions import (  # noqa: E402
    stripe_subscription,
    stripe_subscription_cancel,
)

ACTIONS.update(
    {
        "stripe-refund": stripe_refund,
        "stripe-subscription": stripe_subscription,
        "stripe-subscription-cancel": stripe_subscription_cancel,
    }
)
