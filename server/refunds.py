"""The stripe-refund action: return part or all of a succeeded payment.

What may still be refunded is the amount paid minus every refund that
succeeded or may still succeed (pending, requires_action). The check and the
insert of the pending refund row happen in one transaction that holds the
payment's row lock (PostgreSQL) or the database write lock (SQLite), so two
concurrent refunds cannot together pass the limit. A failed refund no longer
counts, which gives its amount back.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from sqlalchemy import Connection, func, insert, select, update

from actionflow.engine import changes as change_log
from actionflow.engine import db
from actionflow.engine.errors import PaymentError, StripeCallError
from actionflow.engine.money import amount_step
from actionflow.engine.tables import utcnow

from .actions import _gateway
from .auth import Principal
from .http import ApiError, field
from .orders import PAYMENTS, REFUNDS
from .runtime import Runtime

log = logging.getLogger("actionflow.refunds")

# Refund statuses that hold part of the payment: done, or perhaps still to come.
HOLDING = ("pending", "requires_action", "succeeded")


def stripe_refund(
    runtime: Runtime, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    """Refund `refundAmount` minor units of payment `paymentId` (admins only)."""
    if not principal.is_admin:
        raise ApiError(403, "only an admin may refund a payment")
    payment_id = field(data, "paymentId", int, "the payment's id, an integer")
    amount = field(
        data,
        "refundAmount",
        int,
        "the amount to refund in minor units, e.g. 500 for 5.00 usd",
    )
    gateway = _gateway(runtime)
    with db.write(runtime.engine) as connection:
        payment = _refundable_payment(connection, payment_id)
        _check_amount(connection, payment, amount)
        refund = _new_refund(connection, payment, amount)
    try:
        answer = gateway.create_refund(
            payment_intent=payment["stripe_payment_intent_id"],
            amount=amount,
            metadata={
                "refund_id": str(refund["id"]),
                "payment_id": str(payment_id),
                "order_id": str(payment["order_id"]),
            },
            idempotency_key=runtime.idempotency_key("refund", refund["id"]),
        )
    except StripeCallError as exc:
        _stripe_refused(runtime, refund["id"], exc)
    stored = _record_answer(runtime, refund["id"], payment_id, answer)
    log.info(
        "refund created refund=%s payment=%s stripe_refund=%s status=%s",
        refund["id"],
        payment_id,
        answer.get("id"),
        stored["status"],
    )
    return {
        "refundId": refund["id"],
        "paymentId": payment_id,
        "stripeRefundId": answer.get("id"),
        "amount": amount,
        "currency": payment["currency"],
        "status": stored["status"],
    }


def _refundable_payment(connection: Connection, payment_id: int) -> dict[str, Any]:
    query = select(PAYMENTS).where(PAYMENTS.c.id == payment_id).with_for_update()
    payment = connection.execute(query).mappings().first()
    if payment is None:
        raise ApiError(404, f"payment {payment_id} does not exist")
    if payment["status"] != "succeeded":
        raise ApiError(
            409,
            f"payment {payment_id} is {payment['status']}; "
            "only a succeeded payment can be refunded",
        )
    if not payment["stripe_payment_intent_id"]:
        raise ApiError(
            409,
            f"payment {payment_id} has no Stripe PaymentIntent to refund; "
            "refund it in the Stripe Dashboard",
        )
    return dict(payment)


def _check_amount(connection: Connection, payment: dict[str, Any], amount: int) -> None:
    currency = payment["currency"]
    if amount <= 0:
        raise ApiError(400, f"refundAmount must be positive, got {amount}")
    try:
        step = amount_step(currency)
    except PaymentError as exc:
        raise ApiError(400, exc.message) from None
    if amount % step:
        raise ApiError(
            400,
            f"refundAmount {amount} cannot be refunded in {currency}: amounts must "
            f"be a multiple of {step}",
        )
    paid = payment["amount_received"] or payment["amount"]
    held = connection.execute(
        select(func.coalesce(func.sum(REFUNDS.c.amount), 0)).where(
            REFUNDS.c.payment_id == payment["id"], REFUNDS.c.status.in_(HOLDING)
        )
    ).scalar_one()
    left = paid - int(held)
    if amount > left:
        raise ApiError(
            400,
            f"refundAmount {amount} is more than what is left to refund on payment "
            f"{payment['id']}: {paid} paid, {held} refunded or pending, {left} left",
        )


def _new_refund(
    connection: Connection, payment: dict[str, Any], amount: int
) -> dict[str, Any]:
    now = utcnow()
    values = {
        "payment_id": payment["id"],
        "amount": amount,
        "currency": payment["currency"],
        "status": "pending",
        "callback_processed": False,
        "created_at": now,
        "updated_at": now,
    }
    result = connection.execute(insert(REFUNDS).values(values).returning(REFUNDS))
    row = dict(result.mappings().one())
    change_log.record(connection, "refund", row)
    return row


def _stripe_refused(runtime: Runtime, refund_id: int, exc: StripeCallError) -> NoReturn:
    if exc.status >= 500:
        # Stripe may have made the refund: it stays pending (and holds its
        # amount) until Stripe's refund events settle it.
        raise ApiError(
            exc.status,
            f"{exc.message}; refund {refund_id} stays pending until Stripe's "
            "refund events settle it",
        ) from None
    with db.write(runtime.engine) as connection:
        connection.execute(
            update(REFUNDS)
            .where(REFUNDS.c.id == refund_id, REFUNDS.c.status == "pending")
            .values(status="failed", failure_reason=exc.message, updated_at=utcnow())
        )
        change_log.record_row(connection, "refund", refund_id)
    raise ApiError(exc.status, exc.message) from None


def _record_answer(
    runtime: Runtime, refund_id: int, payment_id: int, answer: dict[str, Any]
) -> dict[str, Any]:
    status = str(answer.get("status") or "pending")
    with db.write(runtime.engine) as connection:
        connection.execute(
            update(REFUNDS)
            .where(REFUNDS.c.id == refund_id)
            .values(stripe_refund_id=answer["id"], updated_at=utcnow())
        )
        # A refund event may have settled the row already; only a pending
        # row takes the status of the answer.
        connection.execute(
            update(REFUNDS)
            .where(REFUNDS.c.id == refund_id, REFUNDS.c.status == "pending")
            .values(status=status)
        )
        update_refunded_amount(connection, payment_id)
        change_log.record_row(connection, "refund", refund_id)
        change_log.record_row(connection, "payment", payment_id)
        row = connection.execute(select(REFUNDS).where(REFUNDS.c.id == refund_id))
        return dict(row.mappings().one())


def update_refunded_amount(connection: Connection, payment_id: int) -> int:
    """Set the payment's refunded amount to the sum of its succeeded refunds.

    The payment row is locked first (PostgreSQL), so two refunds settling at
    once take turns and the second sums the first's row too; without the lock
    both would sum what was committed before either and one would be lost.
    """
    connection.execute(
        select(PAYMENTS.c.id).where(PAYMENTS.c.id == payment_id).with_for_update()
    )
    total = connection.execute(
        select(func.coalesce(func.sum(REFUNDS.c.amount), 0)).where(
            REFUNDS.c.payment_id == payment_id, REFUNDS.c.status == "succeeded"
        )
    ).scalar_one()
    connection.execute(
        update(PAYMENTS)
        .where(PAYMENTS.c.id == payment_id)
        .values(refunded_amount=int(total), updated_at=utcnow())
    )
    return int(total)
