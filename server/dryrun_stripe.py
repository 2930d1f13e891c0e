"""What a dry run needs for Stripe: the steps that call it, and what is known.

The stand-in's answers without fixtures start from what the payment tables
know of an object; idempotency keys need the database's installation id, read
here without generating one (a dry run writes nothing).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import Flow
from actionflow.engine.secrets import ENV_PREFIX as SECRET_PREFIX
from actionflow.engine.secrets import Secrets
from actionflow.engine.steps.stripe import answer_schema
from actionflow.engine.stripe_standin import Lookup, StripeRequest
from actionflow.engine.tables import Payment, RecurringPayment, Refund, Setting

PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
RECURRING = RecurringPayment.__table__  # type: ignore[attr-defined]
REFUNDS = Refund.__table__  # type: ignore[attr-defined]
SETTINGS = Setting.__table__  # type: ignore[attr-defined]
# Before the first `serve` a database has no installation id yet.
NO_INSTALLATION = "new"


def stripe_steps(flow: Flow) -> dict[str, dict[str, Any]]:
    """The steps of `flow` that call Stripe, and the schema of each one's answer."""
    raw_steps = flow.document.data.get("steps", []) if flow.document else []
    schemas = {}
    for position, step in enumerate(flow.steps):
        raw = raw_steps[position] if position < len(raw_steps) else {}
        literal = raw.get("with") if isinstance(raw.get("with"), dict) else {}
        schema = answer_schema(step.use, literal)
        if schema is not None:
            schemas[step.id] = schema
    return schemas


def installation(engine: Engine) -> str:
    """The database's installation id, read without generating one."""
    with db.read(engine) as connection:
        found = connection.execute(
            select(SETTINGS.c.value).where(SETTINGS.c.name == "installation_id")
        ).scalar_one_or_none()
    return str(found)[:16] if found else NO_INSTALLATION


# A payment's status, as the status of its PaymentIntent.
_INTENT_STATUS = {
    "pending": "requires_payment_method",
    "failed": "requires_payment_method",
    "canceled": "canceled",
    "processing": "processing",
}


def database_lookup(engine: Engine) -> Lookup:
    """What the payment tables know of a Stripe object: the stand-in's defaults."""

    def lookup(kind: str, object_id: str) -> dict[str, Any] | None:
        with db.read(engine) as connection:
            if kind == "payment_intent":
                query = select(PAYMENTS).where(
                    PAYMENTS.c.stripe_payment_intent_id == object_id
                )
            elif kind == "subscription":
                query = select(RECURRING).where(
                    RECURRING.c.stripe_subscription_id == object_id
                )
            elif kind == "refund":
                query = select(REFUNDS).where(REFUNDS.c.stripe_refund_id == object_id)
            else:
                return None
            row = connection.execute(query.limit(1)).mappings().first()
        return _known(kind, dict(row)) if row is not None else None

    return lookup


def _known(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    if kind == "payment_intent":
        return {
            "amount": row["amount"],
            "currency": row["currency"],
            "status": _INTENT_STATUS.get(row["status"], "succeeded"),
            "metadata": {
                "order_id": str(row["order_id"]),
                "payment_id": str(row["id"]),
            },
        }
    if kind == "subscription":
        end = row["current_period_end"]
        return {
            "status": row["status"],
            "customer": row["stripe_customer_id"],
            "price": row["stripe_price_id"],
            "current_period_end": int(end.timestamp())
            if isinstance(end, datetime)
            else None,
            "metadata": {
                "order_id": str(row["order_id"]),
                "recurring_payment_id": str(row["id"]),
                "user_id": str(row["user_id"]),
            },
        }
    return {
        "amount": row["amount"],
        "currency": row["currency"],
        "status": row["status"],
    }


def redacted(requests: list[StripeRequest]) -> list[StripeRequest]:
    """The requests with every flow secret that is set replaced, wherever it shows.

    A step may pass `secret('NAME')` to Stripe; the run's own redaction does
    not reach the stand-in's record, so every secret a flow could read is
    masked here.
    """
    vault = Secrets()
    vault.revealed = {
        value
        for name, value in os.environ.items()
        if name.startswith(SECRET_PREFIX) and value
    }
    for request in requests:
        request.params = vault.redact(request.params)
        request.response = vault.redact(request.response)
        request.idempotency_key = vault.redact(request.idempotency_key)
    return requests
