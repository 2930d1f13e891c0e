"""Processing stored events: system flow, extensions, duplicates, failures.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import EVENTS, RUNS, Processor, RetryPolicy, store_event
from actionflow.engine.tables import Order, Payment, utcnow
from tests.stripe_events import event, stripe_object

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
INTENT = "pi_1PgafyB7WZ01zgkWSjxsAJo3"


def _order_and_payment(
    engine: Engine, amount: int = 1099, intent: str = INTENT
) -> tuple[int, int]:
    now = utcnow()
    with db.write(engine) as connection:
        order_id = connection.execute(
            insert(ORDERS)
            .values(
                price=Decimal("10.99"),
                currency="usd",
                user_id="u1",
                status="pending",
                description="",
                created_at=now,
                updated_at=now,
            )
            .returning(ORDERS.c.id)
        ).scalar_one()
        payment_id = connection.execute(
            insert(PAYMENTS)
            .values(
                order_id=order_id,
                amount=amount,
                currency="usd",
                status="pending",
                callback_processed=False,
                stripe_payment_intent_id=intent,
                refunded_amount=0,
                created_at=now,
                updated_at=now,
            )
            .returning(PAYMENTS.c.id)
        ).scalar_one()
    return order_id, payment_id


def _intent_event(kind: str, **changes: Any) -> dict[str, Any]:
    intent = stripe_object("payment_intent")
    intent.update(status="succeeded", amount_received=1099)
    intent.update(changes)
    return event(kind, intent)


def _deliver(engine: Engine, body: dict[str, Any]) -> bool:
    return store_event(engine, body, json.dumps(body))


def _drain(processor: Processor) -> None:
    while processor.process_next_event() or processor.process_next_run():
        pass


def _row(engine: Engine, table: Any, row_id: int) -> dict[str, Any]:
    with db.read(engine) as connection:
        return dict(
            connection.execute(select(table).where(table.c.id == row_id))
            .mappings()
            .one()
        )


def _all(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with db.read(engine) as connection:
        return [
            dict(row)
            for row in connection.execute(select(table).order_by(table.c.id)).mappings()
        ]


@pytest.fixture
def processor(engine: Engine) -> Processor:
    return Processor(engine, load_project([EXAMPLE_FLOWS]))


def test_a_succeeded_event_settles_the_payment_and_pays_the_order(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    assert _deliver(engine, _intent_event("payment_intent.succeeded"))
    _drain(processor)

    payment = _row(engine, PAYMENTS, payment_id)
    assert (payment["status"], payment["callback_processed"]) == ("succeeded", True)
    assert payment["amount_received"] == 1099
    assert _row(engine, ORDERS, order_id)["status"] == "paid"
    assert [(run["flow"], run["status"]) for run in _all(engine, RUNS)] == [
        ("StripePaymentCallback", "succeeded"),
        ("EmailReceipt", "stopped"),  # the PaymentIntent has no receipt_email
        ("MarkOrderPaid", "succeeded"),
        ("SendReceipt", "succeeded"),
    ]
    assert _all(engine, EVENTS)[0]["status"] == "processed"


def test_an_event_stored_twice_is_kept_once(engine: Engine) -> None:
    body = _intent_event("payment_intent.succeeded")
    assert _deliver(engine, body) is True
    assert _deliver(engine, body) is False
    assert len(_all(engine, EVENTS)) == 1


def test_a_second_succeeded_event_for_a_settled_payment_changes_nothing(
    engine: Engine, processor: Processor
) -> None:
    _order_and_payment(engine)
    _deliver(engine, _intent_event("payment_intent.succeeded"))
    _drain(processor)
    before = _all(engine, PAYMENTS)
    _deliver(engine, _intent_event("payment_intent.succeeded"))
    _drain(processor)

    assert _all(engine, PAYMENTS) == before
    flows = [(run["flow"], run["status"]) for run in _all(engine, RUNS)]
    assert flows.count(("MarkOrderPaid", "succeeded")) == 1
    assert flows[-1] == ("StripePaymentCallback", "stopped")


def test_a_late_payment_failed_never_moves_a_succeeded_payment_back(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    _deliver(engine, _intent_event("payment_intent.succeeded"))
    _deliver(
        engine,
        _intent_event(
            "payment_intent.payment_failed", status="requires_payment_method"
        ),
    )
    _drain(processor)
    assert _row(engine, PAYMENTS, payment_id)["status"] == "succeeded"
    assert _row(engine, ORDERS, order_id)["status"] == "paid"


def test_an_amount_mismatch_is_recorded_and_the_order_stays_unpaid(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine, amount=5000)
    _deliver(engine, _intent_event("payment_intent.succeeded"))
    _drain(processor)
    payment = _row(engine, PAYMENTS, payment_id)
    assert payment["status"] == "mismatch"
    assert (
        "Stripe took 1099 usd, the payment is for 5000 usd"
        in payment["failure_message"]
    )
    assert _row(engine, ORDERS, order_id)["status"] == "pending"


def test_an_event_for_an_unknown_payment_intent_is_recorded_with_the_reason(
    engine: Engine, processor: Processor
) -> None:
    _deliver(engine, _intent_event("payment_intent.succeeded"))
    _drain(processor)
    stored = _all(engine, EVENTS)[0]
    assert stored["status"] == "processed"
    assert f"no payment row for PaymentIntent {INTENT}" in stored["note"]
    assert [run["flow"] for run in _all(engine, RUNS)] == ["StripePaymentCallback"]


def test_an_event_type_no_flow_handles_is_ignored(
    engine: Engine, processor: Processor
) -> None:
    _deliver(engine, event("customer.created", {"id": "cus_1", "object": "customer"}))
    _drain(processor)
    stored = _all(engine, EVENTS)[0]
    assert (stored["status"], stored["note"]) == (
        "ignored",
        "no flow handles customer.created",
    )


FAILING_EXTENSION = """
name: AlwaysFails
trigger: {after: StripePaymentCallback}
steps:
  - id: boom
    use: assert
    with: {that: false, message: "the CRM is down"}
