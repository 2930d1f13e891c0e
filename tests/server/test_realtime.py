"""Subscriptions: one message per committed change, resumable with Last-Event-ID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from actionflow.server.app import build_runtime
from actionflow.server.auth import issue_token
from tests.conftest import (
    ADMIN_TOKEN,
    LiveServer,
    free_port,
    postgres_schema_url,
    server_settings,
    wait_for,
)
from tests.server.sse import Subscription


def _create_order(server: LiveServer, price: str) -> int:
    with server.client() as client:
        answer = client.post(
            "/orders", json={"price": price, "currency": "usd", "userId": "9"}
        )
    assert answer.status_code == 201
    return int(answer.json()["id"])


def test_a_subscriber_receives_each_committed_order_once_in_order(
    live_server: LiveServer,
) -> None:
    with Subscription(f"{live_server.url}/subscriptions/orders", ADMIN_TOKEN) as stream:
        assert stream.status == 200
        first = _create_order(live_server, "1.00")
        second = _create_order(live_server, "2.00")
        messages = stream.wait_for(2)
    assert [message["data"]["row"]["id"] for message in messages] == [first, second]
    assert messages[0]["data"]["row"]["price"] == "1.00"
    assert int(messages[0]["id"]) < int(messages[1]["id"])
    time.sleep(0.5)
    assert len(stream.messages) == 2


def test_reconnecting_with_last_event_id_delivers_what_was_missed(
    live_server: LiveServer,
) -> None:
    url = f"{live_server.url}/subscriptions/orders"
    with Subscription(url, ADMIN_TOKEN) as stream:
        _create_order(live_server, "1.00")
        seen = stream.wait_for(1)[0]["id"]
    missed = [_create_order(live_server, "2.00"), _create_order(live_server, "3.00")]
    with Subscription(url, ADMIN_TOKEN, last_event_id=seen) as resumed:
        messages = resumed.wait_for(2)
    assert [message["data"]["row"]["id"] for message in messages] == missed


def test_a_subscription_filtered_by_order_sees_only_that_order(
    live_server: LiveServer,
) -> None:
    wanted = _create_order(live_server, "1.00")
    url = f"{live_server.url}/subscriptions/orders?orderId={wanted}"
    with Subscription(url, ADMIN_TOKEN, last_event_id="0") as stream:
        _create_order(live_server, "2.00")
        messages = stream.wait_for(1)
        time.sleep(0.5)
    assert [message["data"]["row"]["id"] for message in messages] == [wanted]
    assert len(stream.messages) == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/subscriptions/secrets", 404, id="unknown-table"),
        pytest.param("/subscriptions/orders?orderId=999", 404, id="unknown-order"),
        pytest.param("/subscriptions/orders?orderId=x", 400, id="bad-id"),
    ],
)
def test_bad_subscriptions_are_refused(
    live_server: LiveServer, path: str, status: int
) -> None:
    with live_server.client() as client:
        assert client.get(path).status_code == status


def test_a_subscription_without_a_token_is_refused(live_server: LiveServer) -> None:
    with live_server.client(token=None) as client:
        assert client.get("/subscriptions/orders").status_code == 401


@pytest.fixture
def two_servers() -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two server processes' worth of runtime on one PostgreSQL database."""
    urls = postgres_schema_url()
    url = next(urls)
    with LiveServer(build_runtime(server_settings(url))) as one:
        with LiveServer(build_runtime(server_settings(url))) as two:
            yield one, two
    next(urls, None)


def test_a_change_committed_by_one_server_reaches_subscribers_of_another(
    two_servers: tuple[LiveServer, LiveServer],
) -> None:
    writer, reader = two_servers
    with Subscription(f"{reader.url}/subscriptions/orders", ADMIN_TOKEN) as stream:
        order_id = _create_order(writer, "5.00")
        started = time.monotonic()
        messages = stream.wait_for(1)
        took = time.monotonic() - started
    assert messages[0]["data"]["row"]["id"] == order_id
    print(f"cross-process delivery took {took * 1000:.0f} ms")


def test_a_user_sees_only_their_own_orders_and_is_refused_another_users(
    live_server: LiveServer,
) -> None:
    secret = live_server.runtime.token_secret
    mine = issue_token(secret, "9")
    theirs = issue_token(secret, "someone-else")
    order_id = _create_order(live_server, "1.00")  # belongs to user 9

    with live_server.client(token=theirs) as client:
        refused = client.get(f"/subscriptions/payments?orderId={order_id}")
    assert refused.status_code == 403

    url = f"{live_server.url}/subscriptions/orders"
    with Subscription(url, theirs, last_event_id="0") as other:
        with Subscription(url, mine, last_event_id="0") as own:
            messages = own.wait_for(1)
            time.sleep(0.5)
    assert [message["data"]["row"]["id"] for message in messages] == [order_id]
    assert other.status == 200
    assert other.messages == []


def _serve(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "ACTIONFLOW_DATABASE_URL": url,
        "ACTIONFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
        "STRIPE_WEBHOOK_SECRET": "whsec_two_processes",
    }
    program = str(Path(sys.executable).parent / "actionflow")
    with log.open("wb") as output:
        return subprocess.Popen(
            [program, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def test_two_serve_processes_on_postgresql_share_their_changes(tmp_path: Path) -> None:
    urls = postgres_schema_url()
    url = next(urls)
    ports = [free_port(), free_port()]
    processes = [
        _serve(url, port, tmp_path / f"serve{index}.log")
        for index, port in enumerate(ports)
    ]
    try:
        for port in ports:
            wait_for(
                lambda port=port: _healthy(f"http://127.0.0.1:{port}"),
                timeout=30,
                what="both servers to answer",
            )
        writer, reader = (f"http://127.0.0.1:{port}" for port in ports)
        with Subscription(f"{reader}/subscriptions/orders", ADMIN_TOKEN) as stream:
            answer = httpx.post(
                f"{writer}/orders",
                json={"price": "3.00", "currency": "usd", "userId": "9"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            messages = stream.wait_for(1)
        assert messages[0]["data"]["row"]["id"] == answer.json()["id"]
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
        next(urls, None)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
