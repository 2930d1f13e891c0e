"""JSON in and out: camelCase keys, exact decimals, errors with a clear message."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

MAX_JSON_BYTES = 65_536
# Row ids are 32-bit integers on PostgreSQL; anything larger names no row.
MAX_ID = 2**31 - 1


class ApiError(Exception):
    """An HTTP error answer: status and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def camel(name: str) -> str:
    """snake_case to camelCase: stripe_payment_intent_id -> stripePaymentIntentId."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def present(
    row: dict[str, Any], hidden: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A table row as the API shows it."""
    return {camel(key): value for key, value in row.items() if key not in hidden}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer; decimals are strings so no client parses money as a float."""
    body = json.dumps(data, default=_default, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


def error_response(status: int, message: str) -> JSONResponse:
    """The one shape of every error answer."""
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status_code=status
    )


async def read_json(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The request body as a JSON object; numbers with a fraction become Decimal."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    body = await read_body(request, limit)
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str
) -> Any:
    """`data[name]`, required and of `kind`, or a 400 naming the field."""
    if name not in data:
        raise ApiError(400, f"{name} is required: {what}")
    value = data[name]
    if isinstance(value, bool) and bool not in _as_tuple(kind):
        raise ApiError(400, f"{name} must be {what}, got {json.dumps(value)}")
    if not isinstance(value, kind):
        shown = json.dumps(value, default=str)[:80]
        raise ApiError(400, f"{name} must be {what}, got {shown}")
    if isinstance(value, int) and name.endswith("Id") and not 0 < value <= MAX_ID:
        raise ApiError(400, f"{name} must be {what}, got {value}")
    if isinstance(value, str) and "\x00" in value:
        raise ApiError(400, f"{name} must not contain NUL characters")
    return value


def parse_id(raw: str | None, name: str, status: int = 400) -> int:
    """A row id from a path or query, or an error answer naming it."""
    if raw is None:
        raise ApiError(400, f"the query parameter {name} is required")
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= MAX_ID:
        raise ApiError(status, f"{name} must be an integer id, got {raw[:40]!r}")
    return int(raw)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
