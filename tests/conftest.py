"""Shared fixtures: databases (SQLite and PostgreSQL), a live server, free ports.

PostgreSQL comes from ACTIONFLOW_TEST_POSTGRES_URL (default: the local test
database). When it cannot be reached the PostgreSQL tests fail, they do not
skip; set ACTIONFLOW_TEST_POSTGRES=off to leave them out on purpose.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, create_engine, text

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS
from actionflow.server.app import build_runtime, create_app
from actionflow.server.config import Settings
from actionflow.server.runtime import Runtime

POSTGRES_URL = os.environ.get(
    "ACTIONFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
WEBHOOK_SECRET = "whsec_test_secret_for_tests_only"
ADMIN_TOKEN = "aft_test_admin_token"

BACKENDS = ["sqlite"]
if os.environ.get("ACTIONFLOW_TEST_POSTGRES", "on") != "off":
    BACKENDS.append("postgresql")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__}); "
            "start it, point ACTIONFLOW_TEST_POSTGRES_URL at one, or set "
            "ACTIONFLOW_TEST_POSTGRES=off to leave PostgreSQL tests out"
        )
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'actionflow.db'}"
        return
    yield from postgres_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite database file."""
    return f"sqlite:///{tmp_path / 'actionflow.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated database."""
    created = db.create_db_engine(database_url)
    db.prepare(created)
    yield created
    created.dispose()


def server_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a server under test: known secrets, no Stripe."""
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        stripe_webhook_secret=WEBHOOK_SECRET,
        flows=[EXAMPLE_FLOWS],
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    return settings


class LiveServer:
    """A real uvicorn server on loopback, in a thread, with its runtime at hand."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
def live_server(database_url: str) -> Iterator[LiveServer]:
    """The app on a real uvicorn server, on SQLite and on PostgreSQL."""
    runtime = build_runtime(server_settings(database_url))
    with LiveServer(runtime) as server:
        yield server


def wait_for(condition: object, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll `condition()` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")
