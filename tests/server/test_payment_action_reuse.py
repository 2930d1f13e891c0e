"""stripe-payment never opens a second PaymentIntent while one may still be paid.

A fake Stripe on loopback keeps the PaymentIntents; the test moves them through
the states Stripe would (declined, succeeded before its webhook arrived).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from actionflow.server.app import build_runtime
from tests.conftest import WEBHOOK_SECRET, LiveServer, server_settings, wait_for
from tests.stripe_events import event, signed
from tests.stripe_fake import FakeStripe

SECRET_KEY = "sk_test_fake4reuse0123456789"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(SECRET_KEY) as fake:
        yield fake


@pytest.fixture
def server(fake_stripe: FakeStripe, sqlite_url: str) -> Iterator[LiveServer]:
    settings = server_settings(
        sqlite_url, stripe_secret_key=SECRET_KEY, stripe_api_base=fake_stripe.url
    )
    with LiveServer(build_runtime(settings)) as live:
        yield live


def _order(server: LiveServer) -> int:
    with server.client() as client:
        answer = client.post(
            "/orders", json={"price": "10.00", "currency": "usd", "userId": "u1"}
        )
    return int(answer.json()["id"])


def _pay(server: LiveServer, order_id: int) -> httpx.Response:
    with server.client() as client:
        return client.post(
            "/actions/stripe-payment",
            json={"orderId": order_id, "currency": "usd", "amount": 1000},
        )


def _payments(server: LiveServer, order_id: int) -> list[dict[str, Any]]:
    with server.client() as client:
        answer = client.get("/payments", params={"orderId": order_id})
    return list(answer.json()["data"])


def _deliver(server: LiveServer, kind: str, intent: dict[str, Any]) -> None:
    payload, headers = signed(event(kind, intent), WEBHOOK_SECRET)
    answer = httpx.post(
        f"{server.url}/webhooks/stripe", content=payload, headers=headers
    )
    assert answer.status_code == 200


def test_after_a_declined_card_the_same_payment_intent_is_handed_out_again(
    server: LiveServer, fake_stripe: FakeStripe
) -> None:
    order_id = _order(server)
    first = _pay(server, order_id).json()
    intent = fake_stripe.created[first["stripePaymentIntentId"]]
    declined = {**intent, "last_payment_error": {"message": "Your card was declined."}}
    _deliver(server, "payment_intent.payment_failed", declined)
    wait_for(
        lambda: _payments(server, order_id)[0]["status"] == "failed",
        what="the payment to be recorded as failed",
    )

    again = _pay(server, order_id)

    assert again.status_code == 200, again.text
    assert again.json()["stripePaymentIntentId"] == first["stripePaymentIntentId"]
    assert again.json()["paymentId"] == first["paymentId"]
    assert len(fake_stripe.created) == 1
    [payment] = _payments(server, order_id)
    assert (payment["status"], payment["failureMessage"]) == ("pending", None)


def test_an_intent_paid_before_its_webhook_arrived_is_never_replaced(
    server: LiveServer, fake_stripe: FakeStripe
) -> None:
    order_id = _order(server)
    first = _pay(server, order_id).json()
    fake_stripe.created[first["stripePaymentIntentId"]]["status"] = "succeeded"

    again = _pay(server, order_id)

    assert again.status_code == 409
    assert (
        "is being paid (its PaymentIntent is succeeded)"
        in again.json()["error"]["message"]
    )
    assert len(fake_stripe.created) == 1
    assert [payment["status"] for payment in _payments(server, order_id)] == ["pending"]


def test_a_canceled_intent_lets_the_next_call_start_a_new_payment(
    server: LiveServer, fake_stripe: FakeStripe
) -> None:
    order_id = _order(server)
    first = _pay(server, order_id).json()
    fake_stripe.created[first["stripePaymentIntentId"]]["status"] = "canceled"

    refused = _pay(server, order_id)
    started = _pay(server, order_id)

    assert refused.status_code == 409
    assert started.status_code == 200
    assert started.json()["stripePaymentIntentId"] != first["stripePaymentIntentId"]
    statuses = [payment["status"] for payment in _payments(server, order_id)]
    assert statuses == ["canceled", "pending"]


def test_idempotency_keys_differ_between_two_databases(
    fake_stripe: FakeStripe, tmp_path: Any
) -> None:
    keys = []
    for name in ("one", "two"):
        url = f"sqlite:///{tmp_path / name}.db"
        settings = server_settings(
            url, stripe_secret_key=SECRET_KEY, stripe_api_base=fake_stripe.url
        )
        with LiveServer(build_runtime(settings)) as live:
            answer = _pay(live, _order(live))
            assert answer.status_code == 200, answer.text
            keys.append(answer.json()["stripePaymentIntentId"])
    assert keys[0] != keys[1]
    assert len(fake_stripe.requests) == 2
    assert all(key.startswith("af-") for key in fake_stripe.requests)
    assert json.dumps(fake_stripe.problems) == "[]"


def test_an_order_whose_payment_took_another_amount_is_not_charged_again(
    server: LiveServer, fake_stripe: FakeStripe
) -> None:
    order_id = _order(server)
    first = _pay(server, order_id).json()
    intent = fake_stripe.created[first["stripePaymentIntentId"]]
    short = {**intent, "status": "succeeded", "amount": 900, "amount_received": 900}
    _deliver(server, "payment_intent.succeeded", short)
    wait_for(
        lambda: _payments(server, order_id)[0]["status"] == "mismatch",
        what="the payment to be recorded as a mismatch",
    )

    again = _pay(server, order_id)

    assert again.status_code == 409, again.text
    message = again.json()["error"]["message"]
    assert f"payment {first['paymentId']} (mismatch, 900 usd taken" in message
    assert len(fake_stripe.created) == 1


def test_a_pending_order_with_a_succeeded_payment_is_not_charged_again(
    server: LiveServer, fake_stripe: FakeStripe
) -> None:
    """As when the extension that marks orders paid failed or was removed."""
    order_id = _order(server)
    first = _pay(server, order_id).json()
    intent = fake_stripe.created[first["stripePaymentIntentId"]]
    _deliver(server, "payment_intent.succeeded", {**intent, "status": "succeeded"})
    wait_for(
        lambda: _payments(server, order_id)[0]["status"] == "succeeded",
        what="the payment to succeed",
    )
    orders = server.runtime.order_table
    with server.runtime.engine.begin() as connection:
        connection.execute(
            orders.update().where(orders.c.id == order_id).values(status="pending")
        )

    again = _pay(server, order_id)

    assert again.status_code == 409, again.text
    assert "a second charge would take the money twice" in again.text
    assert len(fake_stripe.created) == 1
