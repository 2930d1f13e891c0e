"""A transient Stripe failure inside stripe-payment makes exactly one PaymentIntent.

The Stripe SDK retries with the same Idempotency-Key (5xx, timeouts), and the
gateway does for 429, which the SDK leaves alone; the fake Stripe on loopback
counts the requests per key and makes a PaymentIntent only once per key.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actionflow.engine.stripe_gateway import StripeGateway
from actionflow.server.app import build_runtime
from tests.conftest import LiveServer, server_settings
from tests.stripe_fake import FakeStripe

SECRET_KEY = "sk_test_fake4retries0123456789"


@pytest.fixture
def fake_stripe(request: pytest.FixtureRequest) -> Iterator[FakeStripe]:
    with FakeStripe(SECRET_KEY, first_answer=request.param) as fake:
        yield fake


@pytest.fixture
def server(fake_stripe: FakeStripe, sqlite_url: str) -> Iterator[LiveServer]:
    settings = server_settings(
        sqlite_url, stripe_secret_key=SECRET_KEY, stripe_api_base=fake_stripe.url
    )
    runtime = build_runtime(settings)
    # A short timeout, so a slow answer counts as a timeout within the test.
    runtime.gateway = StripeGateway(SECRET_KEY, fake_stripe.url, timeout=0.5)
    with LiveServer(runtime) as live:
        yield live


def _pay(server: LiveServer) -> dict[str, object]:
    with server.client() as client:
        order = client.post(
            "/orders", json={"price": "10.99", "currency": "usd", "userId": "u1"}
        )
        assert order.status_code == 201, order.text
        answer = client.post(
            "/actions/stripe-payment",
            json={"orderId": order.json()["id"], "currency": "usd", "amount": 1099},
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.mark.parametrize(
    "fake_stripe",
    [
        pytest.param("500", id="server-error-then-success"),
        pytest.param("429", id="rate-limited-then-success"),
        pytest.param("slow", id="timeout-then-success"),
    ],
    indirect=True,
)
def test_a_transient_stripe_failure_makes_exactly_one_payment_intent(
    fake_stripe: FakeStripe, server: LiveServer
) -> None:
    paid = _pay(server)

    assert fake_stripe.problems == []
    key = server.runtime.idempotency_key("payment", 1)
    assert dict(fake_stripe.requests) == {key: 2}
    assert list(fake_stripe.created) == [paid["stripePaymentIntentId"]]
    intent = fake_stripe.created["pi_fake0001"]
    assert (intent["amount"], intent["currency"]) == (1099, "usd")
    assert intent["metadata"] == {"order_id": "1", "payment_id": "1"}
    assert paid["clientSecret"] == intent["client_secret"]


@pytest.mark.parametrize("fake_stripe", ["401"], indirect=True)
def test_a_refused_secret_key_is_reported_without_the_key(
    fake_stripe: FakeStripe, server: LiveServer
) -> None:
    with server.client() as client:
        order = client.post(
            "/orders", json={"price": "10.99", "currency": "usd", "userId": "u1"}
        )
        answer = client.post(
            "/actions/stripe-payment",
            json={"orderId": order.json()["id"], "currency": "usd", "amount": 1099},
        )
    assert answer.status_code == 502
    assert answer.json()["error"]["message"] == (
        "Stripe refused the secret key; check STRIPE_SECRET_KEY"
    )
    assert SECRET_KEY not in answer.text
    assert fake_stripe.created == {}
