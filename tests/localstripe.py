"""localstripe for tests: the process, and a shim for what it lacks.

localstripe has Plans but no Prices: a subscription item takes `plan`. The
shim sits between actionflow and localstripe and renames `items[N][price]` to
`items[N][plan]` in subscription requests, so the product sends what Stripe
expects and the test-only translation stays here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import free_port

SECRET_KEY = "sk_test_actionflow"


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


@pytest.fixture
def localstripe(tmp_path: Path) -> Iterator[str]:
    """localstripe on a free loopback port, with empty state."""
    program = shutil.which("localstripe") or str(
        Path(sys.executable).parent / "localstripe"
    )
    port = free_port()
    log = tmp_path / "localstripe.log"
    process = _start([program, "--port", str(port), "--from-scratch"], log)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"localstripe exited: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            httpx.get(f"{url}/v1/events", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail("localstripe did not start")
            time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _price_to_plan(body: bytes) -> bytes:
    pairs = parse_qsl(body.decode(), keep_blank_values=True)
    renamed = [
        (key.replace("][price]", "][plan]") if key.startswith("items[") else key, value)
        for key, value in pairs
    ]
    return urlencode(renamed).encode()


def _shim_app(target: str) -> Starlette:
    async def forward(request: Request) -> Response:
        body = await request.body()
        if request.method == "POST" and request.url.path == "/v1/subscriptions":
            body = _price_to_plan(body)
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() not in {"host", "content-length"}
        }
        async with httpx.AsyncClient(base_url=target, timeout=30) as client:
            answer = await client.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=body,
                headers=headers,
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    methods = ["GET", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


@pytest.fixture
def stripe_shim(localstripe: str) -> Iterator[str]:
    """The URL of a loopback shim in front of localstripe (Prices become Plans)."""
    port = free_port()
    config = uvicorn.Config(
        _shim_app(localstripe), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the localstripe shim did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def stripe_get(localstripe: str, path: str, **params: Any) -> Any:
    """GET a localstripe resource as JSON."""
    answer = httpx.get(
        f"{localstripe}{path}",
        params=params,
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json() if answer.content else None


def stripe_post(localstripe: str, path: str, **form: Any) -> Any:
    """POST a form to localstripe and return the JSON answer."""
    answer = httpx.post(
        f"{localstripe}{path}",
        data=form,
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json() if answer.content else None
