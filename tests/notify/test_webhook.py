"""notify.webhook: signed, idempotent posts to allowed hosts only.

Runs on SQLite and on PostgreSQL; the receiver is uvicorn on loopback, reached
with allow_private on. Refusals name the host and the rule.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS
from actionflow.engine.inbox import RUNS
from actionflow.engine.notifyconfig import WebhookSettings
from actionflow.engine.outbox import DeliveryError
from actionflow.engine.webhooksend import check_destination, resolve_checked
from tests.notify.helpers import (
    Receiver,
    Shop,
    deliver,
    notify_settings,
    order_and_payment,
    succeeded,
)

SECRET = "afwh_test_signing_secret"

NOTIFY_CRM = """
name: NotifyCrm
trigger: {after: StripePaymentCallback}
steps:
  - id: crm
    if: "{{ trigger.outputs.status == 'succeeded' }}"
    use: notify.webhook
    with:
      url: "URL"
      body: {order_id: "{{ trigger.outputs.order_id }}", note: "{{ '{{ 7*7 }}' }}"}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _shop(engine: Engine, tmp_path: Path, url: str, **webhooks: object) -> Shop:
    (tmp_path / "crm.yaml").write_text(NOTIFY_CRM.replace("URL", url))
    values: dict[str, object] = {"secret": SECRET, "allow_hosts": ("localhost",)}
    values.update(webhooks)
    settings = notify_settings(None, webhooks=WebhookSettings(**values))  # type: ignore[arg-type]
    return Shop(engine, settings, flows=[EXAMPLE_FLOWS, tmp_path])


def _crm_runs(engine: Engine) -> list[dict[str, object]]:
    with db.read(engine) as connection:
        rows = connection.execute(select(RUNS).where(RUNS.c.flow == "NotifyCrm"))
        return [dict(row) for row in rows.mappings()]


def test_a_webhook_is_signed_and_carries_the_idempotency_key(
    engine: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    url = f"http://localhost:{receiver.port}/hooks/crm"
    shop = _shop(engine, tmp_path, url, allow_private=True)
    order_id, _ = order_and_payment(engine)
    body = succeeded(receipt_email=None)
    deliver(engine, body)
    shop.work()
    shop.replay(body["id"])
    shop.work()

    [request] = receiver.requests
    assert request["path"] == "/hooks/crm"
    assert request["headers"]["host"] == f"localhost:{receiver.port}"
    assert request["headers"]["idempotency-key"] == f"{body['id']}:NotifyCrm:crm"
    assert json.loads(request["body"]) == {"note": "{{ 7*7 }}", "order_id": order_id}
    # What a receiver does, as the README describes it.
    fields = dict(
        part.split("=", 1)
        for part in request["headers"]["actionflow-signature"].split(",")
    )
    signed = f"{fields['t']}.".encode() + request["body"]
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert [row["status"] for row in shop.outbox()] == ["sent"]


def test_a_failing_receiver_is_retried_until_it_answers(
    engine: Engine, tmp_path: Path
) -> None:
    with Receiver(statuses=[503]) as receiver:
        url = f"http://localhost:{receiver.port}/hook"
        shop = _shop(engine, tmp_path, url, allow_private=True)
        order_and_payment(engine)
        deliver(engine, succeeded(receipt_email=None))
        shop.work()

    assert len(receiver.requests) == 2
    keys = {request["headers"]["idempotency-key"] for request in receiver.requests}
    assert len(keys) == 1
    [row] = shop.outbox()
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_a_host_outside_the_allow_list_fails_the_run_and_queues_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    shop = _shop(engine, tmp_path, "https://crm.example.net/hook")
    order_and_payment(engine)
    deliver(engine, succeeded(receipt_email=None))
    shop.processor.process_next_event()

    assert shop.outbox() == []
    [run] = _crm_runs(engine)
    assert run["status"] == "pending"  # an extension that failed waits for a retry
    assert (
        "webhook host 'crm.example.net' refused: it is not in "
        "outbound_webhooks.allow_hosts; add it there to allow posting to it"
    ) in str(run["error"])


def test_a_host_resolving_to_loopback_is_refused_when_sending(
    engine: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    shop = _shop(engine, tmp_path, f"http://localhost:{receiver.port}/hook")
    order_and_payment(engine)
    deliver(engine, succeeded(receipt_email=None))
    shop.work()

    assert receiver.requests == []
    [row] = shop.outbox()
    assert (row["status"], row["attempts"]) == ("failed", 1)  # not retried
    assert row["last_error"].startswith("webhook host 'localhost' refused: it resolves")
    assert (
        "a loopback address; set outbound_webhooks.allow_private: true"
        in (row["last_error"])
    )


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param("http://127.0.0.1/x", "loopback", id="loopback"),
        pytest.param("http://10.1.2.3/x", "private", id="private"),
        pytest.param("http://169.254.169.254/latest", "link-local", id="metadata"),
        pytest.param("http://[::1]/x", "loopback", id="ipv6-loopback"),
        pytest.param("http://[::ffff:192.168.0.1]/x", "private", id="ipv4-mapped"),
        pytest.param("http://0.0.0.0/x", "unspecified", id="unspecified"),
        pytest.param("http://100.64.0.1/x", "non-public", id="shared"),
    ],
)
def test_private_addresses_are_refused_unless_allowed(url: str, kind: str) -> None:
    host = url.split("//")[1].split("/")[0].strip("[]")
    settings = WebhookSettings(allow_hosts=(host,))
    with pytest.raises(DeliveryError, match=f"a {kind} address; set outbound"):
        check_destination(url, settings)

    allowed = WebhookSettings(allow_hosts=(host,), allow_private=True)
    assert check_destination(url, allowed) == host


def test_every_resolved_address_is_checked() -> None:
    settings = WebhookSettings(allow_hosts=("localhost",))
    with pytest.raises(
        DeliveryError, match="webhook host 'localhost' refused: it resolves to "
    ):
        resolve_checked("localhost", 80, settings)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "ftp://hooks.example.com/x",
            "webhook URL 'ftp://hooks.example.com/x' refused: it must be an http:// "
            "or https:// URL with a host",
            id="scheme",
        ),
        pytest.param(
            "https://example.com.evil.test/x",
            "webhook host 'example.com.evil.test' refused: it is not in "
            "outbound_webhooks.allow_hosts",
            id="suffix-trick",
        ),
        pytest.param(
            "https://example.org/x",
            "webhook host 'example.org' refused: it is not in "
            "outbound_webhooks.allow_hosts",
            id="wildcard-needs-a-subdomain",
        ),
    ],
)
def test_destinations_outside_the_rules_are_refused(url: str, message: str) -> None:
    settings = WebhookSettings(allow_hosts=("example.com", "*.example.org"))
    with pytest.raises(DeliveryError) as refused:
        check_destination(url, settings)
    assert refused.value.message.startswith(message)


def test_a_wildcard_allows_subdomains() -> None:
    settings = WebhookSettings(allow_hosts=("*.example.org",))
    assert check_destination("https://hooks.example.org/x", settings) == (
        "hooks.example.org"
    )
