"""Calls to Stripe through the official SDK, with Stripe's errors translated once.

Every call that creates something carries an idempotency key, and every retry
of it sends the same key, so a retried create never makes a second object. The
SDK (max_network_retries) retries connection errors and timeouts, 409 and 5xx
answers, and any answer marked Stripe-Should-Retry: true; it does not retry a
plain 429, so this gateway retries rate-limited calls itself, a few times with
a growing pause, with the same request and key.

Every method takes `step`: the name of the flow step or action call that makes
the request. The real gateway ignores it; the dry-run stand-in
(engine/stripe_standin.py) keys its recorded requests and fixture answers by it.
"""

from __future__ import annotations

import time
from typing import Any

import stripe

from .errors import StripeCallError

RATE_LIMIT_PAUSE = 0.5
RATE_LIMIT_PAUSE_CAP = 4.0

# The SDK's service for each kind of object `retrieve` reads.
RETRIEVABLE = {
    "payment_intent": "payment_intents",
    "refund": "refunds",
    "customer": "customers",
    "subscription": "subscriptions",
    "charge": "charges",
    "invoice": "invoices",
}


class StripeGateway:
    """The Stripe API as actionflow uses it."""

    def __init__(
        self,
        secret_key: str,
        api_base: str | None = None,
        retries: int = 3,
        timeout: float = 30.0,
    ):
        addresses: Any = {"api": api_base} if api_base else None
        self.retries = retries
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses=addresses,
            max_network_retries=retries,
            http_client=stripe.new_default_http_client(timeout=timeout),
        )

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
        customer: str | None = None,
        description: str | None = None,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Create a PaymentIntent a browser will confirm."""
        params: Any = {"amount": amount, "currency": currency, "metadata": metadata}
        params.update(_given(customer=customer, description=description))
        options: Any = {"idempotency_key": idempotency_key}
        return self._call(
            lambda: self.client.v1.payment_intents.create(
                params=params, options=options
            )
        )

    def retrieve_payment_intent(
        self, intent_id: str, *, step: str | None = None
    ) -> dict[str, Any]:
        """The PaymentIntent as Stripe has it now."""
        return self._call(lambda: self.client.v1.payment_intents.retrieve(intent_id))

    def retrieve(
        self, kind: str, object_id: str, *, step: str | None = None
    ) -> dict[str, Any]:
        """The object `object_id` of `kind` (see RETRIEVABLE) as Stripe has it now."""
        service = getattr(self.client.v1, RETRIEVABLE[kind])
        return self._call(lambda: service.retrieve(object_id))

    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int | None,
        metadata: dict[str, str],
        idempotency_key: str,
        reason: str | None = None,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Refund `amount` minor units of a PaymentIntent's charge (None: all)."""
        params: Any = {"payment_intent": payment_intent, "metadata": metadata}
        params.update(_given(amount=amount, reason=reason))
        options: Any = {"idempotency_key": idempotency_key}
        return self._call(
            lambda: self.client.v1.refunds.create(params=params, options=options)
        )

    def create_customer(
        self,
        *,
        metadata: dict[str, str],
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Create a customer for one of the app's users."""
        params: Any = {"metadata": metadata, **_given(email=email, name=name)}
        options: Any = {"idempotency_key": idempotency_key}
        return self._call(
            lambda: self.client.v1.customers.create(params=params, options=options)
        )

    def create_subscription(
        self,
        *,
        customer: str,
        price: str,
        metadata: dict[str, str],
        idempotency_key: str,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Subscribe `customer` to `price`; `metadata` names our rows."""
        params: Any = {
            "customer": customer,
            "items": [{"price": price}],
            "metadata": metadata,
        }
        options: Any = {"idempotency_key": idempotency_key}
        return self._call(
            lambda: self.client.v1.subscriptions.create(params=params, options=options)
        )

    def cancel_subscription(
        self,
        subscription: str,
        *,
        at_period_end: bool,
        idempotency_key: str,
        step: str | None = None,
    ) -> dict[str, Any]:
        """Cancel now, or at the end of the period already paid for."""
        options: Any = {"idempotency_key": idempotency_key}
        if at_period_end:
            params: Any = {"cancel_at_period_end": True}
            return self._call(
                lambda: self.client.v1.subscriptions.update(
                    subscription, params=params, options=options
                )
            )
        return self._call(
            lambda: self.client.v1.subscriptions.cancel(subscription, options=options)
        )

    def _call(self, request: Any) -> dict[str, Any]:
        try:
            result = self._with_rate_limit_retries(request)
        except stripe.StripeError as exc:
            kind = next(
                (kind for cls, kind in _ERROR_TYPES.items() if isinstance(exc, cls)),
                "api_error",
            )
            raise call_error(kind, exc) from None
        return result.to_dict()  # type: ignore[no-any-return]

    def _with_rate_limit_retries(self, request: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return request()
            except stripe.RateLimitError:
                if attempt == self.retries:
                    raise
                time.sleep(min(RATE_LIMIT_PAUSE * 2**attempt, RATE_LIMIT_PAUSE_CAP))
        raise AssertionError("unreachable: the loop returns or raises")


def _given(**values: Any) -> dict[str, Any]:
    """The optional parameters that were given."""
    return {name: value for name, value in values.items() if value is not None}


# Stripe's error `type` for each SDK exception; others answer as api_error.
_ERROR_TYPES: dict[type, str] = {
    stripe.CardError: "card_error",
    stripe.InvalidRequestError: "invalid_request_error",
    stripe.IdempotencyError: "idempotency_error",
    stripe.AuthenticationError: "authentication_error",
    stripe.RateLimitError: "rate_limit_error",
    stripe.APIConnectionError: "api_connection_error",
}


def call_error(kind: str, exc: Any = None, message: str = "") -> StripeCallError:
    """Stripe's error of type `kind`, as the gateway reports it to its callers.

    `exc` is the SDK's exception, when there is one; `message` is the message
    Stripe gave (the dry-run stand-in passes the one in a fixture).
    """
    if exc is not None:
        message = getattr(exc, "user_message", None) or message
    if kind == "card_error":
        return StripeCallError(f"Stripe declined the card: {message}", 402)
    if kind == "invalid_request_error":
        return StripeCallError(f"Stripe refused the request: {message}", 400)
    if kind == "authentication_error":
        return StripeCallError(
            "Stripe refused the secret key; check STRIPE_SECRET_KEY", 502
        )
    if kind == "rate_limit_error":
        return StripeCallError("Stripe is rate limiting requests; retry later", 503)
    if kind == "api_connection_error":
        return StripeCallError("Stripe could not be reached; retry later", 503)
    name = type(exc).__name__ if exc is not None else _ERROR_NAMES.get(kind, kind)
    return StripeCallError(f"Stripe answered with an error ({name}); retry later", 502)


_ERROR_NAMES = {"api_error": "APIError", "idempotency_error": "IdempotencyError"}
