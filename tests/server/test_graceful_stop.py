"""SIGTERM stops `serve` and `worker` without losing the run in progress.

On PostgreSQL the test holds a lock on the payment row, so the worker's run is
caught half-way (blocked inside its transaction) when SIGTERM arrives; the
process must wait for the run to finish and commit, then exit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, select, text

from actionflow.engine import db
from actionflow.engine.inbox import store_event
from tests.conftest import POSTGRES_URL, WEBHOOK_SECRET, postgres_schema_url, wait_for
from tests.delivery import (
    ORDERS,
    PAYMENTS,
    PROCESSED_ONCE,
    Process,
    Serve,
    environment,
    event_statuses,
    make_payments,
    runs_per_event,
    succeeded_event,
)
from tests.stripe_events import signed

pytestmark = pytest.mark.e2e


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[Engine]:
    engine = db.create_db_engine(postgres_url)
    db.prepare(engine)
    yield engine
    engine.dispose()


def _hold_payment_lock(engine: Engine) -> tuple[Connection, int]:
    """Lock the payment row in an open transaction; its connection and backend pid."""
    connection = engine.connect()
    connection.begin()
    connection.execute(select(PAYMENTS).with_for_update())
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return connection, int(pid)


def _blocked_by(pid: int) -> int:
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.connect() as connection:
            query = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE :pid = ANY(pg_blocking_pids(pid))"
            )
            return int(connection.execute(query, {"pid": pid}).scalar_one())
    finally:
        admin.dispose()


def _paid(engine: Engine) -> tuple[str, str]:
    with db.read(engine) as connection:
        payment = connection.execute(select(PAYMENTS.c.status)).scalar_one()
        order = connection.execute(select(ORDERS.c.status)).scalar_one()
    return payment, order


def test_sigterm_lets_the_worker_finish_the_run_in_progress(
    postgres: Engine, postgres_url: str, tmp_path: Path
) -> None:
    make_payments(postgres, 1)
    body = succeeded_event(0)
    store_event(postgres, body, json.dumps(body))
    lock, pid = _hold_payment_lock(postgres)
    try:
        worker = Process(["worker"], environment(postgres_url), tmp_path / "w.log")
        wait_for(lambda: _blocked_by(pid) > 0, what="the worker to reach the lock")
        worker.popen.terminate()
        time.sleep(1.0)
        assert worker.popen.poll() is None, "the worker quit with a run in progress"
    finally:
        lock.rollback()
        lock.close()

    assert worker.popen.wait(60) == 0, worker.output()
    assert _paid(postgres) == ("succeeded", "paid")
    assert runs_per_event(postgres)[body["id"]] == PROCESSED_ONCE
    assert "worker stopped" in worker.output()


def test_sigterm_lets_serve_finish_the_run_in_progress(
    postgres: Engine, postgres_url: str, tmp_path: Path
) -> None:
    make_payments(postgres, 1)
    server = Serve(environment(postgres_url), tmp_path / "serve.log")
    lock, pid = _hold_payment_lock(postgres)
    body = succeeded_event(0)
    try:
        payload, headers = signed(body, WEBHOOK_SECRET)
        with server.client() as client:
            answer = client.post("/webhooks/stripe", content=payload, headers=headers)
        assert answer.status_code == 200
        wait_for(lambda: _blocked_by(pid) > 0, what="the worker to reach the lock")
        server.popen.terminate()
        time.sleep(1.0)
        assert server.popen.poll() is None, "serve quit with a run in progress"
    finally:
        lock.rollback()
        lock.close()

    assert server.popen.wait(60) == 0, server.output()
    assert _paid(postgres) == ("succeeded", "paid")
    assert runs_per_event(postgres)[body["id"]] == PROCESSED_ONCE


def test_a_worker_stopped_while_draining_leaves_every_event_done_or_pending(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = db.create_db_engine(sqlite_url)
    db.prepare(engine)
    make_payments(engine, 200)
    bodies = [succeeded_event(index) for index in range(200)]
    for body in bodies:
        store_event(engine, body, json.dumps(body))

    env = environment(sqlite_url)
    first = Process(["worker"], env, tmp_path / "w1.log")
    wait_for(lambda: event_statuses(engine)["processed"] >= 20, what="some progress")
    assert first.stop() == 0, first.output()
    statuses = event_statuses(engine)
    runs = runs_per_event(engine)
    for body in bodies:
        assert runs.get(body["id"]) in (None, PROCESSED_ONCE)
    assert statuses["processed"] == sum(1 for body in bodies if body["id"] in runs)

    second = Process(["worker"], env, tmp_path / "w2.log")
    wait_for(lambda: event_statuses(engine) == {"processed": 200}, what="the rest")
    assert second.stop() == 0, second.output()
    runs = runs_per_event(engine)
    assert all(runs[body["id"]] == PROCESSED_ONCE for body in bodies)
    engine.dispose()
