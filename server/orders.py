"""Orders and payments as the API shows them: create an order, read orders and payments."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from actionflow.engine import changes as change_log
from actionflow.engine import db
from actionflow.engine.errors import PaymentError
from actionflow.engine.money import minor_unit_exponent
from actionflow.engine.tables import Order, Payment, utcnow
from sqlalchemy import Table, insert, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .auth import Principal, authenticate, require_admin
from .http import ApiError, field, json_response, present, read_json
from .runtime import Runtime

ORDERS: Table = Order.__table__  # type: ignore[attr-defined]
PAYMENTS: Table = Payment.__table__  # type: ignore[attr-defined]


async def create_order(request: Request) -> Response:
    """POST /orders: an admin creates an order for a user."""
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.admin_token)
    require_admin(principal)
    data = await read_json(request)
    values = _order_values(data)
    row = await run_in_threadpool(_insert_order, runtime, values)
    return json_response(present(row), status=201)


def _order_values(data: dict[str, Any]) -> dict[str, Any]:
    currency = field(data, "currency", str, "an ISO currency code such as usd").lower()
    try:
        minor_unit_exponent(currency)
    except PaymentError as exc:
        raise ApiError(400, exc.message) from None
    user_id = field(data, "userId", (str, int), "the id of the user who pays")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ApiError(400, "description must be a string")
    return {
        "price": _price(data),
        "currency": currency,
        "user_id": str(user_id),
        "description": description,
        "status": "pending",
    }


def _price(data: dict[str, Any]) -> Decimal:
    raw = field(data, "price", (str, int), 'a decimal string such as "10.00"')
    try:
        price = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ApiError(
            400, f'price must be a decimal string such as "10.00", got {raw!r}'
        ) from None
    if not price.is_finite() or price < 0:
        raise ApiError(400, f"price must be zero or more, got {raw!r}")
    return price


def _insert_order(runtime: Runtime, values: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    with db.write(runtime.engine) as connection:
        result = connection.execute(
            insert(ORDERS)
            .values(**values, created_at=now, updated_at=now)
            .returning(ORDERS)
        )
        row = dict(result.mappings().one())
        change_log.record(connection, "order", row)
        return row


def get_order(request: Request) -> Response:
    """GET /orders/{id}."""
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.admin_token)
    order_id = _path_id(request, "order_id")
    with db.read(runtime.engine) as connection:
        row = (
            connection.execute(select(ORDERS).where(ORDERS.c.id == order_id))
            .mappings()
            .first()
        )
    if row is None:
        raise ApiError(404, f"order {order_id} does not exist")
    _check_owner(principal, row["user_id"])
    return json_response(present(dict(row)))


def list_payments(request: Request) -> Response:
    """GET /payments?orderId=N."""
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.admin_token)
    order_id = _query_id(request, "orderId")
    with db.read(runtime.engine) as connection:
        order = connection.execute(
            select(ORDERS.c.user_id).where(ORDERS.c.id == order_id)
        ).first()
        if order is None:
            raise ApiError(404, f"order {order_id} does not exist")
        _check_owner(principal, order.user_id)
        rows = connection.execute(
            select(PAYMENTS)
            .where(PAYMENTS.c.order_id == order_id)
            .order_by(PAYMENTS.c.id)
        ).mappings()
        data = [present(dict(row)) for row in rows]
    return json_response({"data": data})


def _check_owner(principal: Principal, user_id: str) -> None:
    if not principal.is_admin and principal.user_id != user_id:
        raise ApiError(403, "this order belongs to another user")


def _path_id(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not raw.isdigit():
        raise ApiError(404, f"{raw!r} is not an id")
    return int(raw)


def _query_id(request: Request, name: str) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        raise ApiError(400, f"the query parameter {name} is required")
    if not raw.isdigit():
        raise ApiError(400, f"{name} must be an integer id, got {raw!r}")
    return int(raw)
