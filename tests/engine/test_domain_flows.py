"""The refund, subscription and invoice system flows, event by event.

Each event is built from Stripe's example object in today's API shape, or
moved back into the shape older API versions send. Runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import EVENTS, RUNS, Processor, store_event
from actionflow.engine.tables import (
    Order,
    Payment,
    RecurringPayment,
    Refund,
    UserFeature,
    utcnow,
)
from tests.stripe_events import event, stripe_object

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
REFUNDS = Refund.__table__  # type: ignore[attr-defined]
RECURRING = RecurringPayment.__table__  # type: ignore[attr-defined]
FEATURES = UserFeature.__table__  # type: ignore[attr-defined]

INTENT = "pi_3QFlowsTestIntent"
SUBSCRIPTION = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
OLD_API = "2024-09-30.acacia"


@pytest.fixture
def processor(engine: Engine) -> Processor:
    return Processor(engine, load_project([EXAMPLE_FLOWS]))


def _insert(engine: Engine, table: Any, **values: Any) -> int:
    now = utcnow()
    stamps = {key: now for key in ("created_at", "updated_at") if key in table.c}
    with db.write(engine) as connection:
        return int(
            connection.execute(
                insert(table).values(**stamps, **values).returning(table.c.id)
            ).scalar_one()
        )


def _order(engine: Engine, price: str = "10.00") -> int:
    return _insert(
        engine,
        ORDERS,
        price=Decimal(price),
        currency="usd",
        user_id="u1",
        status="pending",
        description="",
    )


def _paid_payment(engine: Engine, amount: int = 1000) -> tuple[int, int]:
    order_id = _order(engine)
    payment_id = _insert(
        engine,
        PAYMENTS,
        order_id=order_id,
        amount=amount,
        amount_received=amount,
        currency="usd",
        status="succeeded",
        callback_processed=True,
        stripe_payment_intent_id=INTENT,
        refunded_amount=0,
    )
    return order_id, payment_id


def _recurring(engine: Engine, *, stripe_id: str | None = SUBSCRIPTION) -> int:
    order_id = _order(engine)
    return _insert(
        engine,
        RECURRING,
        order_id=order_id,
        user_id="u1",
        status="incomplete",
        stripe_subscription_id=stripe_id,
        stripe_price_id="price_1",
        cancel_at_period_end=False,
        callback_processed=False,
        last_event_at=0,
    )


def _deliver(engine: Engine, processor: Processor, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        assert store_event(engine, body, json.dumps(body))
    while processor.process_next_event() or processor.process_next_run():
        pass


def _all(engine: Engine, table: Any, **where: Any) -> list[dict[str, Any]]:
    query = select(table).order_by(table.c.id)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with db.read(engine) as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def _one(engine: Engine, table: Any, row_id: int) -> dict[str, Any]:
    (row,) = _all(engine, table, id=row_id)
    return row


def _events(engine: Engine) -> list[tuple[str, str]]:
    return [(row["type"], row["status"]) for row in _all(engine, EVENTS)]


def _runs(engine: Engine) -> list[tuple[str, str]]:
    return [(row["flow"], row["status"]) for row in _all(engine, RUNS)]


# Refunds -------------------------------------------------------------------


def _refund(refund_id: str, amount: int, status: str = "succeeded", **more: Any) -> Any:
    obj = stripe_object("refund")
    obj.update(id=refund_id, amount=amount, status=status, payment_intent=INTENT)
    obj.update(more)
    return obj


def _charge_with_refunds(*refunds: dict[str, Any]) -> dict[str, Any]:
    charge = stripe_object("charge")
    charge.update(payment_intent=INTENT, refunded=True)
    charge["amount_refunded"] = sum(refund["amount"] for refund in refunds)
    charge["refunds"] = {"object": "list", "data": list(refunds), "has_more": False}
    return charge


@pytest.mark.parametrize(
    "kind", ["refund.created", "refund.updated", "charge.refund.updated"]
)
def test_a_refund_made_in_the_dashboard_gets_a_row_and_counts_in_the_total(
    engine: Engine, processor: Processor, kind: str
) -> None:
    _, payment_id = _paid_payment(engine)

    _deliver(engine, processor, event(kind, _refund("re_dash", 300)))

    (row,) = _all(engine, REFUNDS)
    assert (row["payment_id"], row["amount"], row["status"]) == (
        payment_id,
        300,
        "succeeded",
    )
    assert row["stripe_refund_id"] == "re_dash"
    assert _one(engine, PAYMENTS, payment_id)["refunded_amount"] == 300


def test_charge_refunded_in_the_old_shape_records_the_refund_it_lists(
    engine: Engine, processor: Processor
) -> None:
    _, payment_id = _paid_payment(engine)
    older = _refund("re_old", 250)
    del older["payment_intent"]  # old refunds name only their charge
    charge = _charge_with_refunds(older)

    _deliver(engine, processor, event("charge.refunded", charge, api_version=OLD_API))

    (row,) = _all(engine, REFUNDS)
    assert (row["stripe_refund_id"], row["amount"]) == ("re_old", 250)
    assert _one(engine, PAYMENTS, payment_id)["refunded_amount"] == 250


def test_charge_refunded_without_a_refund_list_is_handled_and_writes_nothing(
    engine: Engine, processor: Processor
) -> None:
    _paid_payment(engine)
    charge = stripe_object("charge")
    charge.update(payment_intent=INTENT, refunded=True, amount_refunded=1000)
    del charge["refunds"]  # the shape since 2022-11-15

    _deliver(engine, processor, event("charge.refunded", charge))

    assert _all(engine, REFUNDS) == []
    assert _events(engine) == [("charge.refunded", "processed")]
    assert "lists no refunds" in _all(engine, EVENTS)[0]["note"]


def test_our_pending_refund_is_found_by_its_metadata_and_settled(
    engine: Engine, processor: Processor
) -> None:
    _, payment_id = _paid_payment(engine)
    refund_id = _insert(
        engine,
        REFUNDS,
        payment_id=payment_id,
        amount=400,
        currency="usd",
        status="pending",
        callback_processed=False,
    )
    obj = _refund("re_ours", 400, metadata={"refund_id": str(refund_id)})

    _deliver(engine, processor, event("refund.updated", obj))

    (row,) = _all(engine, REFUNDS)
    assert row["id"] == refund_id
    assert (row["stripe_refund_id"], row["status"], row["callback_processed"]) == (
        "re_ours",
        "succeeded",
        True,
    )
    assert _one(engine, PAYMENTS, payment_id)["refunded_amount"] == 400


def test_two_partial_refunds_add_up_and_a_failed_one_gives_its_amount_back(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _paid_payment(engine)

    _deliver(
        engine,
        processor,
        event("refund.created", _refund("re_a", 300)),
        event("refund.created", _refund("re_b", 200)),
    )
    assert _one(engine, PAYMENTS, payment_id)["refunded_amount"] == 500

    failed = _refund(
        "re_a", 300, status="failed", failure_reason="expired_or_canceled_card"
    )
    _deliver(engine, processor, event("refund.failed", failed))

    assert _one(engine, PAYMENTS, payment_id)["refunded_amount"] == 200
    statuses = {row["stripe_refund_id"]: row["status"] for row in _all(engine, REFUNDS)}
    assert statuses == {"re_a": "failed", "re_b": "succeeded"}
    assert _all(engine, REFUNDS, stripe_refund_id="re_a")[0]["failure_reason"] == (
        "expired_or_canceled_card"
    )
    assert _one(engine, ORDERS, order_id)["status"] == "pending"


def test_a_late_pending_event_does_not_undo_a_succeeded_refund(
    engine: Engine, processor: Processor
) -> None:
    _, payment_id = _paid_payment(engine)
    _deliver(engine, processor, event("refund.updated", _refund("re_c", 300)))

    late = event("refund.created", _refund("re_c", 300, status="pending"))
    _deliver(engine, processor, late)

    assert _all(engine, REFUNDS)[0]["status"] == "succeeded"
    assert _one(engine, PAYMENTS, payment_id)["refunded_amount"] == 300
    assert _runs(engine)[-1] == ("StripeRefundCallback", "stopped")


def test_refunds_that_add_up_to_the_payment_mark_the_order_refunded(
    engine: Engine, processor: Processor
) -> None:
    order_id, _ = _paid_payment(engine)

    _deliver(
        engine,
        processor,
        event("refund.created", _refund("re_d", 600)),
        event("refund.created", _refund("re_e", 400)),
    )

    assert _one(engine, ORDERS, order_id)["status"] == "refunded"


def test_a_refund_for_a_payment_we_do_not_know_is_acknowledged_not_failed(
    engine: Engine, processor: Processor
) -> None:
    _deliver(engine, processor, event("refund.created", _refund("re_x", 100)))

    assert _all(engine, REFUNDS) == []
    assert _events(engine) == [("refund.created", "processed")]


# Subscriptions -------------------------------------------------------------


def _subscription(status: str, *, old_shape: bool = False, **more: Any) -> Any:
    obj = stripe_object("subscription")
    obj.update(status=status, cancel_at_period_end=False, ended_at=None)
    obj["items"]["data"][0]["current_period_end"] = 1_900_000_000
    if old_shape:
        item = obj["items"]["data"][0]
        obj["current_period_end"] = item.pop("current_period_end")
        obj["current_period_start"] = item.pop("current_period_start")
    obj.update(more)
    return obj


def _sub_event(kind: str, obj: dict[str, Any], created: int, old: bool) -> Any:
    version = OLD_API if old else "2026-08-27.basil"
    return event(kind, obj, created=created, api_version=version)


@pytest.mark.parametrize("old", [False, True], ids=["2025_shape", "older_shape"])
def test_created_then_updated_records_status_period_and_cancellation(
    engine: Engine, processor: Processor, old: bool
) -> None:
    recurring_id = _recurring(engine)
    created = _subscription("incomplete", old_shape=old)
    updated = _subscription("active", old_shape=old, cancel_at_period_end=True)

    _deliver(
        engine,
        processor,
        _sub_event("customer.subscription.created", created, 1000, old),
        _sub_event("customer.subscription.updated", updated, 1001, old),
    )

    row = _one(engine, RECURRING, recurring_id)
    assert (row["status"], row["cancel_at_period_end"]) == ("active", True)
    assert int(row["current_period_end"].timestamp()) == 1_900_000_000
    assert row["last_event_at"] == 1001


@pytest.mark.parametrize("same_second", [False, True])
def test_an_updated_that_arrives_before_created_wins(
    engine: Engine, processor: Processor, same_second: bool
) -> None:
    recurring_id = _recurring(engine)
    updated = _sub_event(
        "customer.subscription.updated", _subscription("active"), 1001, False
    )
    created_at = 1001 if same_second else 1000
    created = _sub_event(
        "customer.subscription.created", _subscription("incomplete"), created_at, False
    )

    _deliver(engine, processor, updated, created)

    assert _one(engine, RECURRING, recurring_id)["status"] == "active"
    if same_second:
        # Not older by Stripe's clock: the flow itself sees it is stale.
        last_run = ("StripeRecurringPaymentManagementCallback", "stopped")
        assert _runs(engine)[-1] == last_run
        late_status = "processed"
    else:
        # Strictly older: the inbox skips it before any flow runs.
        late_status = "skipped"
    assert _events(engine) == [
        ("customer.subscription.updated", "processed"),
        ("customer.subscription.created", late_status),
    ]


def test_an_active_subscription_switches_the_feature_on_and_deleted_switches_it_off(
    engine: Engine, processor: Processor
) -> None:
    recurring_id = _recurring(engine)

    _deliver(
        engine,
        processor,
        _sub_event("customer.subscription.created", _subscription("active"), 1, False),
    )
    assert [
        (f["user_id"], f["feature"], f["active"]) for f in _all(engine, FEATURES)
    ] == [("u1", "premium", True)]

    ended = _subscription("canceled", ended_at=1_800_000_000)
    _deliver(
        engine, processor, _sub_event("customer.subscription.deleted", ended, 2, False)
    )

    row = _one(engine, RECURRING, recurring_id)
    assert row["status"] == "canceled"
    assert int(row["ended_at"].timestamp()) == 1_800_000_000
    assert [f["active"] for f in _all(engine, FEATURES)] == [False]


def test_a_subscription_event_before_the_action_stored_its_id_finds_the_row_by_metadata(
    engine: Engine, processor: Processor
) -> None:
    recurring_id = _recurring(engine, stripe_id=None)
    obj = _subscription("active", metadata={"recurring_payment_id": str(recurring_id)})

    _deliver(
        engine, processor, _sub_event("customer.subscription.created", obj, 5, False)
    )

    row = _one(engine, RECURRING, recurring_id)
    assert (row["stripe_subscription_id"], row["status"]) == (SUBSCRIPTION, "active")


def test_an_ended_subscription_stays_ended(
    engine: Engine, processor: Processor
) -> None:
    recurring_id = _recurring(engine)
    _deliver(
        engine,
        processor,
        _sub_event(
            "customer.subscription.deleted", _subscription("canceled"), 10, False
        ),
        _sub_event("customer.subscription.updated", _subscription("active"), 11, False),
    )

    assert _one(engine, RECURRING, recurring_id)["status"] == "canceled"


# Invoices ------------------------------------------------------------------


def _invoice(
    invoice_id: str, billing_reason: str, *, old_shape: bool = False, **more: Any
) -> Any:
    obj = stripe_object("invoice")
    obj.update(id=invoice_id, billing_reason=billing_reason, amount_due=1000)
    obj.update(amount_paid=1000, currency="usd", status="paid")
    if old_shape:
        del obj["parent"]
        obj["subscription"] = SUBSCRIPTION
        obj["payment_intent"] = f"pi_for_{invoice_id}"
    obj.update(more)
    return obj


@pytest.mark.parametrize("old", [False, True], ids=["2025_shape", "older_shape"])
def test_the_first_invoice_pays_the_subscriptions_order_without_a_second_order(
    engine: Engine, processor: Processor, old: bool
) -> None:
    recurring_id = _recurring(engine)
    order_id = _one(engine, RECURRING, recurring_id)["order_id"]
    invoice = _invoice("in_first", "subscription_create", old_shape=old)

    _deliver(engine, processor, event("invoice.paid", invoice))

    assert [row["id"] for row in _all(engine, ORDERS)] == [order_id]
    (payment,) = _all(engine, PAYMENTS)
    assert (payment["order_id"], payment["status"], payment["amount"]) == (
        order_id,
        "succeeded",
        1000,
    )
    assert payment["recurring_payment_id"] == recurring_id
    assert _one(engine, ORDERS, order_id)["status"] == "paid"


@pytest.mark.parametrize("old", [False, True], ids=["2025_shape", "older_shape"])
def test_paid_and_payment_succeeded_for_one_renewal_make_one_order_and_one_payment(
    engine: Engine, processor: Processor, old: bool
) -> None:
    recurring_id = _recurring(engine)
    first_order = _one(engine, RECURRING, recurring_id)["order_id"]
    invoice = _invoice("in_renewal", "subscription_cycle", old_shape=old)

    _deliver(
        engine,
        processor,
        event("invoice.paid", invoice),
        event("invoice.payment_succeeded", invoice),
    )

    orders = _all(engine, ORDERS)
    assert len(orders) == 2
    renewal = orders[1]
    assert (renewal["price"], renewal["currency"], renewal["user_id"]) == (
        Decimal("10.00"),
        "usd",
        "u1",
    )
    assert renewal["status"] == "paid"
    (payment,) = _all(engine, PAYMENTS)
    assert payment["order_id"] == renewal["id"] != first_order
    assert (payment["stripe_invoice_id"], payment["status"]) == (
        "in_renewal",
        "succeeded",
    )
    expected_intent = "pi_for_in_renewal" if old else None
    assert payment["stripe_payment_intent_id"] == expected_intent
    assert _runs(engine)[-1] == ("StripeRecurringPaymentDeductionCallback", "stopped")


def test_a_renewal_that_fails_then_succeeds_keeps_one_order_and_one_payment(
    engine: Engine, processor: Processor
) -> None:
    _recurring(engine)
    failed = _invoice("in_retry", "subscription_cycle", amount_paid=0, status="open")

    _deliver(engine, processor, event("invoice.payment_failed", failed))
    (payment,) = _all(engine, PAYMENTS)
    assert (payment["status"], payment["amount"]) == ("failed", 1000)

    _deliver(
        engine,
        processor,
        event("invoice.paid", _invoice("in_retry", "subscription_cycle")),
    )

    assert len(_all(engine, ORDERS)) == 2
    (payment,) = _all(engine, PAYMENTS)
    assert (payment["status"], payment["amount_received"]) == ("succeeded", 1000)
    assert _all(engine, ORDERS)[1]["status"] == "paid"


def test_a_late_payment_failed_does_not_undo_a_paid_invoice(
    engine: Engine, processor: Processor
) -> None:
    _recurring(engine)
    _deliver(
        engine,
        processor,
        event("invoice.paid", _invoice("in_late", "subscription_cycle")),
        event("invoice.payment_failed", _invoice("in_late", "subscription_cycle")),
    )

    assert [row["status"] for row in _all(engine, PAYMENTS)] == ["succeeded"]


def test_an_invoice_that_needs_action_records_a_payment_requiring_action(
    engine: Engine, processor: Processor
) -> None:
    _recurring(engine)
    invoice = _invoice("in_3ds", "subscription_cycle", amount_paid=0, status="open")

    _deliver(engine, processor, event("invoice.payment_action_required", invoice))

    (payment,) = _all(engine, PAYMENTS)
    assert (payment["status"], payment["amount_received"]) == ("requires_action", None)
    assert _all(engine, ORDERS)[1]["status"] == "pending"


def test_an_invoice_without_a_subscription_is_acknowledged_and_writes_nothing(
    engine: Engine, processor: Processor
) -> None:
    invoice = _invoice("in_manual", "manual")
    invoice["parent"] = None

    _deliver(engine, processor, event("invoice.paid", invoice))

    assert _all(engine, PAYMENTS) == []
    assert "is not for a subscription" in _all(engine, EVENTS)[0]["note"]


def test_a_renewal_in_a_zero_decimal_currency_gets_an_exact_price(
    engine: Engine, processor: Processor
) -> None:
    _recurring(engine)
    invoice = _invoice(
        "in_jpy", "subscription_cycle", currency="jpy", amount_due=500, amount_paid=500
    )

    _deliver(engine, processor, event("invoice.paid", invoice))

    renewal = _all(engine, ORDERS)[1]
    assert (renewal["price"], renewal["currency"]) == (Decimal("500"), "jpy")


@pytest.mark.parametrize(
    "paid",
    [{"amount_paid": 100}, {"amount_paid": 0}, {"currency": "eur"}],
    ids=["cheaper-price", "free-trial", "other-currency"],
)
def test_a_first_invoice_not_at_the_orders_price_does_not_pay_the_order(
    engine: Engine, processor: Processor, paid: dict[str, Any]
) -> None:
    recurring_id = _recurring(engine)  # its order costs 10.00 usd
    order_id = _one(engine, RECURRING, recurring_id)["order_id"]
    invoice = _invoice("in_first", "subscription_create", **paid)

    _deliver(engine, processor, event("invoice.paid", invoice))

    (payment,) = _all(engine, PAYMENTS)
    assert (payment["order_id"], payment["amount"], payment["currency"]) == (
        order_id,
        1000,
        "usd",
    )
    assert payment["status"] == "mismatch"
    assert "the payment is for 1000 usd" in payment["failure_message"]
    assert _one(engine, ORDERS, order_id)["status"] == "pending"


def test_a_manual_invoice_of_a_subscription_gets_an_order_of_its_own(
    engine: Engine, processor: Processor
) -> None:
    recurring_id = _recurring(engine)
    first_order = _one(engine, RECURRING, recurring_id)["order_id"]

    _deliver(engine, processor, event("invoice.paid", _invoice("in_extra", "manual")))

    orders = _all(engine, ORDERS)
    assert [row["id"] for row in orders][0] == first_order
    (payment,) = _all(engine, PAYMENTS)
    assert payment["order_id"] != first_order
    assert _one(engine, ORDERS, first_order)["status"] == "pending"
    assert _one(engine, ORDERS, payment["order_id"])["status"] == "paid"


@pytest.mark.parametrize("kind", ["subscription", "invoice"])
def test_metadata_naming_a_row_of_another_subscription_changes_nothing(
    engine: Engine, processor: Processor, kind: str
) -> None:
    """Two installations sharing a Stripe account reuse each other's ids."""
    recurring_id = _recurring(engine, stripe_id="sub_ours")
    before = _one(engine, RECURRING, recurring_id)
    metadata = {"recurring_payment_id": str(recurring_id)}
    if kind == "subscription":
        obj = _subscription("canceled", id="sub_theirs", metadata=metadata)
        body = _sub_event("customer.subscription.updated", obj, 5, False)
    else:
        invoice = _invoice("in_theirs", "subscription_create")
        details = invoice["parent"]["subscription_details"]
        details.update(subscription="sub_theirs", metadata=metadata)
        body = event("invoice.paid", invoice)

    _deliver(engine, processor, body)

    assert _one(engine, RECURRING, recurring_id) == before
    assert _all(engine, PAYMENTS) == []
    [(status, note)] = [(row["status"], row["note"]) for row in _all(engine, EVENTS)]
    assert status == "processed"
    assert "which belongs to subscription sub_ours; left alone" in note


