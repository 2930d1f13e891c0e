"""`actionflow dry-run`: what a flow would do, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import SYSTEM_FLOWS
from actionflow.server.cli import main
from tests.engine.test_inbox import INTENT, PAYMENTS, _intent_event, _order_and_payment

FLOW = str(SYSTEM_FLOWS / "StripePaymentCallback.yaml")


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with db.read(engine) as connection:
        return [dict(row) for row in connection.execute(select(PAYMENTS)).mappings()]


def _run(database_url: str, *arguments: str) -> Any:
    environment = {"ACTIONFLOW_DATABASE_URL": database_url}
    return CliRunner().invoke(main, ["dry-run", *arguments], env=environment)


def test_a_dry_run_shows_the_steps_and_changes_and_writes_nothing(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    before = _rows(engine)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(_intent_event("payment_intent.succeeded")))

    result = _run(database_url, FLOW, "--event", str(event_file))

    assert result.exit_code == 0, result.output
    assert "flow StripePaymentCallback  succeeded" in result.output
    assert 'would update payment 1: status "pending" -> "succeeded"' in result.output
    assert "Plan: succeeded" in result.output
    assert _rows(engine) == before


def test_a_dry_run_builds_the_event_for_an_order_and_prints_json(
    engine: Engine, database_url: str
) -> None:
    order_id, payment_id = _order_and_payment(engine)
    before = _rows(engine)

    result = _run(
        database_url,
        FLOW,
        "--event-type",
        "payment_intent.succeeded",
        "--order",
        str(order_id),
        "--json",
    )

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["status"] == "succeeded"
    callback = plan["runs"][0]
    assert callback["flow"] == "StripePaymentCallback"
    [change] = callback["changes"]
    assert (change["table"], change["after"]["status"]) == ("payment", "succeeded")
    assert change["step"] == "succeeded"
    assert callback["outputs"]["payment_intent"] == INTENT
    assert _rows(engine) == before


def test_a_dry_run_of_a_failing_flow_exits_1_with_the_step_and_reason(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "Fails.yaml"
    flow.write_text(
        "name: Fails\ntrigger: {stripe: [payment_intent.succeeded]}\nsteps:\n"
        "  - id: check\n    use: assert\n"
        "    with: {that: false, message: the books do not balance}\n"
    )
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(_intent_event("payment_intent.succeeded")))

    result = _run(database_url, str(flow), "--event", str(event_file))

    assert result.exit_code == 1
    assert "the books do not balance [check]" in result.output


def test_a_dry_run_needs_exactly_one_source_of_event(database_url: str) -> None:
    result = _run(database_url, FLOW)
    assert result.exit_code == 2
    assert "give either --event FILE, --event-type TYPE, --replay" in result.output


def test_a_dry_run_refuses_an_event_file_that_is_not_an_event(
    database_url: str, tmp_path: Path
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text('[{"type": "payment_intent.succeeded"}]')

    result = _run(database_url, "--event", str(event_file))

    assert result.exit_code == 1
    assert "is not a Stripe event: it needs an object with a `type`" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "x", "data": ' + "[" * 100_000 + "]" * 100_000 + "}", "too deeply"),
        ('{"type": "payment_intent.succeeded", "created": NaN}', "NaN is not"),
    ],
    ids=["nested-too-deeply", "nan"],
)
def test_an_event_file_that_is_not_plain_json_is_refused_cleanly(
    database_url: str, tmp_path: Path, content: str, message: str
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(content)

    result = _run(database_url, "--event", str(event_file))

    assert result.exit_code == 1
    assert "is not valid JSON" in result.output and message in result.output
    assert not isinstance(result.exception, RecursionError)
    assert "Traceback" not in result.output


def test_control_characters_of_an_event_are_shown_not_sent_to_the_terminal(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    event = {
        "id": "evt_\x1b]0;pwned\x07\u202e",
        "type": "customer.created",
        "data": {"object": {"id": "cus_1"}},
    }
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))

    result = CliRunner().invoke(
        main,
        ["dry-run", "--event", str(event_file)],
        env={"ACTIONFLOW_DATABASE_URL": database_url},
        color=True,
    )

    assert result.exit_code == 0, result.output
    assert "\x07" not in result.output and "\u202e" not in result.output
    assert "evt_\\u001b]0;pwned\\u0007\\u202e" in result.output


def test_an_unknown_action_is_a_usage_error(database_url: str) -> None:
    result = _run(database_url, "--action", "stripe-nope", "--input", "{}")

    assert result.exit_code == 2
    assert "unknown action 'stripe-nope'; actions are: stripe-payment" in result.output
