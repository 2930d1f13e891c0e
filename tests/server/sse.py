"""A small server-sent-events reader for tests."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import httpx


class Subscription:
    """Reads one SSE stream in a background thread, collecting its messages."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0))
        self.request = self.client.build_request("GET", url, headers=headers)
        self.messages: list[dict[str, Any]] = []
        self.status: int | None = None
        self.opened = threading.Event()
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.response: httpx.Response | None = None

    def __enter__(self) -> Subscription:
        self.thread.start()
        if not self.opened.wait(10):
            raise AssertionError("the subscription did not open")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.response is not None:
            # Closing from this thread would not wake the reader blocked in
            # recv(); shutting the socket down does, and tells the server.
            stream = self.response.extensions["network_stream"]
            stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        if self.response is not None:
            self.response.close()
        self.client.close()

    def _read(self) -> None:
        try:
            self.response = self.client.send(self.request, stream=True)
        except httpx.HTTPError:
            self.opened.set()
            return
        self.status = self.response.status_code
        self.opened.set()
        message: dict[str, Any] = {}
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if "data" in message:
                        with self.arrived:
                            self.messages.append(message)
                            self.arrived.notify_all()
                    message = {}
                elif line.startswith("id: "):
                    message["id"] = line[4:]
                elif line.startswith("data: "):
                    message["data"] = json.loads(line[6:])
        except (httpx.HTTPError, RuntimeError):
            return

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The first `count` messages; fails if they do not arrive in time."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            if len(self.messages) < count:
                raise AssertionError(
                    f"expected {count} messages, "
                    f"got {len(self.messages)}: {self.messages}"
                )
            return list(self.messages[:count])
