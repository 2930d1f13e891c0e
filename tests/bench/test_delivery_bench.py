"""The delivery tests at full size; not part of the default run.

    .venv/bin/python -m pytest -q -s tests/bench/test_delivery_bench.py

The kill test sends 2,000 events (on SQLite and PostgreSQL); three workers
drain 5,000 events on PostgreSQL. Each prints its figures.
"""

from __future__ import annotations

from pathlib import Path

from tests.server.test_kill_and_redeliver import run_kill_test
from tests.server.test_workers_drain import postgres_url, run_drain_test

__all__ = ["postgres_url"]  # the fixture, for the drain test below


def test_kill_test_with_2000_events(database_url: str, tmp_path: Path) -> None:
    figures = run_kill_test(database_url, tmp_path, 2000)
    assert figures["processed exactly once"] == 2000


def test_three_workers_drain_5000_events(postgres_url: str, tmp_path: Path) -> None:
    figures = run_drain_test(postgres_url, tmp_path, 5000)
    assert figures["processed exactly once"] == 5000
