"""The plan renderer reads the plan as data, whatever produced it."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from actionflow.server.plan import lines, render

ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

ACTION_REPORT = {
    "action": "stripe-refund",
    "status": "succeeded",
    "reason": None,
    "error": None,
    "steps": [
        {"step": "refund", "use": "stripe.refund", "outcome": "ok", "ms": 1.5},
        {"step": "row", "use": "table.update", "outcome": "ok", "ms": 0.4},
    ],
    "changes": [
        {
            "step": "row",
            "table": "refund",
            "before": {"id": 3, "status": "pending", "updated_at": "a"},
            "after": {"id": 3, "status": "succeeded", "updated_at": "b"},
        }
    ],
    "outputs": {"refund_id": 3},
    "stripe_requests": [
        {
            "step": "refund",
            "attempt": 1,
            "method": "POST",
            "path": "/v1/refunds",
            "params": {"amount": 300, "payment_intent": "pi_1"},
            "idempotency_key": "af-x-refund-3",
            "answered_from": "fixtures/refund.json",
        }
    ],
}


def _text(plan: dict[str, object]) -> str:
    return ESCAPE.sub("", "\n".join(lines(plan)))


def test_a_single_action_report_renders_its_steps_changes_and_stripe_requests() -> None:
    text = _text(ACTION_REPORT)

    assert text.startswith("Dry run of action stripe-refund: nothing was written")
    assert "action stripe-refund  succeeded" in text
    assert '~ would update refund 3: status "pending" -> "succeeded"  [row]' in text
    request = (
        "POST /v1/refunds  [refund attempt 1]  key af-x-refund-3  "
        "answered from fixtures/refund.json"
    )
    assert text.count(request) == 1
    assert '{"amount": 300, "payment_intent": "pi_1"}' in text
    assert text.endswith("Plan: succeeded (1 run, 1 row change)")


def test_a_plan_renders_coloured_only_when_colour_is_asked_for() -> None:
    @click.command()
    @click.option("--colour/--plain", default=None)
    def show(colour: bool | None) -> None:
        render(ACTION_REPORT, color=colour)

    coloured = CliRunner().invoke(show, ["--colour"])
    plain = CliRunner().invoke(show, ["--plain"], color=True)

    assert "\x1b[32msucceeded\x1b[0m" in coloured.output
    assert ESCAPE.search(plain.output) is None
    assert ESCAPE.sub("", coloured.output) == plain.output
