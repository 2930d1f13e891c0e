"""Concurrent deliveries are stored together, and each is answered for itself."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select

from actionflow.engine import db
from actionflow.engine.tables import WebhookEvent
from tests.conftest import WEBHOOK_SECRET, LiveServer
from tests.stripe_events import event, signed, stripe_object

EVENTS = WebhookEvent.__table__  # type: ignore[attr-defined]


def test_concurrent_deliveries_are_each_stored_once_and_acknowledged(
    live_server: LiveServer,
) -> None:
    bodies = []
    for number in range(40):
        intent = stripe_object("payment_intent")
        intent["id"] = f"pi_group_{number}"
        bodies.append(event("payment_intent.succeeded", intent))
    # Every event twice, the copies among the first deliveries.
    deliveries = [signed(body, WEBHOOK_SECRET) for body in bodies + bodies]

    async def deliver_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(
            base_url=live_server.url, timeout=30, limits=limits
        ) as client:
            return await asyncio.gather(
                *(
                    client.post("/webhooks/stripe", content=payload, headers=headers)
                    for payload, headers in deliveries
                )
            )

    answers = asyncio.run(deliver_all())

    assert [answer.status_code for answer in answers] == [200] * len(deliveries)
    new = {}
    for (payload, _), answer in zip(deliveries, answers, strict=True):
        event_id = json.loads(payload)["id"]
        if not answer.json()["duplicate"]:
            assert event_id not in new, f"{event_id} was stored twice"
            new[event_id] = True
    assert sorted(new) == sorted(body["id"] for body in bodies)
    with db.read(live_server.runtime.engine) as connection:
        stored = connection.execute(select(EVENTS.c.stripe_event_id)).scalars().all()
    assert sorted(stored) == sorted(body["id"] for body in bodies)
