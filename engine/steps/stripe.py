"""Stripe steps: create PaymentIntents, refunds, customers and subscriptions.

Each call goes through the run's Stripe gateway (`services.gateway`) with the
idempotency key `af-<installation>-flow-<run key>:<flow>:<step>` (plus the
step's own `key`, for a step that calls Stripe more than once in one run). The
run key is the id of the event the run is for, the same in every retry of the
run, so a retried step or a re-run flow gets Stripe's first answer again and
never charges or refunds twice. A step's outputs are the object Stripe
answers, with the fields of engine/stripe_objects.py declared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PaymentError, RunError
from ..money import check_chargeable
from ..services import idempotency_key
from ..stripe_objects import (
    CUSTOMER,
    OBJECTS,
    PAYMENT_INTENT,
    REFUND,
    SUBSCRIPTION,
)
from . import builtin

if TYPE_CHECKING:
    from ..runner import StepContext

_METADATA = {
    "type": "object",
    "description": "Key-value pairs stored on the Stripe object.",
    "additionalProperties": {"type": "string"},
}
_KEY = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._:-]{1,100}$",
    "description": "Tells apart several calls of one step in one run.",
}
_STRIPE_ID = {"type": "string", "minLength": 1}


def _inputs(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


@builtin(
    "stripe.payment_intent.create",
    "Create a PaymentIntent for `amount` minor units; the customer confirms it.",
    inputs=_inputs(
        ["amount", "currency"],
        {
            "amount": {"type": "integer", "minimum": 1, "description": "Minor units."},
            "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
            "customer": {**_STRIPE_ID, "description": "A Stripe customer id."},
            "description": {"type": "string"},
            "metadata": _METADATA,
            "key": _KEY,
        },
    ),
    outputs=PAYMENT_INTENT,
    effect=True,
)
def payment_intent_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    amount = _minor_units(args["amount"], "amount")
    currency = args["currency"].lower()
    try:
        check_chargeable(amount, currency)
    except PaymentError as exc:
        raise RunError(exc.message) from None
    gateway = _gateway(context, "stripe.payment_intent.create")
    return gateway.create_payment_intent(  # type: ignore[no-any-return]
        amount=amount,
        currency=currency,
        metadata=args.get("metadata", {}),
        customer=args.get("customer"),
        description=args.get("description"),
        idempotency_key=_idempotency_key(context, args),
        step=context.step_id,
    )


@builtin(
    "stripe.refund.create",
    "Refund `amount` minor units of a PaymentIntent's charge (all of it without).",
    inputs=_inputs(
        ["payment_intent"],
        {
            "payment_intent": {**_STRIPE_ID, "description": "pi_..."},
            "amount": {"type": "integer", "minimum": 1, "description": "Minor units."},
            "reason": {"enum": ["duplicate", "fraudulent", "requested_by_customer"]},
            "metadata": _METADATA,
            "key": _KEY,
        },
    ),
    outputs=REFUND,
    effect=True,
)
def refund_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    amount = args.get("amount")
    if amount is not None:
        amount = _minor_units(amount, "amount")
    gateway = _gateway(context, "stripe.refund.create")
    return gateway.create_refund(  # type: ignore[no-any-return]
        payment_intent=args["payment_intent"],
        amount=amount,
        reason=args.get("reason"),
        metadata=args.get("metadata", {}),
        idempotency_key=_idempotency_key(context, args),
        step=context.step_id,
    )


@builtin(
    "stripe.customer.create",
    "Create a Stripe customer.",
    inputs=_inputs(
        [],
        {
            "email": {"type": "string"},
            "name": {"type": "string"},
            "metadata": _METADATA,
            "key": _KEY,
        },
    ),
    outputs=CUSTOMER,
    effect=True,
)
def customer_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    gateway = _gateway(context, "stripe.customer.create")
    return gateway.create_customer(  # type: ignore[no-any-return]
        email=args.get("email"),
        name=args.get("name"),
        metadata=args.get("metadata", {}),
        idempotency_key=_idempotency_key(context, args),
        step=context.step_id,
    )


@builtin(
    "stripe.subscription.create",
    "Subscribe a Stripe customer to a recurring price.",
    inputs=_inputs(
        ["customer", "price"],
        {
            "customer": {**_STRIPE_ID, "description": "cus_..."},
            "price": {**_STRIPE_ID, "description": "price_..."},
            "metadata": _METADATA,
            "key": _KEY,
        },
    ),
    outputs=SUBSCRIPTION,
    effect=True,
)
def subscription_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    gateway = _gateway(context, "stripe.subscription.create")
    return gateway.create_subscription(  # type: ignore[no-any-return]
        customer=args["customer"],
        price=args["price"],
        metadata=args.get("metadata", {}),
        idempotency_key=_idempotency_key(context, args),
        step=context.step_id,
    )


@builtin(
    "stripe.subscription.cancel",
    "Cancel a subscription now, or at the end of the period paid for.",
    inputs=_inputs(
        ["subscription"],
        {
            "subscription": {**_STRIPE_ID, "description": "sub_..."},
            "at_period_end": {"type": "boolean", "default": False},
            "key": _KEY,
        },
    ),
    outputs=SUBSCRIPTION,
    effect=True,
)
def cancel_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    gateway = _gateway(context, "stripe.subscription.cancel")
    return gateway.cancel_subscription(  # type: ignore[no-any-return]
        args["subscription"],
        at_period_end=bool(args.get("at_period_end", False)),
        idempotency_key=_idempotency_key(context, args),
        step=context.step_id,
    )


_ANY_OBJECT = {
    "type": "object",
    "title": "a Stripe object",
    "required": ["id", "object"],
    "properties": {
        name: {} for schema in OBJECTS.values() for name in schema["properties"]
    },
}


def answer_schema(use: str, literal_with: dict[str, Any]) -> dict[str, Any] | None:
    """The schema Stripe's answer to a step must fit; None for other steps."""
    if use == "stripe.retrieve":
        kind = literal_with.get("object")
        return OBJECTS[kind] if kind in OBJECTS else _ANY_OBJECT
    return _ANSWERS.get(use)


