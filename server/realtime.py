"""GET /subscriptions/<table>: server-sent events, one per committed change.

Each message carries the row as the reads show it, with the change's id as the
SSE id: a client that reconnects with Last-Event-ID gets every change after it,
nothing lost, nothing twice. A new subscription starts at the newest change.
Subscribers wait on a per-process hub that is poked after every commit of this
process and, on PostgreSQL, by LISTEN/NOTIFY for commits of other processes;
on SQLite, changes made by other processes are found by polling every second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Engine, event
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from actionflow.engine import changes as change_log
from actionflow.engine import db

from .auth import Principal, caller
from .http import ApiError, _default, parse_id, present
from .orders import check_owner, find_order
from .runtime import Runtime

log = logging.getLogger("actionflow.realtime")

# The API's table names and the names of the tables behind them.
TABLES = {
    "orders": "order",
    "payments": "payment",
    "refunds": "refund",
    "recurring-payments": "recurring_payment",
}
HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 1.0


class ChangeHub:
    """Wakes waiting subscribers of this process when changes may have committed."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def start(self, engine: Engine) -> None:
        """Bind to the running loop and listen for commits on `engine`."""
        self.loop = asyncio.get_running_loop()
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _connection: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.poke)

    def poke(self) -> None:
        """Wake every subscriber waiting now."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Wait for a poke, at most `timeout` seconds."""
        waiting = self._event
        try:
            await asyncio.wait_for(waiting.wait(), timeout)
        except TimeoutError:
            pass


async def listen_postgres(engine: Engine, hub: ChangeHub) -> None:
    """Poke `hub` on every NOTIFY from any process; reconnect if the link drops."""
    import psycopg

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True
            ) as conn:
                await conn.execute(f"LISTEN {change_log.CHANNEL}")
                hub.poke()  # anything committed while we were not listening
                async for _ in conn.notifies():
                    hub.poke()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "change listener lost its connection error=%s", type(exc).__name__
            )
            await asyncio.sleep(1.0)


async def subscribe(request: Request) -> Response:
    """Stream the changes of one table that the caller may see."""
    runtime: Runtime = request.app.state.runtime
    principal = caller(request)
    table = TABLES.get(request.path_params["table"])
    if table is None:
        known = ", ".join(sorted(TABLES))
        raise ApiError(
            404,
            f"no subscriptions for {request.path_params['table']!r}; "
            f"tables are: {known}",
        )
    order_id = _optional_id(request, "orderId")
    if order_id is not None:
        await run_in_threadpool(_check_order, runtime, principal, order_id)
    after = _resume_point(request)
    if after is None:
        after = await run_in_threadpool(_head, runtime.engine)
    user_id = None if principal.is_admin else principal.user_id
    stream = _changes(request, runtime, table, after, order_id, user_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _changes(
    request: Request,
    runtime: Runtime,
    table: str,
    after: int,
    order_id: int | None,
    user_id: str | None,
) -> AsyncIterator[str]:
    hub: ChangeHub = request.app.state.hub
    yield "retry: 2000\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        rows = await run_in_threadpool(
            _since, runtime.engine, table, after, order_id, user_id
        )
        for row in rows:
            after = row["id"]
            yield _message(row)
        if rows:
            quiet_since = time.monotonic()
            continue
        await hub.wait(POLL_SECONDS)
        if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            quiet_since = time.monotonic()
            yield ": heartbeat\n\n"


def _message(change: dict[str, Any]) -> str:
    row = present(json.loads(change["data"]))
    data = json.dumps({"table": change["table_name"], "row": row}, default=_default)
    return f"id: {change['id']}\nevent: change\ndata: {data}\n\n"


def _since(
    engine: Engine, table: str, after: int, order_id: int | None, user_id: str | None
) -> list[dict[str, Any]]:
    with db.read(engine) as connection:
        return change_log.since(
            connection, table, after, order_id=order_id, user_id=user_id
        )


def _head(engine: Engine) -> int:
    with db.read(engine) as connection:
        return change_log.head(connection)


def _check_order(runtime: Runtime, principal: Principal, order_id: int) -> None:
    with db.read(runtime.engine) as connection:
        order = find_order(connection, runtime.order_table, order_id)
    check_owner(principal, order["user_id"])


def _optional_id(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    return None if raw is None else parse_id(raw, name)


def _resume_point(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get(
        "lastEventId"
    )
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(
            400, f"Last-Event-ID must be an id this server sent, got {raw[:40]!r}"
        )
    return int(raw)
