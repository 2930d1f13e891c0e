"""Calls to Stripe through the official SDK, with Stripe's errors translated once.

Every call that creates something carries an idempotency key, and every retry
of it sends the same key, so a retried create never makes a second object. The
SDK (max_network_retries) retries connection errors and timeouts, 409 and 5xx
answers, and any answer marked Stripe-Should-Retry: true; it does not retry a
plain 429, so this gateway retries rate-limited calls itself, a few times with
a growing pause, with the same request and key.
"""

from __future__ import annotations

import time
from typing import Any

import stripe

from .errors import StripeCallError

RATE_LIMIT_PAUSE = 0.5
RATE_LIMIT_PAUSE_CAP = 4.0


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
    ) -> dict[str, Any]:
        """Create a PaymentIntent a browser will confirm."""
        params: Any = {"amount": amount, "currency": currency, "metadata": metadata}
        options: Any = {"idempotency_key": idempotency_key}
        return self._call(
            lambda: self.client.v1.payment_intents.create(
                params=params, options=options
            )
        )

    def retrieve_payment_intent(self, intent_id: str) -> dict[str, Any]:
        """The PaymentIntent as Stripe has it now."""
        return self._call(lambda: self.client.v1.payment_intents.retrieve(intent_id))

    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> dict[str, Any]:
        """Refund `amount` minor units of a PaymentIntent's charge."""
        params: Any = {
            "payment_intent": payment_intent,
            "amount": amount,
            "metadata": metadata,
        }
        options: Any = {"idempotency_key": idempotency_key}
        return self._call(
            lambda: self.client.v1.refunds.create(params=params, options=options)
        )

    def create_customer(
        self, *, metadata: dict[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        """Create a customer for one of the app's users."""
        params: Any = {"metadata": metadata}
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
        self, subscription: str, *, at_period_end: bool, idempotency_key: str
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
        except stripe.CardError as exc:
            raise StripeCallError(
                f"Stripe declined the card: {exc.user_message}", 402
            ) from None
        except stripe.InvalidRequestError as exc:
            raise StripeCallError(
                f"Stripe refused the request: {exc.user_message}", 400
            ) from None
        except stripe.AuthenticationError:
            raise StripeCallError(
                "Stripe refused the secret key; check STRIPE_SECRET_KEY", 502
            ) from None
        except stripe.RateLimitError:
            raise StripeCallError(
                "Stripe is rate limiting requests; retry later", 503
            ) from None
        except stripe.APIConnectionError:
            raise StripeCallError(
                "Stripe could not be reached; retry later", 503
            ) from None
        except stripe.StripeError as exc:
            raise StripeCallError(
                f"Stripe answered with an error ({type(exc).__name__}); retry later",
                502,
            ) from None
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
