"""Three `actionflow worker` processes on PostgreSQL drain the inbox together.

Each stored event is claimed by exactly one worker (FOR UPDATE SKIP LOCKED):
processed once, none left behind. The default run stores
ACTIONFLOW_DRAIN_TEST_EVENTS events (1,000); tests/bench/ runs 5,000.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from actionflow.engine import db
from actionflow.engine.inbox import EVENTS, _event_values
from tests.conftest import postgres_schema_url, wait_for
from tests.delivery import (
    PROCESSED_ONCE,
    Process,
    environment,
    event_statuses,
    make_payments,
    runs_per_event,
    succeeded_event,
)

pytestmark = pytest.mark.e2e

EVENTS_TO_DRAIN = int(os.environ.get("ACTIONFLOW_DRAIN_TEST_EVENTS", "1000"))
WORKERS = 3


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def run_drain_test(database_url: str, tmp_path: Path, count: int) -> dict[str, Any]:
    """Store `count` events, let three workers drain them, check each ran once."""
    engine = db.create_db_engine(database_url)
    try:
        db.prepare(engine)
        make_payments(engine, count)
        bodies = [succeeded_event(index) for index in range(count)]
        with db.write(engine) as connection:
            connection.execute(
                insert(EVENTS), [_event_values(b, json.dumps(b)) for b in bodies]
            )
        started = time.monotonic()
        workers = [
            Process(["worker"], environment(database_url), tmp_path / f"w{n}.log")
            for n in range(WORKERS)
        ]
        wait_for(
            lambda: event_statuses(engine) == {"processed": count},
            timeout=900,
            what=f"{count} events to be processed",
        )
        seconds = time.monotonic() - started
        assert [worker.stop() for worker in workers] == [0] * WORKERS
        runs = runs_per_event(engine)
        once = sum(1 for body in bodies if runs.get(body["id"]) == PROCESSED_ONCE)
        shares = [w.output().count("event processed") for w in workers]
        figures = {
            "events": count,
            "processed exactly once": once,
            "per worker": shares,
            "seconds": round(seconds, 1),
        }
        print(f"\ndrain test: {json.dumps(figures)}")
        assert once == count
        assert sum(shares) == count
        return figures
    finally:
        engine.dispose()


def test_three_workers_drain_the_inbox_processing_each_event_once(
    postgres_url: str, tmp_path: Path
) -> None:
    figures = run_drain_test(postgres_url, tmp_path, EVENTS_TO_DRAIN)
    assert all(share > 0 for share in figures["per worker"])
