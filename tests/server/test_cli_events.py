"""Retries, parking and replay, seen through `actionflow events` and `runs`.

A system flow that needs an order which does not exist yet fails; the test
creates the order when it wants the flow to start succeeding. Runs on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, insert, select

from actionflow.engine import db
from actionflow.engine.flow import (
    EXAMPLE_FLOWS,
    SYSTEM_FLOWS,
    FlowSet,
    load_directory,
    load_project,
    parse_flow,
)
from actionflow.engine.inbox import EVENTS, RUNS, Processor, RetryPolicy, store_event
from actionflow.engine.tables import utcnow
from actionflow.server.cli import main
from tests.delivery import ORDERS, WATCHED_FLOWS, make_payments, succeeded_event
from tests.stripe_events import event

NEEDS_AN_ORDER = """
name: ChargeDisputed
trigger: {stripe: [charge.dispute.created]}
steps:
  - id: order
    use: table.get
    with: {table: order, where: {user_id: "{{ event.data.object.metadata.user }}"}}
"""


def _processor(engine: Engine, attempts: int) -> Processor:
    flows = FlowSet(
        [
            *load_directory(SYSTEM_FLOWS, system=True),
            parse_flow(NEEDS_AN_ORDER, "ChargeDisputed.yaml", system=True),
        ]
    )
    return Processor(engine, flows, retry=RetryPolicy(attempts, base_seconds=0.0))


def _dispute(engine: Engine) -> dict[str, Any]:
    body = event(
        "charge.dispute.created",
        {"id": "dp_1", "object": "dispute", "metadata": {"user": "disputer"}},
    )
    store_event(engine, body, json.dumps(body))
    return body


def _create_the_order(engine: Engine) -> None:
    now = utcnow()
    with db.write(engine) as connection:
        connection.execute(
            insert(ORDERS).values(
                price=Decimal("5.00"),
                currency="usd",
                user_id="disputer",
                status="pending",
                description="",
                created_at=now,
                updated_at=now,
            )
        )


def _event(engine: Engine) -> dict[str, Any]:
    with db.read(engine) as connection:
        return dict(connection.execute(select(EVENTS)).mappings().one())


def _runs(engine: Engine) -> list[tuple[str, str]]:
    """Runs in order; of the example extensions, only MarkOrderPaid counts."""
    watched = (*WATCHED_FLOWS, "ChargeDisputed")
    with db.read(engine) as connection:
        rows = connection.execute(
            select(RUNS.c.flow, RUNS.c.status)
            .where(RUNS.c.flow.in_(watched))
            .order_by(RUNS.c.id)
        )
        return [(flow, status) for flow, status in rows]


def _cli(database_url: str, *arguments: str) -> Result:
    runner = CliRunner()
    return runner.invoke(
        main, list(arguments), env={"ACTIONFLOW_DATABASE_URL": database_url}
    )


def test_a_flow_that_fails_twice_then_succeeds_ends_processed_after_two_retries(
    engine: Engine,
) -> None:
    processor = _processor(engine, attempts=5)
    _dispute(engine)

    processor.process_next_event()
    processor.process_next_event()
    assert (_event(engine)["status"], _event(engine)["attempts"]) == ("pending", 2)
    _create_the_order(engine)
    processor.process_next_event()

    stored = _event(engine)
    assert (stored["status"], stored["attempts"]) == ("processed", 3)
    assert stored["last_error"] is None
    assert _runs(engine) == [
        ("ChargeDisputed", "failed"),
        ("ChargeDisputed", "failed"),
        ("ChargeDisputed", "succeeded"),
    ]


def test_a_flow_that_always_fails_is_parked_listed_and_replayed_once_fixed(
    engine: Engine, database_url: str
) -> None:
    processor = _processor(engine, attempts=3)
    body = _dispute(engine)
    while processor.process_next_event():
        pass
    assert _event(engine)["status"] == "failed"

    listed = _cli(database_url, "events", "list", "--status", "failed")
    assert listed.exit_code == 0, listed.output
    assert body["id"] in listed.stdout
    assert "no order row matches" in listed.stdout
    shown = _cli(database_url, "events", "show", body["id"])
    assert "status:         failed" in shown.stdout
    assert "attempts:       3" in shown.stdout
    assert shown.stdout.count("ChargeDisputed failed") == 3

    _create_the_order(engine)
    replayed = _cli(database_url, "events", "replay", "--failed")
    assert replayed.exit_code == 0, replayed.output
    assert "1 event(s) set back to pending" in replayed.stdout
    while processor.process_next_event():
        pass

    assert _event(engine)["status"] == "processed"
    assert _runs(engine).count(("ChargeDisputed", "succeeded")) == 1
    assert (
        _cli(database_url, "events", "list", "--status", "failed").stdout.count("evt_")
        == 0
    )


def test_replaying_a_processed_payment_event_changes_nothing_twice(
    engine: Engine, database_url: str
) -> None:
    processor = Processor(engine, load_project([EXAMPLE_FLOWS]))
    make_payments(engine, 1)
    body = succeeded_event(0)
    store_event(engine, body, json.dumps(body))
    while processor.process_next_event() or processor.process_next_run():
        pass

    result = _cli(database_url, "events", "replay", body["id"])
    assert result.exit_code == 0, result.output
    while processor.process_next_event() or processor.process_next_run():
        pass

    assert _event(engine)["status"] == "processed"
    assert _runs(engine) == [
        ("StripePaymentCallback", "succeeded"),
        ("MarkOrderPaid", "succeeded"),
        ("StripePaymentCallback", "stopped"),
    ]


def test_runs_show_lists_each_step_with_its_outcome_and_duration(
    engine: Engine, database_url: str
) -> None:
    processor = Processor(engine, load_project([EXAMPLE_FLOWS]))
    make_payments(engine, 1)
    body = succeeded_event(0)
    store_event(engine, body, json.dumps(body))
    processor.process_next_event()

    listed = _cli(database_url, "runs", "list", "--flow", "StripePaymentCallback")
    assert listed.exit_code == 0
    assert "StripePaymentCallback  succeeded" in listed.stdout
    shown = _cli(database_url, "runs", "show", "1")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "flow:         StripePaymentCallback" in lines
    step_lines = [line for line in lines if line.startswith("  ")]
    assert [line.split()[:3] for line in step_lines] == [
        ["source", "set", "ok"],
        ["no_intent", "stop", "skipped"],
        ["payment", "table.get", "ok"],
        ["unknown_intent", "stop", "skipped"],
        ["order", "table.get", "skipped"],
        ["unknown_order", "stop", "skipped"],
        ["order_amount", "money.minor_units", "skipped"],
        ["created", "table.insert", "skipped"],
        ["the", "set", "ok"],
        ["already_settled", "stop", "skipped"],
        ["still_paying", "stop", "skipped"],
        ["mismatch", "table.update", "skipped"],
        ["mismatch_recorded", "stop", "skipped"],
        ["succeeded", "table.update", "ok"],
        ["failed", "table.update", "skipped"],
    ]
    assert all(line.split()[4] == "ms" for line in step_lines)
    as_json = json.loads(_cli(database_url, "runs", "show", "1", "--json").stdout)
    assert as_json["steps"][0]["outcome"] == "ok"
    assert isinstance(as_json["steps"][0]["ms"], float)


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        pytest.param(
            ["events", "show", "evt_nope"], 1, "no event 'evt_nope'", id="unknown-event"
        ),
        pytest.param(["runs", "show", "999"], 1, "no run 999", id="unknown-run"),
        pytest.param(
            ["events", "replay"], 2, "give event ids or --failed", id="replay-nothing"
        ),
        pytest.param(
            ["events", "list", "--status", "weird"],
            2,
            "'weird' is not one of",
            id="bad-status",
        ),
    ],
)
def test_cli_errors_say_what_was_wrong_with_exit_codes(
    engine: Engine, database_url: str, arguments: list[str], code: int, message: str
) -> None:
    result = _cli(database_url, *arguments)
    assert result.exit_code == code
    assert message in result.output


def test_replay_help_explains_what_replay_does() -> None:
    result = CliRunner().invoke(main, ["events", "replay", "--help"])
    assert "set back to `pending`" in result.output
    assert "system flows do nothing to a payment that is" in result.output
