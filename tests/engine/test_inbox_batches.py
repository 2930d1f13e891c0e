"""Events stored in groups and processed in batches keep every single-event rule.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import (
    EVENTS,
    RUNS,
    Processor,
    RetryPolicy,
    store_events,
)
from actionflow.engine.tables import Order, Payment
from tests.engine.test_inbox import _order_and_payment
from tests.stripe_events import event, stripe_object

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]


def _payable(engine: Engine, intent: str) -> tuple[int, int]:
    return _order_and_payment(engine, intent=intent)


def _succeeded(intent: str, **changes: Any) -> dict[str, Any]:
    body = stripe_object("payment_intent")
    body.update(id=intent, status="succeeded", amount_received=1099, **changes)
    return event("payment_intent.succeeded", body)


def _column(engine: Engine, table: Any, name: str, row_id: int) -> Any:
    with db.read(engine) as connection:
        return connection.execute(
            select(table.c[name]).where(table.c.id == row_id)
        ).scalar_one()


def _events(engine: Engine) -> list[dict[str, Any]]:
    with db.read(engine) as connection:
        rows = connection.execute(select(EVENTS).order_by(EVENTS.c.id)).mappings()
        return [dict(row) for row in rows]


def test_a_group_of_events_is_stored_once_each_duplicates_included(
    engine: Engine,
) -> None:
    first, second = _succeeded("pi_group_1"), _succeeded("pi_group_2")
    group = [first, first, second]
    stored = store_events(engine, [(body, json.dumps(body)) for body in group])
    assert stored == [True, False, True]
    assert store_events(engine, [(second, json.dumps(second))]) == [False]
    assert [row["stripe_event_id"] for row in _events(engine)] == [
        first["id"],
        second["id"],
    ]


def test_a_batch_processes_its_events_and_rolls_back_a_failing_one_alone(
    engine: Engine,
) -> None:
    processor = Processor(
        engine,
        load_project([EXAMPLE_FLOWS]),
        retry=RetryPolicy(attempts=3, base_seconds=0.0),
        batch=8,
    )
    payables = [_payable(engine, f"pi_batch_{n}") for n in range(3)]
    broken = _succeeded("pi_batch_1")
    del broken["data"]["object"]["currency"]  # the system flow fails on it
    bodies = [_succeeded("pi_batch_0"), broken, _succeeded("pi_batch_2")]
    store_events(engine, [(body, json.dumps(body)) for body in bodies])

    assert processor.process_next_events() == 3

    for number in (0, 2):
        order_id, payment_id = payables[number]
        assert _column(engine, PAYMENTS, "status", payment_id) == "succeeded"
        assert _column(engine, ORDERS, "status", order_id) == "paid"
    order_id, payment_id = payables[1]
    assert _column(engine, PAYMENTS, "status", payment_id) == "pending"
    assert _column(engine, ORDERS, "status", order_id) == "pending"
    events = _events(engine)
    assert [row["status"] for row in events] == ["processed", "pending", "processed"]
    assert events[1]["attempts"] == 1
    assert "no key 'currency'" in events[1]["last_error"]
    with db.read(engine) as connection:
        runs = connection.execute(
            select(RUNS.c.event_id, RUNS.c.flow, RUNS.c.status).order_by(RUNS.c.id)
        ).all()
    failed = [run for run in runs if run.event_id == events[1]["id"]]
    assert [(run.flow, run.status) for run in failed] == [
        ("StripePaymentCallback", "failed")
    ]
    # The processed events ran each flow once; nothing of the failed one stayed.
    for row in (events[0], events[2]):
        flows = sorted(run.flow for run in runs if run.event_id == row["id"])
        assert flows.count("StripePaymentCallback") == 1
        assert flows.count("MarkOrderPaid") == 1

    # Retried alone, it fails again: nothing else is processed twice.
    assert processor.process_next_events() == 1
    assert [row["status"] for row in _events(engine)] == [
        "processed",
        "pending",
        "processed",
    ]
    assert processor.process_next_events() == 1
    assert _events(engine)[1]["status"] == "failed"
    assert processor.process_next_events() == 0


def test_a_batch_applies_two_events_of_one_object_in_their_order(
    engine: Engine,
) -> None:
    processor = Processor(engine, load_project([EXAMPLE_FLOWS]), batch=8)
    _order_id, payment_id = _payable(engine, "pi_batch_twice")
    body = _succeeded("pi_batch_twice")
    again = event("payment_intent.succeeded", body["data"]["object"])
    store_events(engine, [(body, json.dumps(body)), (again, json.dumps(again))])

    assert processor.process_next_events() == 2

    assert _column(engine, PAYMENTS, "status", payment_id) == "succeeded"
    events = _events(engine)
    assert [row["status"] for row in events] == ["processed", "processed"]
    assert events[1]["note"] is not None and "already succeeded" in events[1]["note"]


def test_writers_of_one_process_take_turns_in_the_order_they_came() -> None:
    turns = db._Turns()
    order: list[int] = []
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with turns.turn():
            holding.set()
            release.wait(10)
            order.append(0)

    def later(number: int) -> None:
        with turns.turn():
            order.append(number)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert holding.wait(10)
    for number in range(1, 6):
        thread = threading.Thread(target=later, args=(number,))
        thread.start()
        threads.append(thread)
        # Each waiter has its ticket before the next one asks.
        while turns._issued <= number:
            threading.Event().wait(0.001)
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4, 5]


UPDATE_FLOW = """
name: SetStatus
inputs:
  id: {type: integer}
steps:
  - id: set
    use: table.update
    with: {table: payment, id: "{{ inputs.id }}", set: {status: failed}}
"""


def test_an_update_without_the_row_before_still_refuses_a_missing_row(
    engine: Engine,
) -> None:
    from actionflow.engine.flow import parse_flow
    from actionflow.engine.runner import run_flow

    flow = parse_flow(UPDATE_FLOW, "SetStatus.yaml")
    _order_id, payment_id = _payable(engine, "pi_update_before")
    with db.write(engine) as connection:
        kept = run_flow(flow, connection, inputs={"id": payment_id})
        saved = run_flow(flow, connection, inputs={"id": payment_id}, keep_before=False)
        missing = run_flow(flow, connection, inputs={"id": 999_999}, keep_before=False)
    assert kept.status == saved.status == "succeeded"
    assert kept.changes[0].before is not None
    assert kept.changes[0].before["status"] == "pending"
    assert saved.changes[0].before is None
    assert saved.changes[0].after["status"] == "failed"
    assert missing.status == "failed"
    assert missing.error is not None
    assert "no payment row with id 999999" in str(missing.error)
