"""Money steps: convert between integer minor units and exact decimal prices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PaymentError, RunError
from ..money import from_minor_units, to_minor_units
from . import builtin

if TYPE_CHECKING:
    from ..runner import StepContext


@builtin(
    "money.price",
    "The exact decimal price (a string such as '10.00') of an amount in minor units.",
    inputs={
        "type": "object",
        "required": ["amount", "currency"],
        "properties": {
            "amount": {"type": "integer", "minimum": 0},
            "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["price", "currency"],
        "properties": {"price": {"type": "string"}, "currency": {"type": "string"}},
    },
)
def price_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    try:
        price = from_minor_units(args["amount"], args["currency"])
    except PaymentError as exc:
        raise RunError(exc.message) from None
    return {"price": format(price, "f"), "currency": args["currency"].lower()}


@builtin(
    "money.minor_units",
    "The exact amount in minor units Stripe charges for a decimal `price`.",
    inputs={
        "type": "object",
        "required": ["price", "currency"],
        "properties": {
            "price": {
                "type": ["string", "integer", "number"],
                "description": "An exact decimal price such as '10.00'.",
            },
            "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["amount", "currency"],
        "properties": {
            "amount": {"type": "integer"},
            "currency": {"type": "string"},
        },
    },
)
def minor_units_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    """Refuses a price the currency cannot express exactly (never rounds)."""
    try:
        amount = to_minor_units(args["price"], args["currency"])
    except PaymentError as exc:
        raise RunError(exc.message) from None
    return {"amount": amount, "currency": args["currency"].lower()}
