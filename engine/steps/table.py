"""Table steps: get, insert, update, upsert and sum rows of the payment tables.

Only the tables in FLOW_TABLES are reachable, by the names flows use; `order`
is the linked order table, its columns named as the link names them. Values
are coerced to each column's type, and refused when they cannot be converted
exactly (a fractional amount, a float price, a string that is not a number).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    DateTime,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)

from ..errors import RunError
from ..orderlink import labelled
from ..tables import FLOW_TABLES, utcnow
from . import builtin

if TYPE_CHECKING:
    from ..runner import StepContext

TABLE_NAMES = sorted(FLOW_TABLES)
_ROW = {"type": ["object", "null"], "description": "The row, column by column."}
_TABLE = {"enum": TABLE_NAMES, "description": "Which payment table."}
_COLUMNS = {
    "type": "object",
    "minProperties": 1,
    "description": "Column names and their values.",
}


def _row_outputs(literal_with: dict[str, Any]) -> dict[str, Any] | None:
    """`row` narrowed to the columns of the table, when `table` is written out."""
    name = literal_with.get("table")
    if not isinstance(name, str) or name not in FLOW_TABLES:
        return None
    columns: dict[str, Any] = {column: {} for column in flow_table(name).c.keys()}
    described = f"the {name} row"
    return {
        "row": {
            **_ROW,
            "title": described,
            "properties": columns,
            "additionalProperties": False,
        },
    }


def flow_table(name: str, services: Any = None) -> Table:
    """The table a flow calls `name`; `order` is the linked one in `services`."""
    if name == "order" and getattr(services, "order_table", None) is not None:
        return services.order_table  # type: ignore[no-any-return]
    return FLOW_TABLES[name].__table__  # type: ignore[attr-defined, no-any-return]


def _where(table: Table, where: dict[str, Any]) -> list[Any]:
    clauses = []
    for name, value in where.items():
        column = _column(table, name)
        if isinstance(value, list):
            clauses.append(column.in_([coerce(column, item) for item in value]))
        else:
            clauses.append(column == coerce(column, value))
    return clauses


@builtin(
    "table.get",
    "Read one row matching `where`; fail if none, unless `required` is false.",
    inputs={
        "type": "object",
        "required": ["table", "where"],
        "properties": {
            "table": _TABLE,
            "where": _COLUMNS,
            "required": {"type": "boolean", "default": True},
            "for_update": {
                "type": "boolean",
                "default": False,
                "description": "Lock the row until the run commits (PostgreSQL).",
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["row", "found"],
        "properties": {"row": _ROW, "found": {"type": "boolean"}},
        "additionalProperties": False,
    },
    outputs_for=_row_outputs,
)
def get_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    table = flow_table(args["table"], context.services)
    query, params = _select(table, args["where"], bool(args.get("for_update")))
    rows = context.connection.execute(query, params).mappings().all()
    if len(rows) > 1:
        raise RunError(f"more than one {args['table']} row matches {args['where']}")
    if not rows:
        if args.get("required", True):
            raise RunError(f"no {args['table']} row matches {args['where']}")
        return {"row": None, "found": False}
    return {"row": dict(rows[0]), "found": True}


@builtin(
    "table.insert",
    "Insert one row and return it.",
    inputs={
        "type": "object",
        "required": ["table", "values"],
        "properties": {"table": _TABLE, "values": _COLUMNS},
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["row"],
        "properties": {"row": _ROW},
        "additionalProperties": False,
    },
    outputs_for=_row_outputs,
)
def insert_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    table = flow_table(args["table"], context.services)
    values = _values(table, args["values"])
    for stamp in ("created_at", "updated_at"):
        if stamp in table.c and stamp not in values:
            values[stamp] = utcnow()
    result = context.connection.execute(
        insert(table).values(values).returning(*labelled(table))
    )
    row = dict(result.mappings().one())
    context.record_change(args["table"], None, row)
    return {"row": row}


@builtin(
    "table.update",
    "Set columns of the row with primary key `id` and return it.",
    inputs={
        "type": "object",
        "required": ["table", "id", "set"],
        "properties": {
            "table": _TABLE,
            "id": {"type": ["integer", "string"], "description": "The row's id."},
            "set": _COLUMNS,
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["row"],
        "properties": {"row": _ROW},
        "additionalProperties": False,
    },
    outputs_for=_row_outputs,
)
def update_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    table = flow_table(args["table"], context.services)
    key = coerce(table.c.id, args["id"])
    values = _values(table, args["set"])
    if "updated_at" in table.c:
        values.setdefault("updated_at", utcnow())
    before = None
    if context.keep_before:
        before = (
            context.connection.execute(_statement(_by_id, table), {"key": key})
            .mappings()
            .first()
        )
        if before is None:
            raise RunError(f"no {args['table']} row with id {key}")
    statement = _statement(_update_by_id, table, tuple(values))
    params = {f"{_SET}{name}": value for name, value in values.items()}
    found = context.connection.execute(statement, {**params, "key": key}).mappings()
    after = found.first()
    if after is None:
        raise RunError(f"no {args['table']} row with id {key}")
    row = dict(after)
    context.record_change(
        args["table"], dict(before) if before is not None else None, row
    )
    return {"row": row}


@builtin(
    "table.upsert",
    "Update the row matching `where` with `set`, or insert one with both.",
    inputs={
        "type": "object",
        "required": ["table", "where", "set"],
        "properties": {"table": _TABLE, "where": _COLUMNS, "set": _COLUMNS},
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["row", "inserted"],
        "properties": {"row": _ROW, "inserted": {"type": "boolean"}},
    },
)
def upsert_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    found = get_step(
        context,
        {"table": args["table"], "where": args["where"], "required": False},
    )
    if found["found"]:
        row = found["row"]
        updated = update_step(
            context, {"table": args["table"], "id": row["id"], "set": args["set"]}
        )
        return {"row": updated["row"], "inserted": False}
    values = {**args["where"], **args["set"]}
    inserted = insert_step(context, {"table": args["table"], "values": values})
    return {"row": inserted["row"], "inserted": True}


@builtin(
    "table.sum",
    "Add up an integer column over the rows matching `where` (0 when none match).",
    inputs={
        "type": "object",
        "required": ["table", "column", "where"],
        "properties": {
            "table": _TABLE,
            "column": {"type": "string", "description": "The column to add up."},
            "where": {
                "type": "object",
                "description": "Column values to match; a list matches any of them.",
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["total", "count"],
        "properties": {"total": {"type": "integer"}, "count": {"type": "integer"}},
    },
)
def sum_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    table = flow_table(args["table"], context.services)
    column = _column(table, args["column"])
    if column.type.python_type is not int:
        raise RunError(
            f"table.sum adds up integer columns; {args['table']}.{args['column']} "
            f"holds {column.type.python_type.__name__}"
        )
    query = select(func.coalesce(func.sum(column), 0), func.count()).where(
        *_where(table, args["where"])
    )
    total, count = context.connection.execute(query).one()
    return {"total": int(total), "count": int(count)}


# Statements are built once per table and shape, with their values bound at
# each run: building a statement (and its cache key) costs more than running it.
_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_MOST_STATEMENTS = 512  # shapes come from flows; a bound against runaway growth
_SET = "set__"  # bound parameter names in an UPDATE must not be column names


def _statement(build: Any, table: Table, *shape: Any) -> Any:
    key = (build, table, *shape)
    statement = _STATEMENTS.get(key)
    if statement is None:
        if len(_STATEMENTS) >= _MOST_STATEMENTS:
            _STATEMENTS.clear()
        statement = _STATEMENTS[key] = build(table, *shape)
    return statement


def _by_id(table: Table) -> Any:
    return select(*labelled(table)).where(table.c.id == bindparam("key"))


def _update_by_id(table: Table, names: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c.id == bindparam("key"))
        .values({name: bindparam(f"{_SET}{name}") for name in names})
        .returning(*labelled(table))
    )


def _select_where(
    table: Table, shape: tuple[tuple[str, bool], ...], for_update: bool
) -> Any:
    clauses: list[Any] = []
    for number, (name, many) in enumerate(shape):
        column = table.c[name]
        if many:
            clauses.append(column.in_(bindparam(f"w{number}", expanding=True)))
        else:
            clauses.append(column == bindparam(f"w{number}"))
    query = select(*labelled(table)).where(*clauses).limit(2)
    return query.with_for_update() if for_update else query


def _select(
    table: Table, where: dict[str, Any], for_update: bool
) -> tuple[Any, dict[str, Any]]:
    """The query for the rows matching `where` (at most 2), and its parameters."""
    shape = []
    params = {}
    for number, (name, value) in enumerate(where.items()):
        column = _column(table, name)
        many = isinstance(value, list)
        shape.append((name, many))
        params[f"w{number}"] = (
            [coerce(column, item) for item in value] if many else coerce(column, value)
        )
    return _statement(_select_where, table, tuple(shape), for_update), params


def _column(table: Table, name: str) -> Column[Any]:
    if name not in table.c:
        known = ", ".join(sorted(table.c.keys()))
        raise RunError(
            f"table {table.name} has no column '{name}'; columns are: {known}"
        )
    return table.c[name]


def _values(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for name, value in values.items():
        column = _column(table, name)
        if column.primary_key:
            raise RunError(f"column '{name}' is the primary key and cannot be set")
        result[name] = coerce(column, value)
    return result


def coerce(column: Column[Any], value: Any) -> Any:
    """`value` converted exactly to the Python type of `column`, or a RunError."""
    if value is None:
        if not column.nullable and not column.primary_key:
            raise RunError(f"column '{column.name}' cannot be null")
        return None
    kind = _python_type(column)
    try:
        converted = _convert(kind, value)
    except (ValueError, InvalidOperation, OverflowError):
        converted = _REFUSED
    if converted is _REFUSED:
        raise RunError(
            f"column '{column.name}' takes {kind.__name__}, "
            f"got {type(value).__name__} {value!r}"
        )
    return converted


_REFUSED = object()
# Numbers written as text: ASCII digits only, so that "1_000", "1e3" or another
# script's digits, all of which int() and Decimal() accept, are refused.
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _python_type(column: Column[Any]) -> type:
    # sqlmodel's UTCDateTime declares `object`; its implementation is a DateTime.
    for kind in (column.type, getattr(column.type, "impl", None)):
        if isinstance(kind, DateTime):
            return datetime
    return column.type.python_type


def _convert(kind: type, value: Any) -> Any:
    if isinstance(value, float):
        return _REFUSED  # no float may become money or an id
    if kind is bool:
        return value if isinstance(value, bool) else _REFUSED
    if kind is int:
        if isinstance(value, bool):
            return _REFUSED
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
            return int(value)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)
        return _REFUSED
    if kind is Decimal:
        if isinstance(value, bool):
            return _REFUSED
        if isinstance(value, str):
            text = value.strip()
            return Decimal(text) if _DECIMAL_TEXT.fullmatch(text) else _REFUSED
        if isinstance(value, int | Decimal):
            number = Decimal(value)
            return number if number.is_finite() else _REFUSED
        return _REFUSED
    if kind is datetime:
        return _datetime(value)
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return str(value)
        return _REFUSED
    return value


def _datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)  # Stripe's Unix timestamps
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _REFUSED
