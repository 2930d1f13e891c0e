"""The stripe.* steps against a Stripe on loopback: FakeStripe and localstripe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from actionflow.engine import db
from actionflow.engine.errors import FlowError
from actionflow.engine.flow import Flow, load_flow
from actionflow.engine.runner import RunResult, run_flow
from actionflow.engine.services import Services
from actionflow.engine.stripe_gateway import StripeGateway
from tests.localstripe import (
    SECRET_KEY,
    localstripe,
    stripe_get,
    stripe_post,
    stripe_shim,
)
from tests.server.test_payment_path_e2e import SUCCEEDS, _confirm_as_the_browser
from tests.stripe_fake import FakeStripe

__all__ = ["localstripe", "stripe_shim"]  # fixtures, imported for the tests below

CHARGE = """
name: Charge
trigger: {stripe: [checkout.session.completed]}
steps:
  - id: charge
    use: stripe.payment_intent.create
    with:
      amount: "{{ event.data.object.amount_total }}"
      currency: "{{ event.data.object.currency }}"
      metadata: {order_id: "{{ event.data.object.client_reference_id }}"}
    retry: {attempts: 2, delay_ms: 1, errors: [stripe]}
outputs:
  intent: "{{ steps.charge.id }}"
  status: "{{ steps.charge.status }}"
"""


def _flow(tmp_path: Path, text: str, name: str = "Flow") -> Flow:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_flow(path)


def _event(amount: Any = 1099, event_id: str = "evt_checkout_1") -> dict[str, Any]:
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "amount_total": amount,
        "currency": "usd",
        "client_reference_id": "7",
    }
    return {
        "id": event_id,
        "type": "checkout.session.completed",
        "data": {"object": session},
    }


def _run(
    engine: Engine, flow: Flow, event: dict[str, Any], services: Services
) -> RunResult:
    with db.write(engine) as connection:
        return run_flow(
            flow, connection, event=event, services=services, run_key=event["id"]
        )


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = db.create_db_engine(sqlite_url)
    db.prepare(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("first_answer", ["ok", "500"])
def test_a_retried_run_sends_the_same_idempotency_key_and_charges_once(
    sqlite_engine: Engine, tmp_path: Path, first_answer: str
) -> None:
    flow = _flow(tmp_path, CHARGE, "Charge")
    with FakeStripe(SECRET_KEY, first_answer=first_answer) as fake:
        gateway = StripeGateway(SECRET_KEY, fake.url, retries=2)
        services = Services(gateway, installation="inst0000")

        first = _run(sqlite_engine, flow, _event(), services)
        again = _run(sqlite_engine, flow, _event(), services)

    assert first.status == again.status == "succeeded", (first.error, again.error)
    assert first.outputs == again.outputs
    assert first.outputs["status"] == "requires_payment_method"
    key = "af-inst0000-flow-evt_checkout_1:Charge:charge"
    assert dict(fake.requests) == {key: 2 if first_answer == "ok" else 3}
    assert len(fake.created) == 1
    assert fake.problems == []


def test_another_event_or_database_gets_another_key(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    flow = _flow(tmp_path, CHARGE, "Charge")
    with FakeStripe(SECRET_KEY) as fake:
        gateway = StripeGateway(SECRET_KEY, fake.url)
        _run(sqlite_engine, flow, _event(), Services(gateway, installation="a"))
        _run(sqlite_engine, flow, _event(), Services(gateway, installation="b"))
        _run(
            sqlite_engine,
            flow,
            _event(event_id="evt_checkout_2"),
            Services(gateway, installation="a"),
        )

    assert sorted(fake.requests) == [
        "af-a-flow-evt_checkout_1:Charge:charge",
        "af-a-flow-evt_checkout_2:Charge:charge",
        "af-b-flow-evt_checkout_1:Charge:charge",
    ]
    assert len(fake.created) == 3


def test_without_a_secret_key_a_stripe_step_fails_saying_so(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    flow = _flow(tmp_path, CHARGE, "Charge")

    result = _run(sqlite_engine, flow, _event(), Services(None))

    assert result.status == "failed"
    assert "no Stripe secret key is configured; set STRIPE_SECRET_KEY" in str(
        result.error
    )
    assert result.error is not None and result.error.step == "charge"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        pytest.param(
            "10.99", "with.amount: '10.99' is not of type 'integer'", id="text"
        ),
        pytest.param(10.0, "amount must be whole minor units", id="float"),
        pytest.param(20, "below Stripe's minimum charge of 50", id="minimum"),
    ],
)
def test_an_amount_that_is_not_chargeable_minor_units_is_refused_before_stripe(
    sqlite_engine: Engine, tmp_path: Path, amount: Any, message: str
) -> None:
    flow = _flow(tmp_path, CHARGE, "Charge")
    with FakeStripe(SECRET_KEY) as fake:
        gateway = StripeGateway(SECRET_KEY, fake.url)
        result = _run(sqlite_engine, flow, _event(amount), Services(gateway))

    assert result.status == "failed"
    assert message in str(result.error)
    assert fake.seen == []


LIFECYCLE = """
name: Lifecycle
trigger: {stripe: [payment_intent.succeeded]}
steps:
  - id: customer
    use: stripe.customer.create
    with: {email: ada@example.com, name: Ada, metadata: {user_id: u1}}
  - id: subscription
    use: stripe.subscription.create
    with:
      customer: "{{ event.data.object.customer }}"
      price: plan_monthly
      metadata: {order_id: "3"}
  - id: cancel
    use: stripe.subscription.cancel
    with: {subscription: "{{ steps.subscription.id }}", at_period_end: false}
  - id: refund
    use: stripe.refund.create
    with:
      payment_intent: "{{ event.data.object.id }}"
      amount: 400
  - id: intent
    use: stripe.retrieve
    with: {object: payment_intent, id: "{{ event.data.object.id }}"}
