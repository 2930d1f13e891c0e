"""The whole payment path with real processes on loopback.

localstripe plays Stripe; `actionflow serve` runs as a subprocess; localstripe
sends its signed webhooks to the server as Stripe would.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, free_port, wait_for
from tests.server.sse import Subscription
from tests.stripe_events import signed

pytestmark = pytest.mark.e2e

DECLINED_AT_CHARGE = "4000000000000341"
SUCCEEDS = "4242424242424242"


def _start(command: list[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    """Start `command` with its output in `log` (a pipe could fill up and block it)."""
    with log.open("wb") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, **options
        )


def _wait_for_port(
    url: str, process: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"{what} exited with {process.returncode}:\n{output}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not start listening at {url}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def localstripe(tmp_path: Path) -> Iterator[str]:
    """localstripe on a free loopback port, with empty state."""
    program = shutil.which("localstripe") or str(
        Path(sys.executable).parent / "localstripe"
    )
    port = free_port()
    log = tmp_path / "localstripe.log"
    process = _start([program, "--port", str(port), "--from-scratch"], log)
    url = f"http://localhost:{port}"
    _wait_for_port(f"{url}/v1/events", process, log, "localstripe")
    yield url
    _stop(process)


class Server:
    """`actionflow serve` in a subprocess, on its own SQLite file."""

    def __init__(self, url: str, database: Path) -> None:
        self.url = url
        self.database = database
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(query, args).fetchall()


@pytest.fixture
def server(localstripe: str, tmp_path: Path) -> Iterator[Server]:
    """The server, pointed at localstripe, with its webhook registered there."""
    port = free_port()
    database = tmp_path / "actionflow.db"
    environment = {
        **os.environ,
        "ACTIONFLOW_DATABASE_URL": f"sqlite:///{database}",
        "ACTIONFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
        "STRIPE_SECRET_KEY": "sk_test_actionflow",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_actionflow",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe,
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
    httpx.post(
        f"{localstripe}/_config/webhooks/actionflow",
        data={"url": f"{url}/webhooks/stripe", "secret": WEBHOOK_SECRET},
    ).raise_for_status()
    running = Server(url, database)
    yield running
    running.client.close()
    _stop(process)


def _stripe(localstripe: str, http: stripe.RequestsClient) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_actionflow",
        base_addresses={"api": localstripe},
        max_network_retries=0,
        http_client=http,
    )


def _pay(server: Server, price: str = "10.00", amount: int = 1000) -> dict[str, Any]:
    order = server.client.post(
        "/orders", json={"price": price, "currency": "usd", "userId": "user-1"}
    )
    assert order.status_code == 201, order.text
    payment = server.client.post(
        "/actions/stripe-payment",
        json={"orderId": order.json()["id"], "currency": "usd", "amount": amount},
    )
    assert payment.status_code == 200, payment.text
    return {"order": order.json(), **payment.json()}


def _confirm_as_the_browser(localstripe: str, intent_id: str, card: str) -> None:
    """What Stripe.js would do: attach a card, then confirm."""
    http = stripe.RequestsClient()
    try:
        _attach_and_confirm(_stripe(localstripe, http), intent_id, card)
    finally:
        http.close()


def _attach_and_confirm(client: stripe.StripeClient, intent_id: str, card: str) -> None:
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    try:
        client.v1.payment_intents.confirm(intent_id)
    except stripe.CardError:
        pass  # declined: the browser shows it, Stripe sends payment_failed


def _payment(server: Server, order_id: int) -> dict[str, Any]:
    answer = server.client.get("/payments", params={"orderId": order_id})
    assert answer.status_code == 200
    data: list[dict[str, Any]] = answer.json()["data"]
    assert len(data) == 1
    return data[0]


def _stripe_event(localstripe: str, kind: str, intent_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{localstripe}/v1/events",
        params={"limit": 100},
        headers={"Authorization": "Bearer sk_test_actionflow"},
    )
    events = answer.json()["data"]
    for item in events:
        if item["type"] == kind and item["data"]["object"]["id"] == intent_id:
            return dict(item)
    raise AssertionError(f"localstripe sent no {kind} for {intent_id}")


def test_a_confirmed_payment_marks_the_payment_succeeded_and_the_order_paid(
    localstripe: str, server: Server
) -> None:
    started = _pay(server)
    order_id = started["order"]["id"]
    assert started["clientSecret"].startswith(started["stripePaymentIntentId"])
    assert started["publishableKey"] == "pk_test_actionflow"
    assert _payment(server, order_id)["status"] == "pending"

    _confirm_as_the_browser(localstripe, started["stripePaymentIntentId"], SUCCEEDS)

    wait_for(
        lambda: _payment(server, order_id)["callbackProcessed"],
        what="the payment_intent.succeeded webhook to be processed",
    )
    payment = _payment(server, order_id)
    assert payment["status"] == "succeeded"
    assert payment["amountReceived"] == 1000
    wait_for(
        lambda: server.client.get(f"/orders/{order_id}").json()["status"] == "paid",
        what="the extension to mark the order paid",
    )


def test_the_same_event_delivered_again_changes_nothing(
    localstripe: str, server: Server
) -> None:
    started = _pay(server)
    order_id = started["order"]["id"]
    _confirm_as_the_browser(localstripe, started["stripePaymentIntentId"], SUCCEEDS)
    wait_for(
        lambda: server.client.get(f"/orders/{order_id}").json()["status"] == "paid",
        what="the order to be paid",
    )
    original = _stripe_event(
        localstripe, "payment_intent.succeeded", started["stripePaymentIntentId"]
    )
    runs_before = server.rows("SELECT flow, status FROM flow_run ORDER BY id")
    payment_before = server.rows("SELECT * FROM payment")

    def deliver(_: int) -> dict[str, Any]:
        payload, headers = signed(original, WEBHOOK_SECRET)
        answer = httpx.post(
            f"{server.url}/webhooks/stripe", content=payload, headers=headers
        )
        assert answer.status_code == 200
        return dict(answer.json())

    sequential = [deliver(index) for index in range(3)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        concurrent = list(pool.map(deliver, range(20)))

    assert all(answer["duplicate"] for answer in sequential + concurrent)
    time.sleep(1.0)  # give a wrongly queued duplicate the time to run
    assert server.rows("SELECT flow, status FROM flow_run ORDER BY id") == runs_before
    assert runs_before == [
        ("StripePaymentCallback", "succeeded"),
        ("EmailReceipt", "stopped"),  # the PaymentIntent has no receipt_email
        ("MarkOrderPaid", "succeeded"),
        ("SendReceipt", "succeeded"),
    ]
    assert server.rows("SELECT * FROM payment") == payment_before
    assert server.rows("SELECT count(*) FROM webhook_event")[0][0] == len(
        server.rows("SELECT DISTINCT stripe_event_id FROM webhook_event")
    )


def test_a_declined_card_leaves_the_payment_failed_and_the_order_unpaid(
    localstripe: str, server: Server
) -> None:
    started = _pay(server)
    order_id = started["order"]["id"]

    _confirm_as_the_browser(
        localstripe, started["stripePaymentIntentId"], DECLINED_AT_CHARGE
    )

    wait_for(
        lambda: _payment(server, order_id)["callbackProcessed"],
        what="the payment_intent.payment_failed webhook to be processed",
    )
    payment = _payment(server, order_id)
    assert payment["status"] == "failed"
    assert payment["failureMessage"]
    assert server.client.get(f"/orders/{order_id}").json()["status"] == "pending"
    assert json.loads(json.dumps(payment))["amount"] == 1000


def test_a_subscriber_sees_the_payment_pending_then_succeeded(
    localstripe: str, server: Server
) -> None:
    order = server.client.post(
        "/orders", json={"price": "10.00", "currency": "usd", "userId": "user-1"}
    ).json()
    url = f"{server.url}/subscriptions/payments?orderId={order['id']}"
    with Subscription(url, ADMIN_TOKEN) as stream:
        started = server.client.post(
            "/actions/stripe-payment",
            json={"orderId": order["id"], "currency": "usd", "amount": 1000},
        ).json()
        _confirm_as_the_browser(localstripe, started["stripePaymentIntentId"], SUCCEEDS)
        wait_for(
            lambda: any(
                message["data"]["row"]["status"] == "succeeded"
                for message in stream.messages
            ),
            what="the succeeded payment to be streamed",
        )
    statuses = [message["data"]["row"]["status"] for message in stream.messages]
    assert statuses[0] == "pending"
    assert statuses[-1] == "succeeded"
    assert statuses.index("succeeded") == len(statuses) - 1
    ids = [int(message["id"]) for message in stream.messages]
    assert ids == sorted(ids)
