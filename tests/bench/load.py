"""Send signed events to a server: closed-loop (as fast as it answers) or open-loop.

Each event is signed just before it is sent, with the Stripe-Signature scheme,
so a long phase never trips the five-minute tolerance. Open-loop sending keeps
to a schedule whatever the server does, and measures each acknowledgement from
the moment the event was due, so a slow server cannot hide its queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.stripe_events import signature

PATH = "/webhooks/stripe"


@dataclass
class Sent:
    """What a phase of sending saw."""

    started: float = 0.0  # monotonic time of the first send
    finished: float = 0.0  # monotonic time of the last acknowledgement
    latencies: list[float] = field(default_factory=list)  # seconds
    failures: list[str] = field(default_factory=list)
    late_sends: int = 0  # open loop: sends more than 10 ms behind schedule

    @property
    def acknowledged_per_second(self) -> float:
        """Acknowledgements per second over the phase."""
        elapsed = self.finished - self.started
        return len(self.latencies) / elapsed if elapsed > 0 else 0.0


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` (0..1) percentile of `values`, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[rank]


class Connection:
    """One keep-alive HTTP/1.1 connection that posts events and reads the answers.

    Written on asyncio streams rather than with httpx: the load generator shares
    two cores with the server, and httpx's pool spent more CPU per request the
    more requests were queued (7 of 19 s of the sender's CPU in a trial run).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: bytes, headers: dict[str, str]) -> int:
        """Send one POST; the answer's status (its body is read and dropped)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port
            )
        assert self.reader is not None
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(payload)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"an answer without Content-Length: {status_line}")
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        """Close the connection if it is open."""
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
            self.writer = None


class Pool:
    """Connections to one server, reused; a new one when all are busy."""

    def __init__(self, url: str, most: int = 512) -> None:
        self.slots = asyncio.Semaphore(most)
        address = url.removeprefix("http://").rstrip("/")
        host, _, port = address.partition(":")
        self.host, self.port = host, int(port)
        self.idle: list[Connection] = []
        self.every: list[Connection] = []

    async def post(self, payload: bytes, headers: dict[str, str]) -> int:
        """POST an event on an idle connection (or a new one, up to the limit)."""
        async with self.slots:
            return await self._post(payload, headers)

    async def _post(self, payload: bytes, headers: dict[str, str]) -> int:
        if self.idle:
            connection = self.idle.pop()
        else:
            connection = Connection(self.host, self.port)
            self.every.append(connection)
        reused = connection.writer is not None
        try:
            try:
                status = await connection.post(PATH, payload, headers)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                # The server closes a keep-alive connection idle for 5 s; it did
                # not read this request then, so send it again on a new one.
                partial = getattr(exc, "partial", b"")
                if not reused or partial:
                    raise
                await connection.close()
                status = await connection.post(PATH, payload, headers)
        except BaseException:
            await connection.close()
            raise
        self.idle.append(connection)
        return status

    async def close(self) -> None:
        """Close every connection."""
        for connection in self.every:
            await connection.close()


async def _post(
    pool: Pool, body: dict[str, Any], secret: str, since: float, sent: Sent
) -> None:
    payload = json.dumps(body)
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature(payload, secret),
    }
    try:
        status = await pool.post(payload.encode(), headers)
    except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
        sent.failures.append(f"{body['id']}: {type(exc).__name__}: {exc}")
        return
    now = time.monotonic()
    if status != 200:
        sent.failures.append(f"{body['id']}: answered {status}")
        return
    sent.latencies.append(now - since)
    sent.finished = max(sent.finished, now)


async def closed_loop(
    url: str,
    bodies: Sequence[dict[str, Any]],
    secret: str,
    concurrency: int,
    on_start: Callable[[float], None] | None = None,
) -> Sent:
    """Send every body, `concurrency` at a time, each sender waiting for its answer."""
    sent = Sent()
    queue = iter(bodies)
    pool = Pool(url)

    async def sender() -> None:
        for body in queue:
            await _post(pool, body, secret, time.monotonic(), sent)

    sent.started = time.monotonic()
    if on_start:
        on_start(sent.started)
    try:
        await asyncio.gather(*(sender() for _ in range(concurrency)))
    finally:
        await pool.close()
    return sent


async def open_loop(
    url: str, bodies: Sequence[dict[str, Any]], secret: str, rate: float
) -> Sent:
    """Send body i at i / `rate` seconds after the start, whatever the answers."""
    sent = Sent()
    pool = Pool(url)
    tasks = []
    sent.started = time.monotonic()
    try:
        for number, body in enumerate(bodies):
            due = sent.started + number / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.010:
                sent.late_sends += 1
            tasks.append(asyncio.create_task(_post(pool, body, secret, due, sent)))
        await asyncio.gather(*tasks)
    finally:
        await pool.close()
    return sent
