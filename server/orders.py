"""Orders and payment tables as the API shows them; create an order, read the rest.

Every read checks ownership: a user sees their own orders and what hangs off
them (payments, refunds, recurring payments); an admin sees everything.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from actionflow.engine import changes as change_log
from actionflow.engine import db
from actionflow.engine.errors import PaymentError
from actionflow.engine.money import minor_unit_exponent, parse_price, to_minor_units
from actionflow.engine.orderlink import labelled
from actionflow.engine.tables import Order, Payment, RecurringPayment, Refund, utcnow

from .auth import Principal, caller, require_admin
from .http import ApiError, field, json_response, parse_id, present, read_json
from .runtime import Runtime

ORDERS: Table = Order.__table__  # type: ignore[attr-defined]
PAYMENTS: Table = Payment.__table__  # type: ignore[attr-defined]
REFUNDS: Table = Refund.__table__  # type: ignore[attr-defined]
RECURRING: Table = RecurringPayment.__table__  # type: ignore[attr-defined]


async def create_order(request: Request) -> Response:
    """POST /orders: an admin creates an order for a user."""
    runtime: Runtime = request.app.state.runtime
    require_admin(caller(request))
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
    user_id = str(field(data, "userId", (str, int), "the id of the user who pays"))
    if not 0 < len(user_id) <= 64 or "\x00" in user_id:
        raise ApiError(400, "userId must be 1 to 64 characters, without NUL")
    description = data.get("description", "")
    if not isinstance(description, str) or "\x00" in description:
        raise ApiError(400, "description must be a string without NUL characters")
    price = _price(data)
    try:
        to_minor_units(price, currency)
    except PaymentError as exc:
        raise ApiError(400, exc.message) from None
    return {
        "price": price,
        "currency": currency,
        "user_id": user_id,
        "description": description,
        "status": "pending",
    }


def _price(data: dict[str, Any]) -> Decimal:
    raw = field(data, "price", (str, int), 'a decimal string such as "10.00"')
    if isinstance(raw, int):
        if raw < 0:
            raise ApiError(400, f"price must be zero or more, got {raw}")
        return Decimal(raw)
    try:
        price: Decimal = parse_price(raw)
    except PaymentError as exc:
        raise ApiError(400, exc.message) from None
    return price


def _insert_order(runtime: Runtime, values: dict[str, Any]) -> dict[str, Any]:
    table = runtime.order_table
    now = utcnow()
    stamps = {"created_at": now, "updated_at": now}
    values = {
        key: value for key, value in {**values, **stamps}.items() if key in table.c
    }
    try:
        with db.write(runtime.engine) as connection:
            result = connection.execute(
                insert(table).values(values).returning(*labelled(table))
            )
            row = dict(result.mappings().one())
            change_log.record(connection, "order", row, orders=table)
            return row
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ApiError(
            400,
            f"the order could not be stored in {table.name}: {detail}; "
            "a linked order table needs defaults for the columns it does not map",
        ) from None


def get_order(request: Request) -> Response:
    """GET /orders/{id}."""
    runtime: Runtime = request.app.state.runtime
    principal = caller(request)
    order_id = _path_id(request, "order_id")
    with db.read(runtime.engine) as connection:
        row = find_order(connection, runtime.order_table, order_id)
    check_owner(principal, row["user_id"])
    return json_response(present(row))


def find_order(
    connection: Connection, table: Table, order_id: int, *, lock: bool = False
) -> dict[str, Any]:
    """The order with `order_id`, read through the link, or 404."""
    query = select(*labelled(table)).where(table.c.id == order_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    if row is None:
        raise ApiError(404, f"order {order_id} does not exist")
    return dict(row)


def list_payments(request: Request) -> Response:
    """GET /payments?orderId=N."""
    return _list_for_order(request, PAYMENTS)


def list_refunds(request: Request) -> Response:
    """GET /refunds?paymentId=N."""
    runtime: Runtime = request.app.state.runtime
    principal = caller(request)
    payment_id = _query_id(request, "paymentId")
    with db.read(runtime.engine) as connection:
        payment = connection.execute(
            select(PAYMENTS.c.order_id).where(PAYMENTS.c.id == payment_id)
        ).first()
        if payment is None:
            raise ApiError(404, f"payment {payment_id} does not exist")
        order = find_order(connection, runtime.order_table, payment.order_id)
        check_owner(principal, order["user_id"])
        data = _rows(connection, REFUNDS, REFUNDS.c.payment_id == payment_id)
    return json_response({"data": data})


def list_recurring_payments(request: Request) -> Response:
    """GET /recurring-payments?orderId=N."""
    return _list_for_order(request, RECURRING)


def _list_for_order(request: Request, table: Table) -> Response:
    """The rows of `table` that belong to the order in ?orderId=, if the caller may."""
    runtime: Runtime = request.app.state.runtime
    principal = caller(request)
    order_id = _query_id(request, "orderId")
    with db.read(runtime.engine) as connection:
        order = find_order(connection, runtime.order_table, order_id)
        check_owner(principal, order["user_id"])
        data = _rows(connection, table, table.c.order_id == order_id)
    return json_response({"data": data})


def _rows(connection: Connection, table: Table, condition: Any) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(table).where(condition).order_by(table.c.id)
    ).mappings()
    return [present(dict(row)) for row in rows]


def check_owner(principal: Principal, user_id: Any) -> None:
    """403 unless the caller is an admin or the user the order belongs to."""
    if not principal.is_admin and principal.user_id != str(user_id):
        raise ApiError(403, "this order belongs to another user")


def _path_id(request: Request, name: str) -> int:
    return parse_id(request.path_params[name], name, status=404)


def _query_id(request: Request, name: str) -> int:
    return parse_id(request.query_params.get(name), name)
