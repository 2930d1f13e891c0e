"""Hostile and odd deliveries: each gets its status code and leaves no effect,
or, when Stripe's own, is acknowledged and recorded with what became of it.
Runs on SQLite and on PostgreSQL, against a real server on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import func, select

from actionflow.engine import db
from actionflow.engine.inbox import EVENTS, RUNS
from tests.conftest import WEBHOOK_SECRET, LiveServer, wait_for
from tests.delivery import (
    ORDERS,
    PROCESSED_ONCE,
    make_payments,
    runs_per_event,
    succeeded_event,
)
from tests.stripe_events import event, signature, signed


def _post(server: LiveServer, payload: str | Iterator[bytes], headers: Any) -> Any:
    with server.client(token=None) as client:
        return client.post("/webhooks/stripe", content=payload, headers=headers)


def _count(server: LiveServer, table: Any) -> int:
    with db.read(server.runtime.engine) as connection:
        query = select(func.count()).select_from(table)
        return int(connection.execute(query).scalar_one())


def _stored(server: LiveServer, stripe_id: str) -> dict[str, Any]:
    with db.read(server.runtime.engine) as connection:
        query = select(EVENTS).where(EVENTS.c.stripe_event_id == stripe_id)
        return dict(connection.execute(query).mappings().one())


def _settled(server: LiveServer, stripe_id: str) -> bool:
    return _stored(server, stripe_id)["status"] != "pending"


def test_the_same_event_delivered_50_times_at_once_runs_its_flows_once(
    live_server: LiveServer,
) -> None:
    make_payments(live_server.runtime.engine, 1)
    body = succeeded_event(0)

    def deliver(_: int) -> int:
        payload, headers = signed(body, WEBHOOK_SECRET)
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            answer = client.post("/webhooks/stripe", content=payload, headers=headers)
        return answer.status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(deliver, range(50)))

    assert codes == [200] * 50
    wait_for(lambda: _settled(live_server, body["id"]), what="the event to run")
    assert _count(live_server, EVENTS) == 1
    assert runs_per_event(live_server.runtime.engine)[body["id"]] == PROCESSED_ONCE
    with db.read(live_server.runtime.engine) as connection:
        assert connection.execute(select(ORDERS.c.status)).scalar_one() == "paid"


def test_an_old_delivery_replayed_later_is_refused_and_stores_nothing(
    live_server: LiveServer,
) -> None:
    body = succeeded_event(0)
    ten_minutes_ago = int(time.time()) - 600
    payload, headers = signed(body, WEBHOOK_SECRET, timestamp=ten_minutes_ago)

    answer = _post(live_server, payload, headers)

    assert answer.status_code == 400
    assert "too old" in answer.json()["error"]["message"]
    assert _count(live_server, EVENTS) == 0


def test_a_recent_delivery_replayed_is_acknowledged_as_a_duplicate(
    live_server: LiveServer,
) -> None:
    make_payments(live_server.runtime.engine, 1)
    body = succeeded_event(0)
    payload, headers = signed(body, WEBHOOK_SECRET)
    assert _post(live_server, payload, headers).json() == {
        "received": True,
        "duplicate": False,
    }
    wait_for(lambda: _settled(live_server, body["id"]), what="the event to run")

    again = _post(live_server, payload, headers)

    assert again.json() == {"received": True, "duplicate": True}
    assert _count(live_server, EVENTS) == 1
    assert runs_per_event(live_server.runtime.engine)[body["id"]] == PROCESSED_ONCE


def test_absurdly_nested_signed_json_gets_400_and_stores_nothing(
    live_server: LiveServer,
) -> None:
    depth = 200_000
    payload = '{"id": "evt_deep", "type": "x", "data": ' + "[" * depth + "]" * depth
    payload += "}"
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature(payload, WEBHOOK_SECRET),
    }

    answer = _post(live_server, payload, headers)

    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "the body is not valid JSON"
    assert _count(live_server, EVENTS) == 0


def test_an_unknown_event_type_is_acknowledged_and_recorded_as_ignored(
    live_server: LiveServer,
) -> None:
    body = event("issuing_card.created", {"id": "ic_1", "object": "issuing.card"})
    payload, headers = signed(body, WEBHOOK_SECRET)

    assert _post(live_server, payload, headers).status_code == 200

    wait_for(lambda: _settled(live_server, body["id"]), what="the event to run")
    stored = _stored(live_server, body["id"])
    assert (stored["status"], stored["note"]) == (
        "ignored",
        "no flow handles issuing_card.created",
    )
    assert _count(live_server, RUNS) == 0


def test_an_event_for_an_unknown_object_is_acknowledged_and_recorded_with_why(
    live_server: LiveServer,
) -> None:
    body = succeeded_event(0, tag="unknown")
    payload, headers = signed(body, WEBHOOK_SECRET)

    assert _post(live_server, payload, headers).status_code == 200

    wait_for(lambda: _settled(live_server, body["id"]), what="the event to run")
    stored = _stored(live_server, body["id"])
    assert stored["status"] == "processed"
    assert stored["note"] == (
        "StripePaymentCallback stopped: no payment row for PaymentIntent "
        "pi_unknown000000"
    )
    assert _count(live_server, ORDERS) == 0


def test_a_chunked_body_over_the_limit_without_content_length_gets_413(
    live_server: LiveServer,
) -> None:
    live_server.runtime.settings.webhook_max_bytes = 10_000
    payload, headers = signed(succeeded_event(0), WEBHOOK_SECRET)
    padded = payload[:-1] + ', "padding": "' + "x" * 50_000 + '"}'

    def chunks() -> Iterator[bytes]:
        data = padded.encode()
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    answer = _post(live_server, chunks(), headers)

    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413
    assert _count(live_server, EVENTS) == 0
