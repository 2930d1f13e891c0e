"""A full run (server, worker, command line) writes no secret anywhere.

serve and worker run as subprocesses on PostgreSQL with a password in the
database URL, a Stripe secret key, a webhook secret and an admin token; they
create a PaymentIntent through a fake Stripe that fails once, receive good,
forged, unknown and broken events, retry and park one; then every `events`
and `runs` command runs. None of the secrets, nor the PaymentIntent's client
secret, may appear in any of that output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from actionflow.server.cli import main
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, postgres_schema_url, wait_for
from tests.delivery import PROGRAM, Process, Serve, environment
from tests.stripe_events import event, signed
from tests.stripe_fake import FakeStripe

pytestmark = pytest.mark.e2e

SECRET_KEY = "sk_test_NeverPrintMe0123456789abcdef"
DB_PASSWORD = "db-Pa55word-NeverPrintMe"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def _with_password(url: str) -> str:
    # The test database trusts every local connection, so any password works.
    return url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)


def test_no_secret_appears_in_logs_errors_or_cli_output(
    postgres_url: str, tmp_path: Path
) -> None:
    with FakeStripe(SECRET_KEY, first_answer="500") as stripe_fake:
        env = environment(
            _with_password(postgres_url),
            STRIPE_SECRET_KEY=SECRET_KEY,
            STRIPE_PUBLISHABLE_KEY="pk_test_visible",
            STRIPE_API_BASE=stripe_fake.url,
            ACTIONFLOW_RETRY_ATTEMPTS="2",
            ACTIONFLOW_RETRY_BASE_SECONDS="0",
        )
        server = Serve(env, tmp_path / "serve.log")
        worker = Process(["worker"], env, tmp_path / "worker.log")
        client_secret = _pay_and_deliver(server)
        cli_output = _every_cli_command(env, tmp_path)
        assert server.stop() == 0
        assert worker.stop() == 0

    everything = server.output() + worker.output() + cli_output
    assert "event received" in everything
    assert "event failed" in everything
    for secret in (SECRET_KEY, WEBHOOK_SECRET, ADMIN_TOKEN, DB_PASSWORD, client_secret):
        assert secret not in everything


def _pay_and_deliver(server: Serve) -> str:
    with server.client() as client:
        order = client.post(
            "/orders", json={"price": "10.99", "currency": "usd", "userId": "u1"}
        ).json()
        paid = client.post(
            "/actions/stripe-payment",
            json={"orderId": order["id"], "currency": "usd", "amount": 1099},
        )
        assert paid.status_code == 200, paid.text
        intent = {
            "id": paid.json()["stripePaymentIntentId"],
            "object": "payment_intent",
            "amount": 1099,
            "amount_received": 1099,
            "currency": "usd",
            "status": "succeeded",
            "client_secret": paid.json()["clientSecret"],
        }
        # No id: the flow cannot find its payment and fails on every attempt.
        broken = {key: value for key, value in intent.items() if key != "id"}
        bodies = [
            event("payment_intent.succeeded", intent),
            event("payment_intent.succeeded", {**intent, "id": "pi_unknown"}),
            event("payment_intent.payment_failed", broken),
            event("customer.created", {"id": "cus_1"}),
        ]
        for body in bodies:
            payload, headers = signed(body, WEBHOOK_SECRET)
            answer = client.post("/webhooks/stripe", content=payload, headers=headers)
            assert answer.status_code == 200
        payload, headers = signed(bodies[0], "whsec_forged_by_someone")
        forged = client.post("/webhooks/stripe", content=payload, headers=headers)
        assert forged.status_code == 400
        wait_for(
            lambda: client.get(f"/orders/{order['id']}").json()["status"] == "paid",
            what="the order to be paid",
        )
    return str(paid.json()["clientSecret"])


def _every_cli_command(env: dict[str, str], tmp_path: Path) -> str:
    def run(*arguments: str) -> str:
        result = CliRunner().invoke(main, list(arguments), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    wait_for(
        lambda: (
            "payment_intent.payment_failed"
            in run("events", "list", "--status", "failed")
        ),
        what="the broken event to be parked",
    )
    output = run("events", "list") + run("runs", "list")
    for item in json.loads(run("events", "list", "--json")):
        output += run("events", "show", str(item["id"]))
        output += run("events", "show", item["stripeEventId"], "--json")
    for item in json.loads(run("runs", "list", "--json")):
        output += run("runs", "show", str(item["id"]))
        output += run("runs", "show", str(item["id"]), "--json")
    output += run("events", "replay", "--failed")
    # And once as its own process, with whatever it logs.
    done = subprocess.run(
        [PROGRAM, "events", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return output + done.stdout + done.stderr