"""


def test_a_failing_extension_keeps_the_system_flow_work_and_is_retried_alone(
    engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "fails.yaml").write_text(FAILING_EXTENSION)
    processor = Processor(
        engine, load_project([EXAMPLE_FLOWS, tmp_path]), retry=RetryPolicy(attempts=2)
    )
    order_id, payment_id = _order_and_payment(engine)
    _deliver(engine, _intent_event("payment_intent.succeeded"))
    _drain(processor)

    assert _row(engine, PAYMENTS, payment_id)["status"] == "succeeded"
    assert _row(engine, ORDERS, order_id)["status"] == "paid"
    failing = [run for run in _all(engine, RUNS) if run["flow"] == "AlwaysFails"]
    assert len(failing) == 1
    assert (failing[0]["status"], failing[0]["attempts"]) == ("pending", 1)
    assert "the CRM is down" in failing[0]["error"]

    with db.write(engine) as connection:
        connection.execute(update(RUNS).values(next_attempt_at=utcnow()))
    _drain(processor)
    retried = _row(engine, RUNS, failing[0]["id"])
    assert (retried["status"], retried["attempts"]) == ("failed", 2)


BROKEN_SYSTEM_STEP = "{{ event.data.object.no_such_key }}"


def test_a_failing_system_flow_rolls_back_and_the_event_is_retried_then_parked(
    engine: Engine,
) -> None:
    flows = load_project([EXAMPLE_FLOWS])
    processor = Processor(
        engine, flows, retry=RetryPolicy(attempts=2, base_seconds=0.0)
    )
    _order_and_payment(engine)
    body = _intent_event("payment_intent.succeeded")
    del body["data"]["object"]["currency"]
    _deliver(engine, body)

    processor.process_next_event()
    first = _all(engine, EVENTS)[0]
    assert (first["status"], first["attempts"]) == ("pending", 1)
    assert "no key 'currency'" in first["last_error"]
    assert _all(engine, PAYMENTS)[0]["status"] == "pending"

    processor.process_next_event()
    parked = _all(engine, EVENTS)[0]
    assert (parked["status"], parked["attempts"]) == ("failed", 2)
    assert [run["status"] for run in _all(engine, RUNS)] == ["failed", "failed"]
