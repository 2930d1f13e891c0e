"""The Stripe objects flows and actions get back, as JSON Schemas.

Each schema lists the fields a flow may read (`steps.X.status`); Stripe sends
many more, which are kept but not declared. The same schemas check dry-run
fixtures, so a planned answer has the shape the real one will have. Money is
integer minor units everywhere.
"""

from __future__ import annotations

from typing import Any

_ID = {"type": "string", "minLength": 1}
_METADATA = {
    "type": "object",
    "description": "Your key-value pairs, as given when the object was made.",
    "additionalProperties": {"type": "string"},
}
_MINOR_UNITS = {"type": "integer", "minimum": 0, "description": "In minor units."}
_CURRENCY = {
    "type": "string",
    "pattern": "^[a-z]{3}$",
    "description": "Three-letter ISO code, lowercase.",
}
_TIMESTAMP = {"type": "integer", "description": "Unix seconds."}
_MAYBE_TIMESTAMP = {"type": ["integer", "null"], "description": "Unix seconds."}
_REFERENCE = {
    "type": ["string", "object", "null"],
    "description": "An id, or the object when expanded.",
}


def _object(
    kind: str,
    prefix: str,
    required: list[str],
    properties: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"a Stripe {kind}",
        "required": ["id", "object", *required],
        "properties": {
            "id": {**_ID, "pattern": f"^{prefix}_", "description": f"{prefix}_..."},
            "object": {"const": kind},
            "livemode": {"type": "boolean"},
            "created": _TIMESTAMP,
            "metadata": _METADATA,
            **properties,
        },
    }


PAYMENT_INTENT = _object(
    "payment_intent",
    "pi",
    ["amount", "currency", "status"],
    {
        "amount": _MINOR_UNITS,
        "amount_received": _MINOR_UNITS,
        "currency": _CURRENCY,
        "status": {
            "enum": [
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
                "processing",
                "requires_capture",
                "canceled",
                "succeeded",
            ]
        },
        "client_secret": {
            "type": ["string", "null"],
            "description": "What the browser confirms the payment with.",
        },
        "customer": _REFERENCE,
        "description": {"type": ["string", "null"]},
        "latest_charge": _REFERENCE,
        "last_payment_error": {"type": ["object", "null"]},
    },
)

REFUND = _object(
    "refund",
    "re",
    ["amount", "status"],
    {
        "amount": _MINOR_UNITS,
        "currency": _CURRENCY,
        "status": {
            "enum": ["pending", "requires_action", "succeeded", "failed", "canceled"]
        },
        "payment_intent": _REFERENCE,
        "charge": _REFERENCE,
        "reason": {"type": ["string", "null"]},
        "failure_reason": {"type": ["string", "null"]},
    },
)

CUSTOMER = _object(
    "customer",
    "cus",
    [],
    {
        "email": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
    },
)

SUBSCRIPTION = _object(
    "subscription",
    "sub",
    ["status"],
    {
        "status": {
            "enum": [
                "incomplete",
                "incomplete_expired",
                "trialing",
                "active",
                "past_due",
                "canceled",
                "unpaid",
                "paused",
            ]
        },
        "customer": _REFERENCE,
        "cancel_at_period_end": {"type": "boolean"},
        "cancel_at": _MAYBE_TIMESTAMP,
        "canceled_at": _MAYBE_TIMESTAMP,
        "ended_at": _MAYBE_TIMESTAMP,
        "current_period_end": {
            **_MAYBE_TIMESTAMP,
            "description": "Before API 2025-03-31; since then on each item.",
        },
        "items": {
            "type": "object",
            "description": "The prices subscribed to, each with its current period.",
            "properties": {"data": {"type": "array", "items": {"type": "object"}}},
        },
        "latest_invoice": _REFERENCE,
    },
)

CHARGE = _object(
    "charge",
    "ch",
    ["amount", "currency", "status"],
    {
        "amount": _MINOR_UNITS,
        "amount_refunded": _MINOR_UNITS,
        "currency": _CURRENCY,
        "status": {"enum": ["succeeded", "pending", "failed"]},
        "paid": {"type": "boolean"},
        "refunded": {"type": "boolean"},
        "payment_intent": _REFERENCE,
    },
)

INVOICE = _object(
    "invoice",
    "in",
    ["status"],
    {
        "status": {"enum": ["draft", "open", "paid", "uncollectible", "void"]},
        "amount_due": _MINOR_UNITS,
        "amount_paid": _MINOR_UNITS,
        "currency": _CURRENCY,
        "customer": _REFERENCE,
        "billing_reason": {"type": ["string", "null"]},
    },
)

# The schema of each kind of object, by its `object` name.
OBJECTS: dict[str, dict[str, Any]] = {
    "payment_intent": PAYMENT_INTENT,
    "refund": REFUND,
    "customer": CUSTOMER,
    "subscription": SUBSCRIPTION,
    "charge": CHARGE,
    "invoice": INVOICE,
}

# The path of each kind's collection in Stripe's API.
PATHS = {
    "payment_intent": "/v1/payment_intents",
    "refund": "/v1/refunds",
    "customer": "/v1/customers",
    "subscription": "/v1/subscriptions",
    "charge": "/v1/charges",
    "invoice": "/v1/invoices",
}

# What a fixture may give instead of an object: the error Stripe would answer.
ERROR_ANSWER = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {
                    "enum": [
                        "card_error",
                        "invalid_request_error",
                        "idempotency_error",
                        "authentication_error",
                        "rate_limit_error",
                        "api_connection_error",
                        "api_error",
                    ]
                },
                "message": {"type": "string"},
                "code": {"type": "string"},
                "decline_code": {"type": "string"},
            },
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
