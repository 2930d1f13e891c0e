"""POST /webhooks/stripe: verify, store, acknowledge. Nothing else happens here.

The signature is checked by the official stripe library on the raw bytes as
received, before the body is parsed. Flows run later, in the worker.

Events that arrive while the previous ones are being written are stored
together, in one transaction (group commit): one commit, and on SQLite one
fsync, for all of them. Each request is still answered only after the
transaction holding its event has committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import stripe
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from actionflow.engine.inbox import store_event, store_events

from .http import ApiError, json_response, read_body
from .runtime import Runtime

log = logging.getLogger("actionflow.webhooks")


async def receive(request: Request) -> Response:
    """Verify a Stripe event, store it once, and answer 200."""
    runtime: Runtime = request.app.state.runtime
    _check_content_type(request)
    body = await read_body(request, runtime.settings.webhook_max_bytes)
    payload = _verified(body, request.headers.get("stripe-signature"), runtime)
    event = _parse(payload)
    stored = await _store(request, event, payload)
    if stored:
        runtime.wake.set()
    log.info(
        "event received event=%s type=%s new=%s", event["id"], event["type"], stored
    )
    return json_response({"received": True, "duplicate": not stored})


class _GroupStore:
    """Stores the events waiting in one transaction, while the next ones gather.

    At most one store runs at a time; events arriving meanwhile wait for the
    next one. Under light load an event is stored at once, alone.
    """

    # Enough to cover a burst, small enough to keep each transaction short.
    MOST = 256

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.waiting: list[tuple[dict[str, Any], str, asyncio.Future[bool]]] = []
        self.task: asyncio.Task[None] | None = None

    async def store(self, event: dict[str, Any], payload: str) -> bool:
        future: asyncio.Future[bool] = self.loop.create_future()
        self.waiting.append((event, payload, future))
        if self.task is None:
            self.task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch = self.waiting[: self.MOST]
                del self.waiting[: self.MOST]
                await self._store_batch(batch)
        finally:
            self.task = None

    async def _store_batch(
        self, batch: list[tuple[dict[str, Any], str, asyncio.Future[bool]]]
    ) -> None:
        pairs = [(event, payload) for event, payload, _ in batch]
        try:
            stored = await run_in_threadpool(store_events, self.engine, pairs)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][2], exception=exc)
                return
            # One event may be at fault: store each alone, so only its
            # request fails.
            for event, payload, future in batch:
                try:
                    one = await run_in_threadpool(
                        store_event, self.engine, event, payload
                    )
                except Exception as alone:
                    _settle(future, exception=alone)
                else:
                    _settle(future, result=one)
            return
        for (_, _, future), one in zip(batch, stored, strict=True):
            _settle(future, result=one)


def _settle(
    future: asyncio.Future[bool],
    *,
    result: bool = False,
    exception: BaseException | None = None,
) -> None:
    if future.done():  # the request went away (client disconnect, cancel)
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


async def _store(request: Request, event: dict[str, Any], payload: str) -> bool:
    # One group per event loop: a test client may run the app in several.
    state = request.app.state
    loop = asyncio.get_running_loop()
    group = getattr(state, "group_store", None)
    if group is None or group.loop is not loop:
        runtime: Runtime = state.runtime
        group = state.group_store = _GroupStore(runtime.engine, loop)
    return await group.store(event, payload)


def _check_content_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "Stripe events are sent as application/json")


def _verified(body: bytes, header: str | None, runtime: Runtime) -> str:
    if not header:
        raise ApiError(400, "the Stripe-Signature header is missing")
    if not runtime.webhook_secrets:
        raise ApiError(
            503, "no webhook secret is configured; set STRIPE_WEBHOOK_SECRET"
        )
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    tolerance = runtime.settings.webhook_tolerance_seconds
    for secret in runtime.webhook_secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        except stripe.SignatureVerificationError:
            continue
        return payload
    raise ApiError(400, "the Stripe-Signature does not match, or it is too old")


def _parse(payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(event, dict):
        raise ApiError(400, "the body is not a Stripe event object")
    for key in ("id", "type"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise ApiError(400, f"the event has no {key}")
    _check_fields(event)
    return event


# What the inbox stores of an event, and the most each column holds.
_LIMITS = {"id": 255, "type": 255, "api_version": 64}
_INT64 = 2**63


def _check_fields(event: dict[str, Any]) -> None:
    """Refuse what the inbox could not store, with 400 rather than a 500."""
    for key, limit in _LIMITS.items():
        value = event.get(key)
        if value is None and key == "api_version":
            continue
        if not isinstance(value, str) or len(value) > limit or "\x00" in value:
            raise ApiError(400, f"the event's {key} is not a string of at most {limit}")
    created = event.get("created")
    if created is not None and (
        not isinstance(created, int)
        or isinstance(created, bool)
        or abs(created) >= _INT64
    ):
        raise ApiError(400, "the event's created is not a Unix timestamp")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if object_id is not None and (
        not isinstance(object_id, str) or len(object_id) > 255
    ):
        raise ApiError(400, "the event's data.object.id is not a string of at most 255")
