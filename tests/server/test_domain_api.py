"""Tokens, ownership, reads and the refusals of the payment actions.

A real uvicorn server on loopback, on SQLite and on PostgreSQL; where Stripe is
needed, localstripe plays it, and a refusal is checked on both sides: nothing
written here, nothing created there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from actionflow.engine import db
from actionflow.engine.tables import utcnow
from actionflow.server.app import build_runtime
from actionflow.server.auth import issue_token
from actionflow.server.cli import main
from tests.conftest import (
    ADMIN_TOKEN,
    WEBHOOK_SECRET,
    LiveServer,
    server_settings,
    wait_for,
)
from tests.localstripe import SECRET_KEY, localstripe, stripe_get, stripe_post

__all__ = ["localstripe"]  # the fixture, imported for the tests below

TOKEN_SECRET = "afk_test_token_secret"
_OPENED: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def _client(server: LiveServer, token: str | None = ADMIN_TOKEN) -> httpx.Client:
    client = server.client(token)
    _OPENED.append(client)
    return client


def _token(server: LiveServer, user: str, role: str = "user", **more: Any) -> str:
    return issue_token(server.runtime.token_secret, user, role, **more)


def _order(server: LiveServer, price: str = "10.00", currency: str = "usd") -> int:
    answer = _client(server).post(
        "/orders", json={"price": price, "currency": currency, "userId": "alice"}
    )
    if answer.status_code == 400 and "cannot be charged" in answer.text:
        # POST /orders refuses such a price; a row written by the app itself
        # (or found in a linked table) may still hold one.
        return _order_row(server, price, currency)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _order_row(server: LiveServer, price: str, currency: str) -> int:
    table = server.runtime.order_table
    now = utcnow()
    values = {
        "price": Decimal(price),
        "currency": currency,
        "user_id": "alice",
        "status": "pending",
        "description": "",
        "created_at": now,
        "updated_at": now,
    }
    with db.write(server.runtime.engine) as connection:
        inserted = connection.execute(
            insert(table).values(values).returning(table.c.id)
        )
        return int(inserted.scalar_one())


def test_an_order_whose_price_the_currency_cannot_hold_is_refused(
    live_server: LiveServer,
) -> None:
    answer = _client(live_server).post(
        "/orders", json={"price": "10.005", "currency": "usd", "userId": "alice"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        "price 10.005 cannot be charged in usd: usd has 2 decimal places; "
        "round the price to 10.00 or 10.01"
    )


# Tokens and reads --------------------------------------------------------------


def test_requests_without_a_valid_token_are_refused(live_server: LiveServer) -> None:
    order_id = _order(live_server)
    forged = issue_token("another secret", "alice")
    expired = _token(live_server, "alice", expires_at=int(time.time()) - 1)
    tampered = _token(live_server, "alice")[:-2] + "xx"

    answers = {
        "none": _client(live_server, None).get(f"/orders/{order_id}"),
        "forged": _client(live_server, forged).get(f"/orders/{order_id}"),
        "tampered": _client(live_server, tampered).get(f"/orders/{order_id}"),
        "expired": _client(live_server, expired).get(f"/orders/{order_id}"),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "none": 401,
        "forged": 401,
        "tampered": 401,
        "expired": 401,
    }
    assert answers["none"].json()["error"]["message"] == (
        "send a token: Authorization: Bearer <token>"
    )
    assert answers["expired"].json()["error"]["message"] == (
        "the token has expired; ask for a new one"
    )


def test_a_user_reads_their_own_order_and_nobody_elses(live_server: LiveServer) -> None:
    order_id = _order(live_server)
    alice = _client(live_server, _token(live_server, "alice"))
    bob = _client(live_server, _token(live_server, "bob"))
    reads = [
        f"/orders/{order_id}",
        f"/payments?orderId={order_id}",
        f"/recurring-payments?orderId={order_id}",
    ]

    assert [alice.get(path).status_code for path in reads] == [200, 200, 200]
    assert [bob.get(path).status_code for path in reads] == [403, 403, 403]
    assert alice.get(reads[1]).json() == {"data": []}
    assert bob.get(reads[0]).json()["error"]["message"] == (
        "this order belongs to another user"
    )


def test_refunds_are_read_through_the_payment_s_order(live_server: LiveServer) -> None:
    assert _client(live_server).get("/refunds?paymentId=99").status_code == 404
    assert _client(live_server).get("/refunds").json()["error"]["message"] == (
        "the query parameter paymentId is required"
    )


def test_only_an_admin_creates_orders(live_server: LiveServer) -> None:
    user = _client(live_server, _token(live_server, "alice"))
    admin = _client(live_server, _token(live_server, "ops", role="admin"))
    body = {"price": "1.00", "currency": "usd", "userId": "alice"}

    assert user.post("/orders", json=body).status_code == 403
    assert admin.post("/orders", json=body).status_code == 201


def test_the_token_command_issues_a_token_the_server_accepts(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = _order(live_server)
    monkeypatch.setenv("ACTIONFLOW_TOKEN_SECRET", live_server.runtime.token_secret)

    result = CliRunner().invoke(main, ["token", "--user", "alice"])

    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("aft1.")
    assert _client(live_server, token).get(f"/orders/{order_id}").status_code == 200


def test_the_token_command_refuses_an_unknown_role() -> None:
    result = CliRunner().invoke(main, ["token", "--user", "a", "--role", "owner"])

    assert result.exit_code == 2
    assert "'owner' is not one of 'user', 'admin'" in result.output


# Actions against localstripe ---------------------------------------------------


@pytest.fixture
def stripe_server(database_url: str, localstripe: str) -> Iterator[LiveServer]:
    """The app with Stripe pointed at localstripe, its webhooks delivered to it."""
    settings = server_settings(
        database_url,
        stripe_secret_key=SECRET_KEY,
        stripe_api_base=localstripe,
        token_secret=TOKEN_SECRET,
    )
    with LiveServer(build_runtime(settings)) as server:
        stripe_post(
            localstripe,
            "/_config/webhooks/actionflow",
            url=f"{server.url}/webhooks/stripe",
            secret=WEBHOOK_SECRET,
        )
        yield server


def _pay(server: LiveServer, order_id: int, amount: int, currency: str = "usd") -> Any:
    alice = _client(server, _token(server, "alice"))
    return alice.post(
        "/actions/stripe-payment",
        json={"orderId": order_id, "currency": currency, "amount": amount},
    )


def _succeeded_payment(server: LiveServer, localstripe: str) -> dict[str, Any]:
    order_id = _order(server)
    started = _pay(server, order_id, 1000)
    assert started.status_code == 200, started.text
    intent = started.json()["stripePaymentIntentId"]
    method = stripe_post(
        localstripe,
        "/v1/payment_methods",
        type="card",
        **{
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    )
    stripe_post(
        localstripe, f"/v1/payment_intents/{intent}", payment_method=method["id"]
    )
    stripe_post(localstripe, f"/v1/payment_intents/{intent}/confirm")

    def settled() -> bool:
        answer = _client(server).get("/payments", params={"orderId": order_id})
        return bool(answer.json()["data"][0]["status"] == "succeeded")

    wait_for(settled, what="the payment to succeed")
    payment = _client(server).get("/payments", params={"orderId": order_id}).json()
    return dict(payment["data"][0])


def _refund(client: httpx.Client, payment_id: int, amount: int) -> httpx.Response:
    return client.post(
        "/actions/stripe-refund",
        json={"paymentId": payment_id, "refundAmount": amount},
    )


def _stripe_refunds(localstripe: str) -> list[Any]:
    return list(stripe_get(localstripe, "/v1/refunds", limit=100)["data"])


@pytest.mark.parametrize(
    ("price", "currency", "amount", "owner", "status", "message"),
    [
        pytest.param(
            "10.00",
            "usd",
            1000,
            "bob",
            403,
            "this order belongs to another user",
            id="someone_elses_order",
        ),
        pytest.param(
            "10.00",
            "usd",
            999,
            "alice",
            400,
            "amount 999 does not match the order's price 10.00 usd, "
            "which is 1000 in minor units",
            id="amount_differs_from_price",
        ),
        pytest.param(
            "500",
            "jpy",
            50000,
            "alice",
            400,
            "amount 50000 does not match the order's price 500 jpy, "
            "which is 500 in minor units",
            id="jpy_500_charged_as_50000",
        ),
        pytest.param(
            "10.005",
            "usd",
            1000,
            "alice",
            400,
            "price 10.005 cannot be charged in usd: usd has 2 decimal places; "
            "round the price to 10.00 or 10.01",
            id="price_not_representable",
        ),
    ],
)
def test_a_refused_payment_charges_nothing_and_writes_nothing(
    stripe_server: LiveServer,
    localstripe: str,
    price: str,
    currency: str,
    amount: int,
    owner: str,
    status: int,
    message: str,
) -> None:
    order_id = _order(stripe_server, price, currency)
    payer = _client(stripe_server, _token(stripe_server, owner))

    answer = payer.post(
        "/actions/stripe-payment",
        json={"orderId": order_id, "currency": currency, "amount": amount},
    )

    assert (answer.status_code, answer.json()["error"]["message"]) == (status, message)
    payments = _client(stripe_server).get("/payments", params={"orderId": order_id})
    assert payments.json() == {"data": []}
    assert stripe_get(localstripe, "/v1/payment_intents")["data"] == []


def test_two_partial_refunds_add_up_on_the_payment(
    stripe_server: LiveServer, localstripe: str
) -> None:
    payment = _succeeded_payment(stripe_server, localstripe)
    admin = _client(stripe_server)

    first = _refund(admin, payment["id"], 300)
    second = _refund(admin, payment["id"], 200)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "succeeded"
    refunds = admin.get("/refunds", params={"paymentId": payment["id"]}).json()["data"]
    assert [(row["amount"], row["status"]) for row in refunds] == [
        (300, "succeeded"),
        (200, "succeeded"),
    ]
    assert all(row["stripeRefundId"].startswith("re_") for row in refunds)
    after = admin.get("/payments", params={"orderId": payment["orderId"]}).json()
    assert after["data"][0]["refundedAmount"] == 500
    assert sorted(item["amount"] for item in _stripe_refunds(localstripe)) == [200, 300]


def test_refunds_refused_before_stripe_write_nothing(
    stripe_server: LiveServer, localstripe: str
) -> None:
    payment = _succeeded_payment(stripe_server, localstripe)
    user = _client(stripe_server, _token(stripe_server, "alice"))
    admin = _client(stripe_server)

    by_user = _refund(user, payment["id"], 100)
    too_much = _refund(admin, payment["id"], 1001)
    nothing = _refund(admin, payment["id"], 0)

    assert (by_user.status_code, by_user.json()["error"]["message"]) == (
        403,
        "only an admin may refund a payment",
    )
    assert (too_much.status_code, too_much.json()["error"]["message"]) == (
        400,
        f"refundAmount 1001 is more than what is left to refund on payment "
        f"{payment['id']}: 1000 paid, 0 refunded or pending, 1000 left",
    )
    assert nothing.json()["error"]["message"] == "refundAmount must be positive, got 0"
    refunds = admin.get("/refunds", params={"paymentId": payment["id"]}).json()
    assert refunds == {"data": []}
    assert _stripe_refunds(localstripe) == []


def test_two_concurrent_refunds_cannot_together_exceed_the_payment(
    stripe_server: LiveServer, localstripe: str
) -> None:
    payment = _succeeded_payment(stripe_server, localstripe)

    def refund(_: int) -> httpx.Response:
        with stripe_server.client() as admin:
            return _refund(admin, payment["id"], 700)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(refund, range(2)))

    assert sorted(answer.status_code for answer in answers) == [200, 400]
    refused = next(answer for answer in answers if answer.status_code == 400)
    assert (
        "1000 paid, 700 refunded or pending, 300 left"
        in (refused.json()["error"]["message"])
    )
    refunds = _client(stripe_server).get(
        "/refunds", params={"paymentId": payment["id"]}
    )
    assert [row["amount"] for row in refunds.json()["data"]] == [700]
    assert [item["amount"] for item in _stripe_refunds(localstripe)] == [700]


def test_a_refund_of_a_payment_that_did_not_succeed_is_refused(
    stripe_server: LiveServer,
) -> None:
    order_id = _order(stripe_server)
    started = _pay(stripe_server, order_id, 1000).json()

    answer = _refund(_client(stripe_server), started["paymentId"], 100)

    assert (answer.status_code, answer.json()["error"]["message"]) == (
        409,
        f"payment {started['paymentId']} is pending; "
        "only a succeeded payment can be refunded",
    )


def test_a_subscription_is_not_started_for_a_paid_order(
    stripe_server: LiveServer, localstripe: str
) -> None:
    payment = _succeeded_payment(stripe_server, localstripe)
    order_id = payment["orderId"]
    alice = _client(stripe_server, _token(stripe_server, "alice"))

    answer = alice.post(
        "/actions/stripe-subscription",
        json={"orderId": order_id, "priceId": "price_anything"},
    )

    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["message"] == (
        f"order {order_id} is paid; only a pending order starts a subscription"
    )
    recurring = _client(stripe_server).get(
        "/recurring-payments", params={"orderId": order_id}
    )
    assert recurring.json() == {"data": []}
    assert stripe_get(localstripe, "/v1/subscriptions")["data"] == []