@pytest.mark.parametrize("reference", ["abc", "١", "99999999999999999999", "-1"])
def test_a_metadata_id_that_is_not_one_of_ours_names_no_row(
    engine: Engine, processor: Processor, reference: str
) -> None:
    recurring_id = _recurring(engine, stripe_id=None)
    obj = _subscription("active", metadata={"recurring_payment_id": reference})

    _deliver(
        engine, processor, _sub_event("customer.subscription.created", obj, 5, False)
    )

    assert _one(engine, RECURRING, recurring_id)["stripe_subscription_id"] is None
    [(status, note)] = [(row["status"], row["note"]) for row in _all(engine, EVENTS)]
    assert (status, "no recurring payment" in note) == ("processed", True)


def _invoice_payment(invoice_id: str, intent: str) -> dict[str, Any]:
    """Stripe's invoice_payment object, as invoice_payment.paid carries it."""
    return {
        "id": f"inpay_for_{invoice_id}",
        "object": "invoice_payment",
        "amount_paid": 1000,
        "amount_requested": 1000,
        "created": 1_900_000_000,
        "currency": "usd",
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": intent},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": 1_900_000_000},
    }


@pytest.mark.parametrize(
    "link_first", [False, True], ids=["invoice_first", "link_first"]
)
def test_a_subscription_payment_is_linked_to_its_intent_and_refunds_find_it(
    engine: Engine, processor: Processor, link_first: bool
) -> None:
    """Today's invoices name no PaymentIntent; invoice_payment.paid does."""
    recurring_id = _recurring(engine)
    order_id = _one(engine, RECURRING, recurring_id)["order_id"]
    paid = event("invoice.paid", _invoice("in_first", "subscription_create"))
    link = event("invoice_payment.paid", _invoice_payment("in_first", INTENT))
    for body in [link, paid] if link_first else [paid, link]:
        _deliver(engine, processor, body)

    (payment,) = _all(engine, PAYMENTS)
    assert (payment["order_id"], payment["status"]) == (order_id, "succeeded")
    assert payment["stripe_payment_intent_id"] == INTENT

    _deliver(engine, processor, event("refund.created", _refund("re_sub", 400)))

    (refund,) = _all(engine, REFUNDS)
    assert (refund["payment_id"], refund["amount"]) == (payment["id"], 400)
    assert _one(engine, PAYMENTS, payment["id"])["refunded_amount"] == 400
    assert {status for _, status in _events(engine)} == {"processed"}
