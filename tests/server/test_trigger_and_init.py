"""`actionflow init` scaffolds a project; `trigger` drives a running server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from actionflow.server.cli import main
from tests.conftest import WEBHOOK_SECRET, LiveServer, wait_for


def _environment(server: LiveServer) -> dict[str, str]:
    return {
        "ACTIONFLOW_DATABASE_URL": server.runtime.settings.database_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": "",
    }


def _order(server: LiveServer, price: str = "19.99") -> int:
    with server.client() as client:
        answer = client.post(
            "/orders", json={"price": price, "currency": "usd", "userId": "7"}
        )
    assert answer.status_code == 201
    return int(answer.json()["id"])


def _order_status(server: LiveServer, order_id: int) -> str:
    with server.client() as client:
        return str(client.get(f"/orders/{order_id}").json()["status"])


def test_trigger_drives_an_order_to_paid_without_a_stripe_account(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    order_id = _order(live_server)
    result = CliRunner().invoke(
        main,
        [
            "trigger",
            "payment_intent.succeeded",
            "--order",
            str(order_id),
            "--url",
            f"{live_server.url}/webhooks/stripe",
        ],
        env=_environment(live_server),
    )
    assert result.exit_code == 0, result.output
    assert "-> HTTP 200" in result.output
    wait_for(
        lambda: _order_status(live_server, order_id) == "paid",
        what="the order to be paid",
    )


def test_trigger_of_a_failed_payment_leaves_the_order_pending(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    order_id = _order(live_server)
    url = f"{live_server.url}/webhooks/stripe"
    arguments = ["trigger", "payment_intent.payment_failed", "--order", str(order_id)]
    result = CliRunner().invoke(
        main, [*arguments, "--url", url], env=_environment(live_server)
    )
    assert result.exit_code == 0, result.output
    with live_server.client() as client:
        wait_for(
            lambda: (
                client.get("/payments", params={"orderId": order_id}).json()["data"][0][
                    "status"
                ]
                == "failed"
            ),
            what="the payment to fail",
        )
    assert _order_status(live_server, order_id) == "pending"


def test_trigger_refuses_to_run_with_a_live_stripe_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["trigger", "payment_intent.succeeded", "--order", "1"],
        env={
            "ACTIONFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
            "STRIPE_SECRET_KEY": "sk_live_abc",
        },
    )
    assert result.exit_code == 1
    assert "refuses to run with a live Stripe key" in result.output
    assert "sk_live_abc" not in result.output


def test_trigger_names_the_types_it_can_build(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["trigger", "customer.created", "--order", "1"],
        env={"ACTIONFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"},
    )
    assert result.exit_code == 1
    assert (
        "cannot build a customer.created event; buildable types are:" in result.output
    )


def test_init_scaffolds_a_project_whose_flows_validate(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    result = CliRunner().invoke(main, ["init", str(project)])
    assert result.exit_code == 0, result.output
    flow = (project / "flows" / "MarkOrderPaid.yaml").read_text()
    assert flow.startswith(
        "# yaml-language-server: $schema=../schemas/flow.schema.json\n"
    )
    assert (project / "schemas" / "flow.schema.json").exists()
    assert "actionflow validate" in (project / ".pre-commit-config.yaml").read_text()
    checked = CliRunner().invoke(main, ["validate", str(project / "flows")])
    assert checked.exit_code == 0, checked.output


def test_init_does_not_overwrite_an_existing_project(tmp_path: Path) -> None:
    CliRunner().invoke(main, ["init", str(tmp_path)])
    (tmp_path / "actionflow.yaml").write_text("database_url: sqlite:///mine.db\n")
    again = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert again.exit_code == 1
    assert "already exist" in again.output
    assert (
        tmp_path / "actionflow.yaml"
    ).read_text() == "database_url: sqlite:///mine.db\n"
