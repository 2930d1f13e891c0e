"""Pay, refund twice, subscribe and cancel, with real processes on loopback.

localstripe plays Stripe behind a small test shim (it has Plans, not Prices);
`actionflow serve` runs as a subprocess. localstripe sends no refund events,
so one is built from Stripe's example refund object, signed, and delivered.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, free_port, wait_for
from tests.localstripe import (
    SECRET_KEY,
    localstripe,
    stripe_get,
    stripe_post,
    stripe_shim,
)
from tests.server.test_payment_path_e2e import (
    SUCCEEDS,
    _confirm_as_the_browser,
    _start,
    _stop,
    _wait_for_port,
)
from tests.stripe_events import event, signed, stripe_object

__all__ = ["localstripe", "stripe_shim"]  # fixtures, imported for the tests below

pytestmark = pytest.mark.e2e

TOKEN_SECRET = "afk_e2e_token_secret"


class Served:
    """The running server: an admin client, a user client, its SQLite file."""

    def __init__(self, url: str, database: Path, user_token: str) -> None:
        self.url = url
        self.database = database
        self.admin = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )
        self.user = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {user_token}"}, timeout=10
        )

    def execute(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(query, args).fetchall()

    def close(self) -> None:
        self.admin.close()
        self.user.close()


def _user_token(environment: dict[str, str], user: str) -> str:
    program = str(Path(sys.executable).parent / "actionflow")
    done = subprocess.run(
        [program, "token", "--user", user],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def served(localstripe: str, stripe_shim: str, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    database = tmp_path / "actionflow.db"
    environment = {
        **os.environ,
        "ACTIONFLOW_DATABASE_URL": f"sqlite:///{database}",
        "ACTIONFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
        "ACTIONFLOW_TOKEN_SECRET": TOKEN_SECRET,
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_PUBLISHABLE_KEY": "pk_test_actionflow",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_shim,
    }
    program = str(Path(sys.executable).parent / "actionflow")
    log = tmp_path / "serve.log"
    process = _start(
        [program, "serve", "--host", "127.0.0.1", "--port", str(port)],
        log,
        env=environment,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_for_port(f"{url}/healthz", process, log, "actionflow serve")
    stripe_post(
        localstripe,
        "/_config/webhooks/actionflow",
        url=f"{url}/webhooks/stripe",
        secret=WEBHOOK_SECRET,
    )
    running = Served(url, database, _user_token(environment, "alice"))
    yield running
    running.close()
    _stop(process)


def _order(served: Served, price: str = "10.00") -> int:
    answer = served.admin.post(
        "/orders", json={"price": price, "currency": "usd", "userId": "alice"}
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _payment(served: Served, order_id: int) -> dict[str, Any]:
    answer = served.user.get("/payments", params={"orderId": order_id})
    assert answer.status_code == 200, answer.text
    (payment,) = answer.json()["data"]
    return dict(payment)


def test_pay_then_refund_twice_and_the_refunded_total_is_the_sum(
    localstripe: str, served: Served
) -> None:
    order_id = _order(served)
    started = served.user.post(
        "/actions/stripe-payment",
        json={"orderId": order_id, "currency": "usd", "amount": 1000},
    )
    assert started.status_code == 200, started.text
    _confirm_as_the_browser(
        localstripe, started.json()["stripePaymentIntentId"], SUCCEEDS
    )
    wait_for(
        lambda: _payment(served, order_id)["status"] == "succeeded",
        what="the payment to succeed",
    )
    payment_id = _payment(served, order_id)["id"]

    refunds = [
        served.admin.post(
            "/actions/stripe-refund",
            json={"paymentId": payment_id, "refundAmount": amount},
        )
        for amount in (300, 450)
    ]

    assert [answer.status_code for answer in refunds] == [200, 200]
    assert _payment(served, order_id)["refundedAmount"] == 750
    listed = served.user.get("/refunds", params={"paymentId": payment_id}).json()
    assert [(row["amount"], row["status"]) for row in listed["data"]] == [
        (300, "succeeded"),
        (450, "succeeded"),
    ]

    # Stripe's refund.updated for the second refund, as Stripe would send it.
    second = refunds[1].json()
    refund = stripe_object("refund")
    refund.update(
        id=second["stripeRefundId"],
        amount=450,
        payment_intent=started.json()["stripePaymentIntentId"],
        metadata={"refund_id": str(second["refundId"])},
        status="succeeded",
    )
    payload, headers = signed(event("refund.updated", refund), WEBHOOK_SECRET)
    delivered = httpx.post(
        f"{served.url}/webhooks/stripe", content=payload, headers=headers
    )
    assert delivered.status_code == 200
    wait_for(
        lambda: (
            served.execute(
                "SELECT callback_processed FROM refund WHERE id = ?", second["refundId"]
            )
            == [(1,)]
        ),
        what="the refund event to be processed",
    )
    assert _payment(served, order_id)["refundedAmount"] == 750
    assert len(served.execute("SELECT id FROM refund")) == 2


def _customer_with_a_card(localstripe: str, served: Served, user: str) -> str:
    """A customer who saved a card earlier (localstripe charges it at once)."""
    method = stripe_post(
        localstripe,
        "/v1/payment_methods",
        type="card",
        **{
            "card[number]": SUCCEEDS,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    )
    customer = stripe_post(
        localstripe,
        "/v1/customers",
        payment_method=method["id"],
        **{"invoice_settings[default_payment_method]": method["id"]},
    )
    served.execute(
        "INSERT INTO stripe_customer (user_id, stripe_customer_id, created_at) "
        "VALUES (?, ?, '2026-01-01 00:00:00')",
        user,
        customer["id"],
    )
    return str(customer["id"])


def test_a_subscription_starts_and_is_canceled(
    localstripe: str, served: Served
) -> None:
    customer = _customer_with_a_card(localstripe, served, "alice")
    plan = stripe_post(
        localstripe,
        "/v1/plans",
        id="plan_monthly",
        amount="1000",
        currency="usd",
        interval="month",
        **{"product[name]": "Premium"},
    )
    order_id = _order(served)

    started = served.user.post(
        "/actions/stripe-subscription",
        json={"orderId": order_id, "priceId": plan["id"]},
    )

    assert started.status_code == 200, started.text
    body = started.json()
    assert body["stripeCustomerId"] == customer
    assert body["status"] == "active"
    subscription = stripe_get(
        localstripe, f"/v1/subscriptions/{body['stripeSubscriptionId']}"
    )
    assert subscription["metadata"] == {
        "order_id": str(order_id),
        "recurring_payment_id": str(body["recurringPaymentId"]),
        "user_id": "alice",
    }

    def recurring() -> dict[str, Any]:
        answer = served.user.get("/recurring-payments", params={"orderId": order_id})
        (row,) = answer.json()["data"]
        return dict(row)

    wait_for(
        lambda: recurring()["callbackProcessed"], what="customer.subscription.created"
    )
    assert recurring()["status"] == "active"
    assert recurring()["currentPeriodEnd"] is not None
    wait_for(
        lambda: served.admin.get(f"/orders/{order_id}").json()["status"] == "paid",
        what="the first invoice to pay the order",
    )
    assert served.execute('SELECT count(*) FROM "order"') == [(1,)]
    assert served.execute("SELECT feature, active FROM user_feature") == [
        ("premium", 1)
    ]

    canceled = served.user.post(
        "/actions/stripe-subscription-cancel",
        json={"recurringPaymentId": body["recurringPaymentId"], "atPeriodEnd": False},
    )

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    wait_for(
        lambda: served.execute("SELECT active FROM user_feature") == [(0,)],
        what="customer.subscription.deleted to switch the feature off",
    )
    assert recurring()["status"] == "canceled"


def test_someone_else_cannot_cancel_a_subscription(served: Served) -> None:
    order_id = _order(served)
    served.execute(
        "INSERT INTO recurring_payment (order_id, user_id, status,"
        " stripe_subscription_id, cancel_at_period_end, callback_processed,"
        " last_event_at, created_at, updated_at) VALUES"
        " (?, 'bob', 'active', 'sub_bob', 0, 0, 0, '2026-01-01', '2026-01-01')",
        order_id,
    )

    answer = served.user.post(
        "/actions/stripe-subscription-cancel",
        json={"recurringPaymentId": 1, "atPeriodEnd": True},
    )

    assert (answer.status_code, answer.json()["error"]["message"]) == (
        403,
        "this subscription belongs to another user",
    )
