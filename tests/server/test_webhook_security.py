"""The webhook endpoint refuses what Stripe did not sign, and then stores nothing."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from actionflow.engine import db
from actionflow.engine.tables import FlowRun, WebhookEvent
from tests.conftest import WEBHOOK_SECRET, LiveServer
from tests.stripe_events import event, signature, signed, stripe_object


def _count(server: LiveServer, table: object) -> int:
    with db.read(server.runtime.engine) as connection:
        return int(
            connection.execute(select(func.count()).select_from(table)).scalar_one()
        )


def _a_payment_event() -> dict[str, object]:
    return event("payment_intent.succeeded", stripe_object("payment_intent"))


def _assert_nothing_stored(server: LiveServer) -> None:
    assert _count(server, WebhookEvent.__table__) == 0
    assert _count(server, FlowRun.__table__) == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Stripe-Signature": "t=1,v1=deadbeef"}, id="forged"),
        pytest.param({"Stripe-Signature": "garbage"}, id="malformed"),
    ],
)
def test_unsigned_or_forged_events_get_400_and_store_nothing(
    live_server: LiveServer, headers: dict[str, str]
) -> None:
    body = json.dumps(_a_payment_event())
    with live_server.client(token=None) as client:
        answer = client.post(
            "/webhooks/stripe",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )
    assert answer.status_code == 400
    _assert_nothing_stored(live_server)


def test_a_signature_made_with_another_secret_is_refused(
    live_server: LiveServer,
) -> None:
    payload, headers = signed(_a_payment_event(), "whsec_someone_else")
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=payload, headers=headers)
    assert answer.status_code == 400
    assert "does not match" in answer.json()["error"]["message"]
    _assert_nothing_stored(live_server)


def test_a_stale_signature_is_refused(live_server: LiveServer) -> None:
    an_hour_ago = int(time.time()) - 3600
    payload, headers = signed(_a_payment_event(), WEBHOOK_SECRET, timestamp=an_hour_ago)
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=payload, headers=headers)
    assert answer.status_code == 400
    _assert_nothing_stored(live_server)


def test_a_body_changed_after_signing_is_refused(live_server: LiveServer) -> None:
    payload, headers = signed(_a_payment_event(), WEBHOOK_SECRET)
    tampered = payload.replace('"amount": 1099', '"amount": 1')
    assert tampered != payload
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=tampered, headers=headers)
    assert answer.status_code == 400
    _assert_nothing_stored(live_server)


def test_a_body_over_the_limit_gets_413(live_server: LiveServer) -> None:
    live_server.runtime.settings.webhook_max_bytes = 1000
    body = _a_payment_event()
    body["data"]["object"]["description"] = "x" * 5000  # type: ignore[index]
    payload, headers = signed(body, WEBHOOK_SECRET)
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=payload, headers=headers)
    assert answer.status_code == 413
    _assert_nothing_stored(live_server)


def test_a_wrong_content_type_gets_415(live_server: LiveServer) -> None:
    payload, headers = signed(_a_payment_event(), WEBHOOK_SECRET)
    headers["Content-Type"] = "text/plain"
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=payload, headers=headers)
    assert answer.status_code == 415
    _assert_nothing_stored(live_server)


def test_signed_malformed_json_gets_400(live_server: LiveServer) -> None:
    payload = '{"id": "evt_1", "type": '
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature(payload, WEBHOOK_SECRET),
    }
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=payload, headers=headers)
    assert answer.status_code == 400
    _assert_nothing_stored(live_server)


def test_a_rotated_secret_is_accepted_alongside_the_new_one(
    live_server: LiveServer,
) -> None:
    live_server.runtime.webhook_secrets = ["whsec_new", WEBHOOK_SECRET]
    payload, headers = signed(_a_payment_event(), WEBHOOK_SECRET)
    with live_server.client(token=None) as client:
        answer = client.post("/webhooks/stripe", content=payload, headers=headers)
    assert answer.status_code == 200
    assert _count(live_server, WebhookEvent.__table__) == 1