@builtin(
    "stripe.retrieve",
    "Read a Stripe object (payment_intent, refund, customer, ...) as it is now.",
    inputs=_inputs(
        ["object", "id"],
        {
            "object": {"enum": sorted(OBJECTS), "description": "The kind of object."},
            "id": {**_STRIPE_ID, "description": "Its Stripe id."},
        },
    ),
    outputs=_ANY_OBJECT,
)
def retrieve_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    gateway = _gateway(context, "stripe.retrieve")
    return gateway.retrieve(  # type: ignore[no-any-return]
        args["object"], args["id"], step=context.step_id
    )


_ANSWERS = {
    "stripe.payment_intent.create": PAYMENT_INTENT,
    "stripe.refund.create": REFUND,
    "stripe.customer.create": CUSTOMER,
    "stripe.subscription.create": SUBSCRIPTION,
    "stripe.subscription.cancel": SUBSCRIPTION,
}


def _gateway(context: StepContext, name: str) -> Any:
    gateway = getattr(context.services, "gateway", None)
    if gateway is None:
        raise RunError(
            f"{name} cannot call Stripe: no Stripe secret key is configured; "
            "set STRIPE_SECRET_KEY"
        )
    return gateway


def _idempotency_key(context: StepContext, args: dict[str, Any]) -> str:
    if not context.run_key:
        raise RunError(
            "a Stripe step needs the run's key (the event it is for) so that a "
            "re-run never repeats the call; this run has none"
        )
    key = f"{context.run_key}:{context.flow_name}:{context.step_id}"
    if "key" in args:
        key += f":{args['key']}"
    installation = getattr(context.services, "installation", "local")
    return idempotency_key(installation, "flow", key)


def _minor_units(value: Any, name: str) -> int:
    # jsonschema takes 10.0 as an integer; money never passes through a float.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunError(
            f"{name} must be whole minor units (an integer), got "
            f"{type(value).__name__} {value!r}"
        )
    return value
