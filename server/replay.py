"""Replays: a stored event through the current flows, compared with what was recorded.

The event's payload is read back from the inbox and planned like any dry run,
in a transaction that is rolled back. Before the plan runs, the rows the event
changed when it was processed are put back as they were before it (the run
records keep each write's before and after), the dedup keys it claimed are
released and the messages it queued are taken out of the queue: the flows
then meet what they met the first time, as far as this event's own writes go.
Changes made since by other events to other rows stay as they are.

The differences name, flow by flow, what would now happen otherwise: a run
that would end differently, steps taken or skipped, rows written with other
values, outputs that changed.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.types import DateTime

from actionflow.engine import db
from actionflow.engine.errors import ActionflowError
from actionflow.engine.flow import Flow, FlowSet
from actionflow.engine.inbox import EVENTS, RUNS
from actionflow.engine.jsonvalues import dumps
from actionflow.engine.outbox import OUTBOX
from actionflow.engine.services import Services
from actionflow.engine.stripe_standin import Fixtures
from actionflow.engine.tables import FLOW_TABLES, DedupKey

from .cli_params import MAX_ID
from .dryrun import EventPath, path_for, plan_event
from .plan import QUIET_COLUMNS

DEDUP = DedupKey.__table__  # type: ignore[attr-defined]


def replay_event(
    engine: Engine,
    flows: FlowSet,
    services: Services,
    key: str,
    *,
    target: Flow | None = None,
    secrets: list[str | None] | None = None,
    fixtures: Fixtures | None = None,
    fixtures_name: str = "fixtures",
) -> dict[str, Any]:
    """The plan for stored event `key` (evt_… or our id), with its differences."""
    with db.read(engine) as connection:
        event_row = find_event(connection, key)
        recorded = recorded_runs(connection, event_row["id"])
    event = json.loads(event_row["payload"])
    path = path_for(flows, event_row["type"], target)
    if target is not None:
        recorded = [run for run in recorded if _on_path(run["flow"], path)]

    def put_back(connection: Connection) -> None:
        undo(connection, recorded, event_row["stripe_event_id"], services)

    plan = plan_event(
        engine,
        flows,
        event,
        services,
        path,
        check_order=False,
        prepare=put_back,
        secrets=secrets,
        fixtures=fixtures,
        fixtures_name=fixtures_name,
    )
    plan["event"]["stored_id"] = event_row["id"]
    plan["recorded"] = {
        "status": event_row["status"],
        "note": event_row["note"],
        "runs": [_recorded_report(run) for run in recorded],
    }
    unrecorded = [
        run["flow"]
        for run in recorded
        if run["changes"] is None and run["status"] in ("succeeded", "stopped")
    ]
    if unrecorded:
        plan["notes"].append(
            f"the rows written by {', '.join(unrecorded)} were not recorded (an "
            "older version processed the event): they were not put back, and the "
            "flows met the rows as they are now"
        )
    # Both sides as JSON holds them: exact decimals as text, timestamps ISO.
    planned = json.loads(dumps(plan["runs"]))
    plan["differences"] = differences(plan["recorded"]["runs"], planned)
    return plan


def _on_path(name: str, path: EventPath) -> bool:
    names = {flow.name for flow in path.roots}
    return name in names or (path.only is not None and name in path.only)


def find_event(connection: Connection, key: str) -> dict[str, Any]:
    """The stored event by our numeric id or its Stripe id."""
    # An id the database cannot hold is looked up, and not found, as a Stripe id.
    if key.isascii() and key.isdigit() and 0 < int(key) <= MAX_ID:
        query = select(EVENTS).where(EVENTS.c.id == int(key))
    else:
        query = select(EVENTS).where(EVENTS.c.stripe_event_id == key)
    row = connection.execute(query).mappings().first()
    if row is None:
        raise ActionflowError(
            f"no event {key!r}; give our numeric id or a Stripe event id (evt_…) "
            "as `actionflow events list` shows them"
        )
    return dict(row)


def recorded_runs(connection: Connection, event_id: int) -> list[dict[str, Any]]:
    """The latest record of each flow that ran for the event, in run order."""
    rows = connection.execute(
        select(RUNS).where(RUNS.c.event_id == event_id).order_by(RUNS.c.id)
    ).mappings()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.pop(row["flow"], None)  # a later attempt replaces an earlier one
        latest[row["flow"]] = dict(row)
    by_id = {row["id"]: row["flow"] for row in latest.values()}
    runs = sorted(latest.values(), key=lambda row: row["id"])
    for run in runs:
        run["after"] = by_id.get(run["parent_run_id"])
    return runs


def _recorded_report(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "flow": run["flow"],
        "after": run["after"],
        "status": run["status"],
        "error": run["error"],
        "steps": json.loads(run["trace"]) if run["trace"] else [],
        "changes": json.loads(run["changes"]) if run["changes"] else None,
        "outputs": json.loads(run["outputs"]) if run["outputs"] else None,
    }


def undo(
    connection: Connection,
    runs: list[dict[str, Any]],
    stripe_event_id: str,
    services: Services,
) -> None:
    """Put back what the event's runs wrote, newest first, in this transaction."""
    for run in reversed(runs):
        for change in reversed(json.loads(run["changes"] or "[]")):
            _put_back(connection, change, services)
    # Queued messages are keyed by the event's id: the replay may queue them anew.
    queued = OUTBOX.c.key.startswith(f"{stripe_event_id}:", autoescape=True)
    connection.execute(delete(OUTBOX).where(queued))


