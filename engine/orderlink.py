"""The order table: actionflow's own, or an existing table of the app, linked.

A link names a table and the columns that hold an order's id, price, currency,
user id and status. Flows, actions and reads use those five names; the link
maps them to the real columns (SQLAlchemy column keys), so `order.price` may be
stored in a column called `total`.

Payments keep the id of the order they pay. Once one does, the link is fixed:
it is recorded in the `setting` table, and a start with another link stops
rather than leave payments pointing at rows of a different table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Numeric,
    Table,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.sql.elements import Label

from . import db
from .errors import ConfigError
from .tables import ExactDecimal, Order, Payment, RecurringPayment, Setting, utcnow

# The names flows and the API use for an order's columns.
ORDER_FIELDS = ("id", "price", "currency", "user_id", "status")
SETTING_NAME = "order_link"

_SETTINGS = Setting.__table__  # type: ignore[attr-defined]
_PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
_RECURRING = RecurringPayment.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OrderLink:
    """Which table holds the orders, and which column holds each order field."""

    table: str = "order"
    columns: dict[str, str] = field(
        default_factory=lambda: {name: name for name in ORDER_FIELDS}
    )

    @property
    def is_default(self) -> bool:
        """True for actionflow's own `order` table."""
        return self == OrderLink()

    def describe(self) -> str:
        """The link in one line, for messages."""
        pairs = ", ".join(f"{name}={self.columns[name]}" for name in ORDER_FIELDS)
        return f"table {self.table} ({pairs})"

    def as_json(self) -> str:
        """The link as it is recorded in the setting table."""
        return json.dumps(
            {"table": self.table, "columns": self.columns}, sort_keys=True
        )


def link_from_config(value: Any, source: str) -> OrderLink:
    """The `order_table` setting as a link, or a ConfigError saying what is wrong."""
    usage = (
        "order_table takes `table: NAME` and `columns:` mapping "
        f"{', '.join(ORDER_FIELDS)} to the table's column names"
    )
    if not isinstance(value, dict) or set(value) - {"table", "columns"}:
        raise ConfigError(f"setting order_table in {source}: {usage}")
    table = value.get("table")
    if not isinstance(table, str) or not table:
        raise ConfigError(f"setting order_table in {source} has no table name; {usage}")
    columns = value.get("columns") or {}
    if not isinstance(columns, dict):
        raise ConfigError(f"setting order_table.columns in {source}: {usage}")
    unknown = sorted(set(columns) - set(ORDER_FIELDS))
    if unknown:
        raise ConfigError(
            f"setting order_table.columns in {source} names unknown field(s) "
            f"{', '.join(unknown)}; the fields are {', '.join(ORDER_FIELDS)}"
        )
    mapping = {}
    for name in ORDER_FIELDS:
        column = columns.get(name, name)
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"setting order_table.columns.{name} in {source} must be a column name"
            )
        mapping[name] = column
    return OrderLink(table=table, columns=mapping)


def order_table(engine: Engine, link: OrderLink) -> Table:
    """The order table as a SQLAlchemy Table whose column keys are ORDER_FIELDS."""
    if link.is_default:
        return Order.__table__  # type: ignore[attr-defined, no-any-return]
    found = {
        column["name"]: column
        for column in _reflect(engine, link.table, link.describe())
    }
    columns = []
    for name in ORDER_FIELDS:
        real = link.columns[name]
        if real not in found:
            raise ConfigError(
                f"the linked order table {link.table} has no column {real!r} "
                f"(for the order's {name}); its columns are: "
                f"{', '.join(sorted(found))}; fix order_table.columns.{name}"
            )
        kind = _column_type(link, name, found[real]["type"])
        columns.append(Column(real, kind, key=name, primary_key=name == "id"))
    return Table(link.table, MetaData(), *columns)


def _reflect(engine: Engine, name: str, described: str) -> list[Any]:
    inspector = inspect(engine)
    if not inspector.has_table(name):
        raise ConfigError(
            f"the linked order table {name!r} does not exist in the database "
            f"({described}); create it or fix the order_table setting"
        )
    return inspector.get_columns(name)  # type: ignore[return-value]


def _column_type(link: OrderLink, name: str, kind: Any) -> Any:
    try:
        python_type = kind.python_type
    except NotImplementedError:
        python_type = None
    if name == "id" and python_type is not int:
        raise ConfigError(
            f"the id column {link.columns['id']!r} of {link.table} is not an "
            "integer; payments refer to orders by integer id"
        )
    if name != "price":
        return kind
    if python_type is float or (
        isinstance(kind, Numeric) and not getattr(kind, "asdecimal", True)
    ):
        raise ConfigError(
            f"the price column {link.columns['price']!r} of {link.table} holds "
            "floats, which cannot hold most prices exactly; store prices as "
            "NUMERIC or as decimal text"
        )
    if isinstance(kind, Numeric):
        return Numeric(kind.precision, kind.scale, asdecimal=True)
    if python_type is int:
        return kind
    return ExactDecimal()


def labelled(table: Table) -> list[Label[Any]]:
    """The table's columns labelled by key, so rows read with the link's names."""
    return [column.label(column.key) for column in table.c]


def check_link(engine: Engine, link: OrderLink) -> None:
    """Record the link, or stop if it differs from one payments already rely on."""
    with db.write(engine) as connection:
        recorded = connection.execute(
            select(_SETTINGS.c.value).where(_SETTINGS.c.name == SETTING_NAME)
        ).scalar_one_or_none()
        if recorded == link.as_json():
            return
        if recorded is None:
            connection.execute(
                insert(_SETTINGS).values(
                    name=SETTING_NAME, value=link.as_json(), created_at=utcnow()
                )
            )
            return
        if _referenced(connection):
            previous = _parse(recorded)
            raise ConfigError(
                "the order table link cannot change once payments reference it: "
                f"the database is linked to {previous.describe()}, the configuration "
                f"asks for {link.describe()}; restore the previous order_table "
                "setting (or start with a new database)"
            )
        connection.execute(
            update(_SETTINGS)
            .where(_SETTINGS.c.name == SETTING_NAME)
            .values(value=link.as_json())
        )


def _referenced(connection: Connection) -> bool:
    for table in (_PAYMENTS, _RECURRING):
        count = connection.execute(select(func.count()).select_from(table)).scalar()
        if count:
            return True
    return False


def _parse(recorded: str) -> OrderLink:
    data = json.loads(recorded)
    return OrderLink(table=data["table"], columns=dict(data["columns"]))
