"""Build and sign Stripe events the way Stripe does, for tests."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
CURRENT_API_VERSION = "2026-08-27.basil"


def stripe_object(name: str) -> dict[str, Any]:
    """A copy of one of Stripe's example objects kept under tests/fixtures/stripe."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return copy.deepcopy(data)


def event(
    kind: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    api_version: str = CURRENT_API_VERSION,
    created: int | None = None,
) -> dict[str, Any]:
    """Wrap `obj` in an event envelope as Stripe sends it."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": api_version,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def signature(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value for `payload`, as Stripe computes it."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{stamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def signed(
    body: dict[str, Any], secret: str, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """The body as text and the headers that deliver it, signed with `secret`."""
    payload = json.dumps(body)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature(payload, secret, timestamp),
    }
    return payload, headers
