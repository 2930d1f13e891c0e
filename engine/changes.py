"""The change log: each write to a payment table leaves one row_change, in commit order.

A change is written in the same transaction as the row it describes, so it is
committed exactly when the row is. On PostgreSQL, change-writing transactions
take one advisory lock until they commit: ids are then handed out in commit
order, and a subscriber that has seen id N can never later find a smaller one.
The NOTIFY sent here is delivered by PostgreSQL only when the transaction
commits, and wakes the subscribers of every server process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, text

from .jsonvalues import dumps
from .orderlink import labelled
from .tables import FLOW_TABLES, Order, Payment, RowChange, utcnow

CHANGES: Table = RowChange.__table__  # type: ignore[attr-defined]
ORDERS: Table = Order.__table__  # type: ignore[attr-defined]
PAYMENTS: Table = Payment.__table__  # type: ignore[attr-defined]

CHANNEL = "actionflow_changes"
_LOCK_KEY = 0x6166_6368  # "afch": one advisory lock for all change writers


def record(
    connection: Connection,
    table: str,
    row: dict[str, Any],
    *,
    orders: Table | None = None,
) -> None:
    """Log that `row` of `table` was inserted or changed, with the transaction.

    `orders` is the order table when an existing table is linked in its place.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
        )
        connection.execute(text(f"NOTIFY {CHANNEL}"))
    orders = orders if orders is not None else ORDERS
    values = {
        "table_name": table,
        "row_id": row["id"],
        "data": dumps(row),
        "created_at": utcnow(),
    }
    if (
        table != "order"
        and row.get("order_id") is not None
        and row.get("user_id") is None
    ):
        # A row of an order (a payment): its user is the order's, read by the
        # INSERT itself rather than by a query of its own.
        values["order_id"] = values["owner_order"] = row["order_id"]
        connection.execute(_insert_with_order_user(orders), values)
        return
    values["order_id"], values["user_id"] = _owner(connection, table, row, orders)
    connection.execute(_INSERT, values)


# Built once: on SQLite, building a statement costs more than running it.
_INSERT = insert(CHANGES).values(
    {
        name: bindparam(name)
        for name in ("table_name", "row_id", "order_id", "user_id", "data")
    }
    | {"created_at": bindparam("created_at")}
)
_INSERTS_WITH_ORDER_USER: dict[Table, Any] = {}


def _insert_with_order_user(orders: Table) -> Any:
    statement = _INSERTS_WITH_ORDER_USER.get(orders)
    if statement is None:
        user = (
            select(orders.c.user_id)
            .where(orders.c.id == bindparam("owner_order"))
            .scalar_subquery()
        )
        statement = insert(CHANGES).values(
            {
                name: bindparam(name)
                for name in ("table_name", "row_id", "order_id", "data", "created_at")
            }
            | {"user_id": user}
        )
        _INSERTS_WITH_ORDER_USER[orders] = statement
    return statement


_PAYMENT_ORDER = select(PAYMENTS.c.order_id).where(PAYMENTS.c.id == bindparam("key"))
_ORDER_USERS: dict[Table, Any] = {}


def _order_user(orders: Table) -> Any:
    statement = _ORDER_USERS.get(orders)
    if statement is None:
        statement = select(orders.c.user_id).where(orders.c.id == bindparam("key"))
        _ORDER_USERS[orders] = statement
    return statement


def record_row(
    connection: Connection, table: str, row_id: int, *, orders: Table | None = None
) -> None:
    """Log the current state of one row, read back inside the transaction."""
    if table == "order" and orders is not None:
        query = select(*labelled(orders)).where(orders.c.id == row_id)
    else:
        source = FLOW_TABLES[table].__table__  # type: ignore[attr-defined]
        query = select(source).where(source.c.id == row_id)
    row = connection.execute(query).mappings().first()
    if row is not None:
        record(connection, table, dict(row), orders=orders)


def _owner(
    connection: Connection, table: str, row: dict[str, Any], orders: Table
) -> tuple[Any, Any]:
    """The order a row belongs to, and that order's user."""
    if table == "order":
        return row["id"], row.get("user_id")
    if "order_id" in row:
        order_id = row["order_id"]
    elif "payment_id" in row:
        order_id = connection.execute(
            _PAYMENT_ORDER, {"key": row["payment_id"]}
        ).scalar_one_or_none()
    else:
        return None, row.get("user_id")
    user_id = row.get("user_id")
    if user_id is None and order_id is not None:
        user_id = connection.execute(
            _order_user(orders), {"key": order_id}
        ).scalar_one_or_none()
    return order_id, user_id


def since(
    connection: Connection,
    table: str,
    after: int,
    *,
    order_id: int | None = None,
    user_id: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Changes to `table` with an id above `after`, oldest first, filtered."""
    query = select(CHANGES).where(CHANGES.c.table_name == table, CHANGES.c.id > after)
    if order_id is not None:
        query = query.where(CHANGES.c.order_id == order_id)
    if user_id is not None:
        query = query.where(CHANGES.c.user_id == user_id)
    rows = connection.execute(query.order_by(CHANGES.c.id).limit(limit)).mappings()
    return [dict(row) for row in rows]


def head(connection: Connection) -> int:
    """The id of the newest change, 0 when there is none."""
    newest = connection.execute(
        select(CHANGES.c.id).order_by(CHANGES.c.id.desc()).limit(1)
    )
    return int(newest.scalar_one_or_none() or 0)
