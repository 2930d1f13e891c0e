"""`actionflow dry-run` of an event's whole path: extensions, notifications, output."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, SYSTEM_FLOWS, load_flow
from actionflow.engine.outbox import OUTBOX
from actionflow.server.cli import main
from tests.engine.test_inbox import ORDERS, PAYMENTS, _intent_event, _order_and_payment

BROKEN = """\
name: Broken
trigger: {after: StripePaymentCallback}
steps:
  - id: mail
    use: notify.email
    with:
      to: shop@example.com
      template: receipt
      data: {order_id: 1, description: "", amount: 1, currency: usd, payment_id: 1}
  - id: check
    use: assert
    with: {that: false, message: the books do not balance}
"""

TELL_CRM = """\
name: TellCrm
trigger: {after: StripePaymentCallback}
steps:
  - id: describe
    use: call
    with:
      flow: DescribePayment
      inputs: {payment_id: "{{ trigger.outputs.payment_id }}"}
  - id: post
    use: notify.webhook
    with:
      url: https://crm.example.com/paid
      body: {order: "{{ trigger.outputs.order_id }}", line: "{{ steps.describe.line }}"}
"""


def _project(tmp_path: Path, config: str = "", **flows: str) -> Path:
    """A project folder: the example flows and templates, plus `flows`."""
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLE_FLOWS, folder / "flows")
    for name, text in flows.items():
        (folder / "flows" / f"{name}.yaml").write_text(text)
    (folder / "actionflow.yaml").write_text(
        f"flows: [flows]\ntemplates: flows/templates\n{config}"
    )
    return folder


def _event_file(tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(_intent_event("payment_intent.succeeded", **changes)))
    return str(path)


def _dry_run(
    database_url: str, *arguments: str, project: Path | None = None, **invoke: Any
) -> Any:
    config = ["--config", str(project / "actionflow.yaml")] if project else []
    return CliRunner().invoke(
        main,
        ["dry-run", *arguments, *config],
        env={"ACTIONFLOW_DATABASE_URL": database_url, **invoke.pop("env", {})},
        **invoke,
    )


def _snapshot(engine: Engine) -> list[Any]:
    with db.read(engine) as connection:
        return [
            [dict(row) for row in connection.execute(select(table)).mappings()]
            for table in (ORDERS, PAYMENTS, OUTBOX)
        ]


def test_without_a_flow_the_event_takes_the_whole_path_and_nothing_is_sent(
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _order_and_payment(engine)
    before = _snapshot(engine)
    event = _event_file(tmp_path, receipt_email="buyer@example.com")
    caplog.set_level(logging.INFO, logger="actionflow.notify")

    result = _dry_run(database_url, "--event", event, "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [(run["flow"], run["after"], run["status"]) for run in plan["runs"]] == [
        ("StripePaymentCallback", None, "succeeded"),
        ("EmailReceipt", "StripePaymentCallback", "succeeded"),
        ("MarkOrderPaid", "StripePaymentCallback", "succeeded"),
        ("SendReceipt", "MarkOrderPaid", "succeeded"),
    ]
    [order_change] = plan["runs"][2]["changes"]
    assert order_change["after"]["status"] == "paid"
    mail, log_line = plan["notifications"]
    assert (mail["kind"], mail["to"], mail["step"]) == (
        "email",
        ["buyer@example.com"],
        "receipt",
    )
    assert mail["subject"] == "Your receipt for order 1"
    assert "10.99 USD" in mail["text"]
    assert log_line == {
        "kind": "log",
        "flow": "SendReceipt",
        "step": "receipt",
        "line": 'message="receipt sent" order_id=1',
    }
    assert any("smtp is not configured" in note for note in plan["notes"])
    assert _snapshot(engine) == before
    assert "receipt sent" not in caplog.text


def test_a_failing_extension_fails_the_plan_and_the_system_flow_stands(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    project = _project(tmp_path, Broken=BROKEN)

    result = _dry_run(database_url, "--event", _event_file(tmp_path), project=project)

    assert result.exit_code == 1, result.output
    assert "extension Broken (after StripePaymentCallback)  failed" in result.output
    verdict = result.output.splitlines()[-1]
    assert verdict.startswith("Plan: failed: extension Broken step check: ")
    assert verdict.endswith("Broken.yaml:10:5: the books do not balance [check]")
    assert 'would update payment 1: status "pending" -> "succeeded"' in result.output
    assert 'would update order 1: status "pending" -> "paid"' in result.output
    # The mail the failed extension queued rolls back with it.
    assert "shop@example.com" not in result.output

    as_json = _dry_run(
        database_url, "--event", _event_file(tmp_path), "--json", project=project
    )
    broken = next(
        run for run in json.loads(as_json.output)["runs"] if run["flow"] == "Broken"
    )
    assert (broken["status"], broken["rolled_back"], broken["changes"]) == (
        "failed",
        True,
        [],
    )


def test_a_call_and_a_webhook_run_without_notification_settings(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    project = _project(tmp_path, TellCrm=TELL_CRM)

    result = _dry_run(
        database_url, "--event", _event_file(tmp_path), "--json", project=project
    )

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    [webhook] = [note for note in plan["notifications"] if note["kind"] == "webhook"]
    assert webhook["url"] == "https://crm.example.com/paid"
    assert webhook["payload"] == {"order": 1, "line": "Payment 1: 1099 usd, succeeded"}
    assert "a real run would fail" in webhook["note"]
    assert any("allow_hosts is not configured" in note for note in plan["notes"])


def test_a_webhook_host_off_a_configured_allow_list_fails_as_it_would_for_real(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    config = "outbound_webhooks: {allow_hosts: [hooks.example.com]}\n"
    project = _project(tmp_path, config, TellCrm=TELL_CRM)

    result = _dry_run(database_url, "--event", _event_file(tmp_path), project=project)

    assert result.exit_code == 1
    assert "extension TellCrm step post: " in result.output
    assert "'crm.example.com' refused" in result.output


def test_a_dry_run_of_an_extension_runs_the_flows_it_runs_after(
    engine: Engine, database_url: str
) -> None:
    order_id, _ = _order_and_payment(engine)
    flow = str(EXAMPLE_FLOWS / "SendReceipt.yaml")

    result = _dry_run(
        database_url,
        flow,
        "--event-type",
        "payment_intent.succeeded",
        "--order",
        str(order_id),
        "--json",
    )

    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert [run["flow"] for run in runs] == [
        "StripePaymentCallback",
        "MarkOrderPaid",
        "SendReceipt",
    ]


ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def test_the_plan_is_coloured_on_a_terminal_and_plain_when_piped(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    event = _event_file(tmp_path)

    terminal = _dry_run(database_url, "--event", event, color=True)
    piped = _dry_run(database_url, "--event", event)
    refused = _dry_run(
        database_url, "--event", event, color=True, env={"NO_COLOR": "1"}
    )

    assert terminal.exit_code == piped.exit_code == refused.exit_code == 0
    assert "\x1b[32msucceeded\x1b[0m" in terminal.output
    assert ESCAPE.search(piped.output) is None
    assert ESCAPE.search(refused.output) is None
    assert ESCAPE.sub("", terminal.output) == piped.output


def test_the_steps_of_each_run_line_up_in_columns(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)

    result = _dry_run(database_url, "--event", _event_file(tmp_path))

    step = re.compile(r"^  (\w+ +)(ok|skipped|stopped)( +)(\S+)")
    for block in result.output.split("\n\n"):
        rows = [found for line in block.splitlines() if (found := step.match(line))]
        columns = {(row.start(2), row.start(4)) for row in rows}
        assert len(columns) <= 1, block
    callback = result.output.split("\n\n")[1]
    steps = len(
        load_flow(SYSTEM_FLOWS / "StripePaymentCallback.yaml", system=True).steps
    )
    assert len([line for line in callback.splitlines() if step.match(line)]) == steps


def test_a_secret_a_flow_sends_is_masked_in_the_plan(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    flow = TELL_CRM.replace("body: {", "body: {token: \"{{ secret('CRM_TOKEN') }}\", ")
    project = _project(tmp_path, TellCrm=flow)
    token = "crm-token-that-must-not-show"

    for options in ([], ["--json"]):
        result = _dry_run(
            database_url,
            "--event",
            _event_file(tmp_path),
            *options,
            project=project,
            env={"ACTIONFLOW_SECRET_CRM_TOKEN": token},
        )
        assert result.exit_code == 0, result.output
        assert token not in result.output
        assert "[redacted]" in result.output


def test_a_flow_run_on_an_event_it_is_not_triggered_by_says_so(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _order_and_payment(engine)
    event = tmp_path / "refund.json"
    event.write_text(json.dumps(_intent_event("payment_intent.canceled")))
    flow = str(EXAMPLE_FLOWS / "MarkOrderPaid.yaml")

    result = _dry_run(database_url, flow, "--event", str(event), "--json")

    plan = json.loads(result.output)
    assert plan["notes"] == [
        "StripePaymentCallback is not triggered by payment_intent.canceled: "
        "processing would not run it for this event"
    ]