outputs:
  customer: "{{ steps.customer.id }}"
  email: "{{ steps.customer.email }}"
  subscription: "{{ steps.subscription.status }}"
  canceled: "{{ steps.cancel.status }}"
  refund: "{{ [steps.refund.amount, steps.refund.status] }}"
  intent: "{{ [steps.intent.amount, steps.intent.status] }}"
"""


def _customer_with_a_card(url: str) -> str:
    method = stripe_post(
        url,
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
        url,
        "/v1/customers",
        payment_method=method["id"],
        **{"invoice_settings[default_payment_method]": method["id"]},
    )
    return str(customer["id"])


@pytest.mark.e2e
def test_the_stripe_steps_create_refund_subscribe_cancel_and_read_in_localstripe(
    sqlite_engine: Engine,
    tmp_path: Path,
    localstripe: str,
    stripe_shim: str,
) -> None:
    stripe_post(
        localstripe,
        "/v1/plans",
        id="plan_monthly",
        amount="1000",
        currency="usd",
        interval="month",
        **{"product[name]": "Premium"},
    )
    customer = _customer_with_a_card(localstripe)
    gateway = StripeGateway(SECRET_KEY, stripe_shim)
    intent = gateway.create_payment_intent(
        amount=1000, currency="usd", metadata={}, idempotency_key="test-paid"
    )
    _confirm_as_the_browser(localstripe, intent["id"], SUCCEEDS)
    paid = {"id": intent["id"], "object": "payment_intent", "customer": customer}
    event = {
        "id": "evt_paid",
        "type": "payment_intent.succeeded",
        "data": {"object": paid},
    }

    result = _run(
        sqlite_engine, _flow(tmp_path, LIFECYCLE, "Lifecycle"), event, Services(gateway)
    )

    assert result.status == "succeeded", result.error
    outputs = result.outputs
    assert outputs["customer"].startswith("cus_")
    assert outputs["email"] == "ada@example.com"
    assert outputs["subscription"] == "active"
    assert outputs["canceled"] == "canceled"
    assert outputs["refund"] == [400, "succeeded"]
    assert outputs["intent"] == [1000, "succeeded"]
    refunds = stripe_get(localstripe, "/v1/refunds")["data"]
    assert [refund["amount"] for refund in refunds] == [400]


def test_a_field_a_stripe_step_does_not_declare_is_refused_before_a_run(
    tmp_path: Path,
) -> None:
    with pytest.raises(FlowError) as caught:
        _flow(tmp_path, CHARGE.replace("steps.charge.status", "steps.charge.stauts"))

    assert "step 'charge' (stripe.payment_intent.create) has no output 'stauts'" in (
        str(caught.value)
    )
    assert "did you mean 'status'" in str(caught.value)