def _put_back(
    connection: Connection, change: dict[str, Any], services: Services
) -> None:
    table_name, before, after = change["table"], change["before"], change["after"]
    if table_name == "dedup_key":
        connection.execute(delete(DEDUP).where(DEDUP.c.key == after["key"]))
        return
    if table_name == "order":
        table = services.order_table
    else:
        table = FLOW_TABLES[table_name].__table__  # type: ignore[attr-defined]
    where = table.c.id == after["id"]
    if before is None:
        connection.execute(delete(table).where(where))
        return
    values = {
        name: _typed(table.c[name], value)
        for name, value in before.items()
        if name in table.c and name != "id" and value != after.get(name)
    }
    if values:
        connection.execute(update(table).where(where).values(values))


def _typed(column: Any, value: Any) -> Any:
    """A JSON value back as the column holds it (timestamps, exact decimals)."""
    if value is None:
        return None
    stored = getattr(column.type, "impl", column.type)  # under a TypeDecorator
    if isinstance(stored, DateTime) and isinstance(value, str):
        return datetime.fromisoformat(value)
    try:
        exact = column.type.python_type is Decimal
    except NotImplementedError:  # a type that does not say; keep the value
        exact = False
    return Decimal(str(value)) if exact else value


def differences(
    recorded: list[dict[str, Any]], planned: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What the plan would do otherwise than the recorded runs did, named."""
    found: list[dict[str, Any]] = []
    planned = _same_ids(recorded, planned)
    was = {run["flow"]: run for run in recorded}
    now = {run["flow"]: run for run in planned}
    for name, run in was.items():
        if name not in now:
            text = f"{_label(run)} would not run where it {_ended(run, past=True)}"
            found.append(_item(run, "flow", None, run["status"], None, text))
    for name, run in now.items():
        if name not in was:
            text = f"{_label(run)} would run and end {_ended(run)}; it did not run"
            found.append(_item(run, "flow", None, None, run["status"], text))
            continue
        found += _run_differences(was[name], run)
    return found


def _same_ids(
    recorded: list[dict[str, Any]], planned: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`planned` with the ids of rows it inserts anew changed to the recorded ones.

    A row the event inserted is deleted before the replay and inserted again,
    under a new id when the database does not hand the old one out again
    (PostgreSQL's sequences, or a row inserted since). The n-th row inserted
    into a table is matched to the n-th recorded one; its id, and every
    `<table>_id` column or output holding it, then reads as recorded.
    """
    old, new = _inserted(recorded), _inserted(planned)
    same = {
        (table, now): was
        for table, ids in new.items()
        for was, now in zip(old.get(table, []), ids, strict=False)
        if was != now
    }
    if not same:
        return planned
    return [
        run
        | {
            "changes": [
                change
                | {
                    "before": _renamed(change["before"], same, change["table"]),
                    "after": _renamed(change["after"], same, change["table"]),
                }
                for change in run["changes"]
            ],
            "outputs": _renamed(run["outputs"], same, None),
        }
        for run in planned
    ]


def _inserted(runs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    ids: dict[str, list[Any]] = {}
    for run in runs:
        for change in run["changes"] or []:
            if change["before"] is None and "id" in change["after"]:
                ids.setdefault(change["table"], []).append(change["after"]["id"])
    return ids


def _renamed(value: Any, same: dict[tuple[str, Any], Any], table: str | None) -> Any:
    """`value` with ids in `same` replaced: `id` of `table`, and `<table>_id` keys."""
    if isinstance(value, list):
        return [_renamed(item, same, table) for item in value]
    if not isinstance(value, dict):
        return value
    renamed = {}
    for key, item in value.items():
        if key == "id" and table is not None:
            renamed[key] = _same(same, table, item)
        elif key.endswith("_id"):
            renamed[key] = _same(same, key.removesuffix("_id"), item)
        else:
            renamed[key] = _renamed(item, same, None)
    return renamed


def _same(same: dict[tuple[str, Any], Any], table: str, value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    return same.get((table, value), value)


def _run_differences(was: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    label = _label(now)
    if was["status"] != now["status"]:
        text = f"{label} would end {_ended(now)} where it {_ended(was, past=True)}"
        found.append(_item(now, "status", None, was["status"], now["status"], text))
    found += _step_differences(label, was, now)
    if was["changes"] is not None:
        found += _change_differences(label, was, now)
    if now["status"] != "failed":  # a failed run has no outputs; its status says so
        found += _output_differences(label, was, now)
    return found


def _output_differences(
    label: str, was: dict[str, Any], now: dict[str, Any]
) -> list[dict[str, Any]]:
    found = []
    for path, old, new in _compare(was["outputs"], now["outputs"]):
        where = f"outputs.{path}" if path else "outputs"
        text = f"{label} {where} would be {_value(new)} where it was {_value(old)}"
        found.append(_item(now, "output", where, old, new, text))
    return found


def _step_differences(
    label: str, was: dict[str, Any], now: dict[str, Any]
) -> list[dict[str, Any]]:
    before, after = _outcomes(was["steps"]), _outcomes(now["steps"])
    found = []
    for step in [*after, *(step for step in before if step not in after)]:
        old, new = before.get(step), after.get(step)
        if old == new:
            continue
        if old is None:
            text = f"{label} step {step} would be {new}; it did not run"
        elif new is None:
            text = f"{label} step {step} would not run; it was {old}"
        else:
            text = f"{label} step {step} would be {new} where it was {old}"
        found.append(_item(now, "step", None, old, new, text, step=step))
    return found


def _outcomes(steps: list[dict[str, Any]]) -> dict[str, str]:
    """Each step's last outcome, with the reason where it is part of the outcome."""
    outcomes = {}
    for step in steps:
        outcome = step["outcome"]
        if outcome in ("stopped", "failed") and step.get("reason"):
            outcome += f" ({step['reason']})"
        outcomes[step["step"]] = outcome
    return outcomes


def _change_differences(
    label: str, was: dict[str, Any], now: dict[str, Any]
) -> list[dict[str, Any]]:
    old_rows, new_rows = _rows(was["changes"]), _rows(now["changes"])
    found = []
    for key in [*old_rows, *(key for key in new_rows if key not in old_rows)]:
        old, new = old_rows.get(key), new_rows.get(key)
        row = _row_name(key)
        if new is None:
            assert old is not None
            text = f"{label} would not write {row}; step {old['step']} wrote it"
            found.append(_item(now, "change", row, old["after"], None, text, old))
            continue
        if old is None:
            text = f"{label} step {new['step']} would write {row}; it was not written"
            found.append(_item(now, "change", row, None, new["after"], text, new))
            continue
        for path, before, after in _compare(_kept(old, key), _kept(new, key)):
            text = (
                f"{label} step {new['step']}: {row} {path} would be {_value(after)} "
                f"where it was {_value(before)}"
            )
            found.append(
                _item(now, "change", f"{row} {path}", before, after, text, new)
            )
    return found


def _rows(changes: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each written row's last change; inserts keyed by their order, not their id."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    inserted: dict[str, int] = {}
    for change in changes:
        table = change["table"]
        if change["before"] is None:
            inserted[table] = inserted.get(table, 0) + 1
            key = (table, f"new #{inserted[table]}")
        else:
            key = (table, str(change["after"].get("id")))
        rows[key] = change
    return rows


def _row_name(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"


def _kept(change: dict[str, Any], key: tuple[str, str]) -> dict[str, Any]:
    """The columns compared: not the timestamps, nor a new row's id."""
    ignored = set(QUIET_COLUMNS)
    if key[1].startswith("new #"):
        ignored.add("id")
    return {k: v for k, v in change["after"].items() if k not in ignored}


def _compare(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, old, new) for every leaf that differs; mappings compared key by key."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(key for key in new if key not in old)]:
            inner = f"{path}.{key}" if path else str(key)
            found += _compare(old.get(key), new.get(key), inner)
        return found
    if old == new:
        return []
    return [(path, old, new)]


def _label(run: dict[str, Any]) -> str:
    return f"{'extension' if run.get('after') else 'flow'} {run['flow']}"


def _ended(run: dict[str, Any], *, past: bool = False) -> str:
    """How a run ended, with its error or reason; `past`: as a clause on its own."""
    status = run["status"]
    detail = run.get("error") or run.get("reason")
    text = f"{status} ({detail})" if detail and status != "succeeded" else status
    if not past:
        return text
    return f"is {text}" if status == "pending" else f"ended {text}"


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _item(
    run: dict[str, Any],
    kind: str,
    what: str | None,
    was: Any,
    would_be: Any,
    text: str,
    change: dict[str, Any] | None = None,
    *,
    step: str | None = None,
) -> dict[str, Any]:
    return {
        "flow": run["flow"],
        "kind": kind,
        "step": step or (change or {}).get("step"),
        "what": what,
        "was": was,
        "would_be": would_be,
        "text": text,
    }
