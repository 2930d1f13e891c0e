"""Events that arrive out of order: an older event never undoes a newer one.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import EVENTS, RUNS, VERSIONS, Processor
from tests.engine.test_inbox import (
    ORDERS,
    PAYMENTS,
    _all,
    _deliver,
    _drain,
    _order_and_payment,
    _row,
)
from tests.stripe_events import event, stripe_object

INTENT = "pi_1PgafyB7WZ01zgkWSjxsAJo3"


@pytest.fixture
def processor(engine: Engine) -> Processor:
    return Processor(engine, load_project([EXAMPLE_FLOWS]))


def _subscription_event(kind: str, created: int, status: str) -> dict[str, Any]:
    subscription = stripe_object("subscription")
    subscription.update(id="sub_1", status=status)
    return event(kind, subscription, created=created)


def _intent_event(kind: str, created: int) -> dict[str, Any]:
    intent = stripe_object("payment_intent")
    if kind == "payment_intent.succeeded":
        intent.update(status="succeeded", amount_received=1099)
    else:
        intent.update(last_payment_error={"message": "Your card was declined."})
    return event(kind, intent, created=created)


def _versions(engine: Engine) -> list[dict[str, Any]]:
    with db.read(engine) as connection:
        return [dict(row) for row in connection.execute(select(VERSIONS)).mappings()]


def _status(engine: Engine, stripe_id: str) -> tuple[str, str | None]:
    with db.read(engine) as connection:
        row = connection.execute(
            select(EVENTS.c.status, EVENTS.c.note).where(
                EVENTS.c.stripe_event_id == stripe_id
            )
        ).one()
    return row.status, row.note


def test_an_event_older_than_one_applied_is_skipped_with_a_note(
    engine: Engine, processor: Processor
) -> None:
    newer = _subscription_event("customer.subscription.updated", 2000, "canceled")
    older = _subscription_event("customer.subscription.updated", 1000, "active")
    _deliver(engine, newer)
    _drain(processor)
    _deliver(engine, older)
    _drain(processor)

    status, note = _status(engine, older["id"])
    assert status == "skipped"
    assert note == (
        f"older than {newer['id']} (created 2000), already applied to sub_1; "
        "this event was created 1000"
    )
    assert len(_all(engine, RUNS)) == 1
    assert _versions(engine)[0]["stripe_event_id"] == newer["id"]


def test_an_event_from_the_same_second_is_not_older_and_applies(
    engine: Engine, processor: Processor
) -> None:
    first = _subscription_event("customer.subscription.updated", 1500, "active")
    second = _subscription_event("customer.subscription.updated", 1500, "past_due")
    _deliver(engine, first)
    _drain(processor)
    _deliver(engine, second)
    _drain(processor)

    assert _status(engine, second["id"])[0] == "processed"
    assert len(_all(engine, RUNS)) == 2


def test_a_late_older_payment_failed_is_skipped_after_succeeded(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    succeeded = _intent_event("payment_intent.succeeded", 2000)
    failed = _intent_event("payment_intent.payment_failed", 1000)
    _deliver(engine, succeeded)
    _drain(processor)
    _deliver(engine, failed)
    _drain(processor)

    assert _status(engine, failed["id"])[0] == "skipped"
    assert _row(engine, PAYMENTS, payment_id)["status"] == "succeeded"
    assert _row(engine, ORDERS, order_id)["status"] == "paid"


def test_succeeded_applies_even_after_a_payment_failed_stamped_later(
    engine: Engine, processor: Processor
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    failed = _intent_event("payment_intent.payment_failed", 2000)
    succeeded = _intent_event("payment_intent.succeeded", 1000)
    _deliver(engine, failed)
    _drain(processor)
    assert _row(engine, PAYMENTS, payment_id)["status"] == "failed"
    _deliver(engine, succeeded)
    _drain(processor)

    assert _status(engine, succeeded["id"])[0] == "processed"
    assert _row(engine, PAYMENTS, payment_id)["status"] == "succeeded"
    assert _row(engine, ORDERS, order_id)["status"] == "paid"
    # The newest created time stays the one recorded for the object.
    assert _versions(engine)[0]["stripe_created"] == 2000


def test_an_ignored_event_records_no_version(
    engine: Engine, processor: Processor
) -> None:
    _deliver(engine, event("customer.created", {"id": "cus_1"}, created=5000))
    _drain(processor)
    assert _versions(engine) == []


def test_events_without_an_object_id_are_processed_in_any_order(
    engine: Engine, processor: Processor
) -> None:
    newer = event(
        "customer.subscription.updated", {"object": "subscription"}, created=2
    )
    older = event(
        "customer.subscription.updated", {"object": "subscription"}, created=1
    )
    _deliver(engine, newer)
    _deliver(engine, older)
    _drain(processor)
    # No object id, nothing to order by: neither is skipped as older (the flow
    # then fails on the missing id, which is the flow's business).
    assert _status(engine, older["id"])[0] != "skipped"
    assert _status(engine, newer["id"])[0] != "skipped"
    assert _versions(engine) == []
