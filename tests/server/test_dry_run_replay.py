"""`actionflow dry-run --replay`: a stored event through today's flows, compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import load_project
from actionflow.engine.inbox import EVENTS, RUNS, Processor
from actionflow.engine.notifyconfig import NotifySettings
from actionflow.engine.outbox import OUTBOX
from actionflow.engine.services import Services
from actionflow.server.cli import main
from tests.engine.test_domain_flows import _invoice, _order, _recurring
from tests.engine.test_inbox import (
    ORDERS,
    PAYMENTS,
    _deliver,
    _drain,
    _intent_event,
    _order_and_payment,
)
from tests.stripe_events import event


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project made by `actionflow init`: its own copy of the example flows."""
    folder = tmp_path / "shop"
    result = CliRunner().invoke(main, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def _process_a_paid_order(engine: Engine, project: Path) -> dict[str, Any]:
    """A payment_intent.succeeded processed by the worker with the project's flows."""
    _order_and_payment(engine)
    intent = _intent_event("payment_intent.succeeded", receipt_email="b@example.com")
    assert _deliver(engine, intent)
    notify = NotifySettings(templates=project / "templates")
    flows = load_project([project / "flows"])
    _drain(Processor(engine, flows, services=Services(notify=notify)))
    return intent


def _replay(database_url: str, project: Path, key: str, *options: str) -> Any:
    return CliRunner().invoke(
        main,
        ["dry-run", "--replay", key, "--config", str(project / "actionflow.yaml")]
        + list(options),
        env={"ACTIONFLOW_DATABASE_URL": database_url},
    )


def _snapshot(engine: Engine) -> list[Any]:
    with db.read(engine) as connection:
        return [
            [dict(row) for row in connection.execute(select(table)).mappings()]
            for table in (ORDERS, PAYMENTS, RUNS, OUTBOX, EVENTS)
        ]


def test_a_replay_names_exactly_the_status_an_edited_extension_now_writes(
    engine: Engine, database_url: str, project: Path
) -> None:
    event = _process_a_paid_order(engine, project)
    flow = project / "flows" / "MarkOrderPaid.yaml"
    flow.write_text(
        flow.read_text().replace("set: {status: paid}", "set: {status: shipped}")
    )
    before = _snapshot(engine)

    result = _replay(database_url, project, event["id"], "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["differences"] == [
        {
            "flow": "MarkOrderPaid",
            "kind": "change",
            "step": "order_paid",
            "what": "order 1 status",
            "was": "paid",
            "would_be": "shipped",
            "text": "extension MarkOrderPaid step order_paid: order 1 status would "
            'be "shipped" where it was "paid"',
        }
    ]
    assert [run["flow"] for run in plan["runs"]] == [
        "StripePaymentCallback",
        "EmailReceipt",
        "MarkOrderPaid",
        "SendReceipt",
    ]
    assert _snapshot(engine) == before


def test_a_replay_through_unchanged_flows_shows_no_difference(
    engine: Engine, database_url: str, project: Path
) -> None:
    _process_a_paid_order(engine, project)
    before = _snapshot(engine)

    result = _replay(database_url, project, "1")

    assert result.exit_code == 0, result.output
    assert "Differences from the recorded processing\n  no difference" in result.output
    # The receipt was queued the first time; the replay shows it queued anew.
    assert "email    EmailReceipt.receipt  to b@example.com" in result.output
    assert "not queued or sent again" not in result.output
    assert _snapshot(engine) == before


def test_a_replay_names_steps_now_skipped_and_outputs_that_changed(
    engine: Engine, database_url: str, project: Path
) -> None:
    event = _process_a_paid_order(engine, project)
    flow = project / "flows" / "MarkOrderPaid.yaml"
    flow.write_text(
        flow.read_text().replace(
            "trigger.outputs.status == 'succeeded'", "trigger.outputs.amount > 5000"
        )
    )

    result = _replay(database_url, project, event["id"], "--json")

    assert result.exit_code == 0, result.output
    texts = [item["text"] for item in json.loads(result.output)["differences"]]
    assert texts == [
        "extension MarkOrderPaid step order_paid would be skipped where it was ok",
        "extension MarkOrderPaid would not write order 1; step order_paid wrote it",
        "extension MarkOrderPaid outputs.paid would be false where it was true",
        "extension SendReceipt step receipt would be skipped where it was ok",
    ]


def test_a_replay_of_an_event_that_does_not_exist_says_how_to_find_one(
    engine: Engine, database_url: str, project: Path
) -> None:
    result = _replay(database_url, project, "evt_missing")
    assert result.exit_code == 1
    assert "no event 'evt_missing'" in result.output


def test_rows_the_replay_inserts_anew_are_matched_to_the_recorded_ones(
    engine: Engine, database_url: str, project: Path
) -> None:
    recurring_id = _recurring(engine)
    renewal = event("invoice.paid", _invoice("in_renewal", "subscription_cycle"))
    assert _deliver(engine, renewal)
    _drain(Processor(engine, load_project([project / "flows"])))
    # An order made since: the renewal's order and payment cannot get their
    # ids back when the replay inserts them again.
    later = _order(engine)
    assert later > recurring_id

    result = _replay(database_url, project, renewal["id"], "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    inserted = [
        (change["table"], change["after"]["id"])
        for run in plan["runs"]
        for change in run["changes"]
        if change["before"] is None
    ]
    recorded = [
        (change["table"], change["after"]["id"])
        for run in plan["recorded"]["runs"]
        for change in run["changes"]
        if change["before"] is None
    ]
    assert [table for table, _ in inserted] == ["order", "payment"]
    assert inserted != recorded  # new ids, and yet:
    assert plan["differences"] == []


def test_a_replay_of_an_extension_that_now_fails_names_what_would_not_happen(
    engine: Engine, database_url: str, project: Path
) -> None:
    event = _process_a_paid_order(engine, project)
    flow = project / "flows" / "MarkOrderPaid.yaml"
    flow.write_text(
        flow.read_text().replace(
            "steps:\n",
            'steps:\n  - id: closed\n    if: "{{ trigger.outputs.amount > 0 }}"\n'
            "    use: fail\n    with: {message: shop closed}\n",
        )
    )

    result = _replay(database_url, project, event["id"], "--json")

    assert result.exit_code == 1, result.output
    found = json.loads(result.output)["differences"]
    assert [(item["kind"], item["flow"], item["step"]) for item in found] == [
        ("flow", "SendReceipt", None),
        ("status", "MarkOrderPaid", None),
        ("step", "MarkOrderPaid", "closed"),
        ("step", "MarkOrderPaid", "order_paid"),
        ("change", "MarkOrderPaid", "order_paid"),
    ]
    assert [item["text"] for item in found[2:]] == [
        "extension MarkOrderPaid step closed would be failed (shop closed); "
        "it did not run",
        "extension MarkOrderPaid step order_paid would not run; it was ok",
        "extension MarkOrderPaid would not write order 1; step order_paid wrote it",
    ]
    assert found[0]["text"] == (
        "extension SendReceipt would not run where it ended succeeded"
    )
    assert found[1]["text"].startswith(
        "extension MarkOrderPaid would end failed ("
    ) and found[1]["text"].endswith("shop closed [closed]) where it ended succeeded")
