"""`actionflow serve` killed with SIGKILL while events pour in loses none of them.

Concurrent senders deliver signed payment_intent.succeeded events; half-way the
server is killed, then started again on the same database. Every event that got
a 2xx is processed exactly once; the senders deliver the rest again, as Stripe
does until it gets a 2xx (and some acknowledged ones too, as Stripe may), and
those are processed exactly once as well.

The default run sends ACTIONFLOW_KILL_TEST_EVENTS events (300); the full 2,000
runs under tests/bench/test_delivery_bench.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from actionflow.engine import db
from tests.conftest import WEBHOOK_SECRET, wait_for
from tests.delivery import (
    PROCESSED_ONCE,
    Serve,
    environment,
    event_statuses,
    make_payments,
    runs_per_event,
    succeeded_event,
)
from tests.stripe_events import signed

pytestmark = pytest.mark.e2e

EVENTS = int(os.environ.get("ACTIONFLOW_KILL_TEST_EVENTS", "300"))
SENDERS = 8


def _deliver(client: httpx.Client, body: dict[str, Any]) -> int | None:
    """Send one event, signed now; the status code, or None if no answer came."""
    payload, headers = signed(body, WEBHOOK_SECRET)
    try:
        return client.post(
            "/webhooks/stripe", content=payload, headers=headers
        ).status_code
    except httpx.HTTPError:
        return None


def run_kill_test(database_url: str, tmp_path: Path, count: int) -> dict[str, Any]:
    """Deliver `count` events, SIGKILL the server midway, restart, redeliver."""
    engine = db.create_db_engine(database_url)
    try:
        return _kill_and_redeliver(engine, database_url, tmp_path, count)
    finally:
        engine.dispose()


def _kill_and_redeliver(
    engine: Engine, database_url: str, tmp_path: Path, count: int
) -> dict[str, Any]:
    db.prepare(engine)
    make_payments(engine, count)
    bodies = [succeeded_event(index) for index in range(count)]
    env = environment(database_url)
    started = time.monotonic()

    server = Serve(env, tmp_path / "serve-1.log")
    answers: dict[int, int | None] = {}
    lock = threading.Lock()
    killed = threading.Event()

    def send(indexes: range) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for index in indexes:
                status = _deliver(client, bodies[index])
                with lock:
                    answers[index] = status
                    acked = sum(1 for code in answers.values() if code == 200)
                if acked >= count // 2 and not killed.is_set():
                    killed.set()
                    server.kill()

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, [range(k, count, SENDERS) for k in range(SENDERS)]))
    assert killed.is_set(), "the server was never killed"
    acked = {index for index, code in answers.items() if code == 200}
    refused = [
        (index, code) for index, code in answers.items() if code not in (200, None)
    ]
    assert refused == [], "a live server refused a valid event"
    stored_at_kill = event_statuses(engine).total()

    restarted = Serve(env, tmp_path / "serve-2.log", port=server.port)
    unacked = sorted(set(range(count)) - acked)
    again = unacked + sorted(acked)[::10]  # Stripe may re-send acknowledged ones
    with httpx.Client(base_url=restarted.url, timeout=30) as client:
        with ThreadPoolExecutor(SENDERS) as pool:
            redelivered = list(pool.map(lambda i: _deliver(client, bodies[i]), again))
    assert set(redelivered) == {200}

    wait_for(
        lambda: event_statuses(engine)["processed"] == count,
        timeout=600,
        what=f"all {count} events to be processed",
    )
    assert restarted.stop() == 0
    runs = runs_per_event(engine)
    figures = {
        "events": count,
        "acknowledged before the kill": len(acked),
        "unanswered at the kill": len(unacked),
        "stored at the kill": stored_at_kill,
        "sent again after restart": len(again),
        "processed exactly once": sum(
            1 for body in bodies if runs.get(body["id"]) == PROCESSED_ONCE
        ),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"\nkill test on {engine.dialect.name}: {json.dumps(figures)}")
    assert event_statuses(engine) == {"processed": count}
    assert figures["processed exactly once"] == count
    return figures


def test_a_killed_server_loses_no_event_and_processes_each_once(
    database_url: str, tmp_path: Path
) -> None:
    figures = run_kill_test(database_url, tmp_path, EVENTS)
    assert figures["acknowledged before the kill"] >= EVENTS // 2
    assert figures["unanswered at the kill"] > 0
