"""A small honest stand-in for Stripe's PaymentIntent API, on loopback.

It keeps what real Stripe keeps for idempotency: the first completed answer
per Idempotency-Key is replayed for every later request with that key, and a
5xx or 429 answer is not kept. It can be told to fail the first request of
each key (500, 429), to answer it too late (the PaymentIntent is made, the
client gives up waiting), or to refuse the key (401). It counts requests per
key, notes every request it received (`seen`) and anything malformed.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import free_port


class FakeStripe:
    """Serves POST /v1/payment_intents and GET /v1/payment_intents/{id}."""

    def __init__(self, secret_key: str, first_answer: str = "ok") -> None:
        self.secret_key = secret_key
        self.first_answer = first_answer  # ok, 500, 429, slow, 401
        self.requests: Counter[str] = Counter()
        self.replies: dict[str, dict[str, Any]] = {}
        self.created: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []
        self.seen: list[str] = []  # "METHOD /path" of every request received
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route("/v1/payment_intents", self.create, methods=["POST"]),
                Route("/v1/payment_intents/{id}", self.retrieve, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(
            self._recorded(app), host="127.0.0.1", port=self.port, log_level="error"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeStripe:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Stripe did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def _recorded(self, app: Any) -> Any:
        async def recorder(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.seen.append(f"{scope['method']} {scope['path']}")
            await app(scope, receive, send)

        return recorder

    async def create(self, request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.first_answer == "401":
            # Harsher than Stripe, which masks most of the key: quote it whole.
            message = f"Invalid API Key provided: {given}"
            return _error(401, "invalid_request_error", message)
        if given != self.secret_key:
            self.problems.append("a request without the secret key")
        form = dict(parse_qsl((await request.body()).decode()))
        self._check(key, form)
        key = key or "(none)"
        self.requests[key] += 1
        if key in self.replies:
            return JSONResponse(
                self.replies[key], headers={"Idempotent-Replayed": "true"}
            )
        first = self.requests[key] == 1
        if first and self.first_answer == "500":
            return _error(500, "api_error", "An unknown error occurred")
        if first and self.first_answer == "429":
            return _error(429, "rate_limit_error", "Too many requests")
        intent = self._new_intent(form)
        self.replies[key] = intent
        if first and self.first_answer == "slow":
            await asyncio.sleep(2.0)  # the client has given up by now
        return JSONResponse(intent)

    async def retrieve(self, request: Request) -> JSONResponse:
        intent = self.created.get(request.path_params["id"])
        if intent is None:
            return _error(404, "invalid_request_error", "No such payment_intent")
        return JSONResponse(intent)

    def _check(self, key: str | None, form: Any) -> None:
        if not key:
            self.problems.append("a create without an Idempotency-Key")
        if not str(form.get("amount", "")).isdigit():
            self.problems.append(
                f"amount is not whole minor units: {form.get('amount')}"
            )
        if not form.get("currency"):
            self.problems.append("no currency")

    def _new_intent(self, form: Any) -> dict[str, Any]:
        intent_id = f"pi_fake{len(self.created) + 1:04d}"
        metadata = {
            name[len("metadata[") : -1]: value
            for name, value in form.items()
            if name.startswith("metadata[")
        }
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "currency": form["currency"],
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "status": "requires_payment_method",
            "metadata": metadata,
            "livemode": False,
        }
        self.created[intent_id] = intent
        return intent


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status)
