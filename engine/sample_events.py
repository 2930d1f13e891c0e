"""Realistic Stripe events built from our own rows, for `trigger` and dry runs.

The objects follow Stripe's current API shape (an invoice names its
subscription under `parent.subscription_details`; a subscription's billing
period lives on its items). Only the fields flows are likely to read are filled.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import stripe

from .errors import ActionflowError

Row = dict[str, Any]
MONTH = 30 * 24 * 3600


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def envelope(kind: str, obj: Row, *, created: int | None = None) -> Row:
    """Wrap `obj` as the event Stripe would send for `kind`."""
    return {
        "id": _id("evt"),
        "object": "event",
        "api_version": stripe.api_version,
        "created": created or int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def payment_intent(payment: Row, status: str) -> Row:
    """The PaymentIntent of a payment row, in `status`."""
    succeeded = status == "succeeded"
    error = None
    if status == "requires_payment_method":
        error = {
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "type": "card_error",
        }
    return {
        "id": payment["stripe_payment_intent_id"],
        "object": "payment_intent",
        "amount": payment["amount"],
        "amount_received": payment["amount"] if succeeded else 0,
        "currency": payment["currency"],
        "status": status,
        "capture_method": "automatic",
        "latest_charge": _id("ch"),
        "last_payment_error": error,
        "livemode": False,
        "metadata": {
            "order_id": str(payment["order_id"]),
            "payment_id": str(payment["id"]),
        },
        "created": int(time.time()),
    }


def charge_refunded(payment: Row, amount: int) -> Row:
    """The Charge of a payment after `amount` was refunded."""
    refund = {
        "id": _id("re"),
        "object": "refund",
        "amount": amount,
        "currency": payment["currency"],
        "payment_intent": payment["stripe_payment_intent_id"],
        "status": "succeeded",
        "reason": "requested_by_customer",
        "metadata": {},
        "created": int(time.time()),
    }
    refunded = payment.get("refunded_amount") or 0
    return {
        "id": _id("ch"),
        "object": "charge",
        "amount": payment["amount"],
        "amount_captured": payment["amount"],
        "amount_refunded": refunded + amount,
        "currency": payment["currency"],
        "paid": True,
        "captured": True,
        "refunded": refunded + amount >= payment["amount"],
        "status": "succeeded",
        "payment_intent": payment["stripe_payment_intent_id"],
        "metadata": {},
        "refunds": {"object": "list", "data": [refund], "has_more": False},
        "created": int(time.time()),
    }


def subscription(recurring: Row, status: str) -> Row:
    """The Subscription of a recurring payment row, in `status`."""
    now = int(time.time())
    item = {
        "id": _id("si"),
        "object": "subscription_item",
        "current_period_start": now,
        "current_period_end": now + MONTH,
        "price": {
            "id": recurring.get("stripe_price_id") or _id("price"),
            "object": "price",
        },
        "quantity": 1,
        "subscription": recurring["stripe_subscription_id"],
    }
    return {
        "id": recurring["stripe_subscription_id"],
        "object": "subscription",
        "customer": recurring.get("stripe_customer_id") or _id("cus"),
        "status": status,
        "cancel_at_period_end": False,
        "canceled_at": now if status == "canceled" else None,
        "ended_at": now if status == "canceled" else None,
        "items": {"object": "list", "data": [item], "has_more": False},
        "metadata": {
            "order_id": str(recurring["order_id"]),
            "recurring_payment_id": str(recurring["id"]),
        },
        "created": now,
    }


# The values of an Invoice's billing_reason, from Stripe's API reference.
BILLING_REASONS = (
    "automatic_pending_invoice_item_invoice",
    "manual",
    "quote_accept",
    "subscription",
    "subscription_create",
    "subscription_cycle",
    "subscription_threshold",
    "subscription_update",
    "upcoming",
)


def invoice(
    recurring: Row, status: str, billing_reason: str, amount: int, currency: str
) -> Row:
    """An Invoice of a recurring payment's subscription."""
    now = int(time.time())
    paid = status == "paid"
    return {
        "id": _id("in"),
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": 1,
        "billing_reason": billing_reason,
        "currency": currency,
        "customer": recurring.get("stripe_customer_id") or _id("cus"),
        "status": status,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": {"order_id": str(recurring["order_id"])},
                "subscription": recurring["stripe_subscription_id"],
            },
        },
        "period_start": now,
        "period_end": now + MONTH,
        "lines": {"object": "list", "data": [], "has_more": False},
        "metadata": {},
        "created": now,
    }


Builder = Callable[..., Row]

# Event type -> (the row it is built from, how to build its object).
PAYMENT_EVENTS = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "requires_payment_method",
    "payment_intent.canceled": "canceled",
}
SUBSCRIPTION_EVENTS = {
    "customer.subscription.created": "incomplete",
    "customer.subscription.updated": "active",
    "customer.subscription.deleted": "canceled",
}
INVOICE_EVENTS = {
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.payment_failed": "open",
    "invoice.payment_action_required": "open",
}
REFUND_EVENTS = {"charge.refunded"}
KNOWN = sorted({*PAYMENT_EVENTS, *SUBSCRIPTION_EVENTS, *INVOICE_EVENTS, *REFUND_EVENTS})


def needs(kind: str) -> str:
    """Which row an event of `kind` is built from: payment or recurring_payment."""
    if kind in PAYMENT_EVENTS or kind in REFUND_EVENTS:
        return "payment"
    if kind in SUBSCRIPTION_EVENTS or kind in INVOICE_EVENTS:
        return "recurring_payment"
    raise ActionflowError(
        f"cannot build a {kind} event; buildable types are: {', '.join(KNOWN)}"
    )


def build(kind: str, row: Row, **options: Any) -> Row:
    """The event of type `kind` for `row` (a payment or a recurring payment)."""
    if kind in PAYMENT_EVENTS:
        return envelope(kind, payment_intent(row, PAYMENT_EVENTS[kind]))
    if kind in REFUND_EVENTS:
        amount = options.get("amount") or row["amount"] - (
            row.get("refunded_amount") or 0
        )
        return envelope(kind, charge_refunded(row, amount))
    if kind in SUBSCRIPTION_EVENTS:
        return envelope(
            kind, subscription(row, options.get("status") or SUBSCRIPTION_EVENTS[kind])
        )
    if kind in INVOICE_EVENTS:
        obj = invoice(
            row,
            INVOICE_EVENTS[kind],
            options.get("billing_reason") or "subscription_cycle",
            options["amount"],
            options["currency"],
        )
        return envelope(kind, obj)
    needs(kind)
    raise AssertionError("unreachable")
