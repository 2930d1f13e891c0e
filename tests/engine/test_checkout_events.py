"""Checkout Sessions in StripePaymentCallback: paid, paid later, failed, foreign.

Stripe's own Checkout Session object (trimmed) is the input; runs on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import EVENTS, Processor
from tests.conftest import WEBHOOK_SECRET, LiveServer, wait_for
from tests.engine.test_inbox import (
    ORDERS,
    PAYMENTS,
    _all,
    _deliver,
    _drain,
    _order_and_payment,
    _row,
)
from tests.stripe_events import event, signed, stripe_object

INTENT = "pi_1PgafyB7WZ01zgkWSjxsAJo3"


@pytest.fixture
def processor(engine: Engine) -> Processor:
    return Processor(engine, load_project([EXAMPLE_FLOWS]))


def _session(kind: str, **changes: Any) -> dict[str, Any]:
    session = stripe_object("checkout_session")
    session.update(changes)
    return event(kind, session)


def _order_only(engine: Engine) -> int:
    order_id, payment_id = _order_and_payment(engine)
    with db.write(engine) as connection:
        connection.execute(delete(PAYMENTS).where(PAYMENTS.c.id == payment_id))
    return order_id


def test_a_paid_session_settles_the_payment_of_its_intent(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    _deliver(engine, _session("checkout.session.completed"))
    _drain(processor)
    payment = _row(engine, PAYMENTS, payment_id)
    assert (payment["status"], payment["amount_received"]) == ("succeeded", 1099)
    assert _row(engine, ORDERS, order_id)["status"] == "paid"


def test_a_session_the_app_created_gets_a_payment_row_for_its_order(
    engine: Engine, processor: Processor
) -> None:
    order_id = _order_only(engine)
    _deliver(
        engine,
        _session("checkout.session.completed", metadata={"order_id": str(order_id)}),
    )
    _drain(processor)
    [payment] = _all(engine, PAYMENTS)
    assert (payment["order_id"], payment["amount"], payment["currency"]) == (
        order_id,
        1099,
        "usd",
    )
    assert (payment["status"], payment["stripe_payment_intent_id"]) == (
        "succeeded",
        INTENT,
    )
    assert _row(engine, ORDERS, order_id)["status"] == "paid"


def test_an_unpaid_session_waits_then_the_async_success_pays_the_order(
    engine: Engine, processor: Processor
) -> None:
    order_id = _order_only(engine)
    metadata = {"order_id": str(order_id)}
    _deliver(
        engine,
        _session(
            "checkout.session.completed", payment_status="unpaid", metadata=metadata
        ),
    )
    _drain(processor)
    [waiting] = _all(engine, PAYMENTS)
    assert waiting["status"] == "pending"
    assert _row(engine, ORDERS, order_id)["status"] == "pending"

    _deliver(
        engine, _session("checkout.session.async_payment_succeeded", metadata=metadata)
    )
    _drain(processor)
    assert _row(engine, PAYMENTS, waiting["id"])["status"] == "succeeded"
    assert _row(engine, ORDERS, order_id)["status"] == "paid"


def test_an_async_failure_leaves_the_payment_failed_and_the_order_unpaid(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    _deliver(
        engine,
        _session("checkout.session.async_payment_failed", payment_status="unpaid"),
    )
    _drain(processor)
    assert _row(engine, PAYMENTS, payment_id)["status"] == "failed"
    assert _row(engine, ORDERS, order_id)["status"] == "pending"


def test_a_session_for_a_different_amount_is_a_mismatch(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    _deliver(engine, _session("checkout.session.completed", amount_total=99))
    _drain(processor)
    assert _row(engine, PAYMENTS, payment_id)["status"] == "mismatch"
    assert _row(engine, ORDERS, order_id)["status"] == "pending"


@pytest.mark.parametrize(
    "session",
    [
        {"amount_total": 50},
        {"currency": "jpy", "amount_total": 1099},
        {"currency": "eur"},
    ],
    ids=["cheaper", "other-currency-same-digits", "other-currency"],
)
def test_a_session_naming_an_order_is_checked_against_the_order_price(
    engine: Engine, processor: Processor, session: dict[str, Any]
) -> None:
    """The session's own amount is never taken as what the order costs."""
    order_id = _order_only(engine)  # 10.99 usd
    _deliver(
        engine,
        _session(
            "checkout.session.completed",
            client_reference_id=str(order_id),
            **session,
        ),
    )
    _drain(processor)
    [payment] = _all(engine, PAYMENTS)
    assert (payment["amount"], payment["currency"]) == (1099, "usd")
    assert payment["status"] == "mismatch"
    assert "the payment is for 1099 usd" in payment["failure_message"]
    assert _row(engine, ORDERS, order_id)["status"] == "pending"


def test_a_session_naming_no_order_of_ours_is_recorded_and_left_alone(
    engine: Engine, processor: Processor
) -> None:
    _deliver(
        engine, _session("checkout.session.completed", client_reference_id="user_abc")
    )
    _drain(processor)
    [stored] = _all(engine, EVENTS)
    assert stored["status"] == "processed"
    assert "names no order of ours" in stored["note"]
    assert _all(engine, PAYMENTS) == []


def test_a_signed_checkout_event_delivered_over_http_pays_the_order(
    live_server: LiveServer,
) -> None:
    engine = live_server.runtime.engine
    order_id = _order_only(engine)
    body = _session("checkout.session.completed", metadata={"order_id": str(order_id)})
    payload, headers = signed(body, WEBHOOK_SECRET)

    answer = httpx.post(
        f"{live_server.url}/webhooks/stripe", content=payload, headers=headers
    )

    assert answer.status_code == 200
    wait_for(
        lambda: _row(engine, ORDERS, order_id)["status"] == "paid",
        what="the Checkout Session to pay the order",
    )
