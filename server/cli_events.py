"""`actionflow events` and `actionflow runs`: look into the inbox, replay events.

Exit codes as for every command: 0 success, 1 when what was asked for does not
exist or cannot be done, 2 for usage errors. Nothing here prints an event's
payload, and every text that comes from a run (errors, notes, step reasons,
outputs) passes through the secret filter first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Connection, Engine, func, select, update

from actionflow.engine import db
from actionflow.engine.errors import ActionflowError
from actionflow.engine.inbox import EVENTS, RUNS
from actionflow.engine.redact import redact
from actionflow.engine.tables import utcnow

from .cli_params import LIMIT, ROW_ID, parse_row_id
from .config import Settings, load_settings

EVENT_STATUSES = ["pending", "processed", "ignored", "skipped", "failed"]
RUN_STATUSES = ["pending", "succeeded", "stopped", "failed"]

_config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: ./actionflow.yaml if it exists).",
)
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


def _open(config: Path | None) -> tuple[Engine, Settings]:
    try:
        settings = load_settings(config)
        engine = db.create_db_engine(settings.database_url)
        click.get_current_context().call_on_close(engine.dispose)
        db.prepare(engine)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    return engine, settings


def _clean(value: Any, settings: Settings) -> Any:
    """A value safe to print: secret values and shapes masked."""
    if value is None:
        return None
    return redact(str(value), _known_secrets(settings))


def _known_secrets(settings: Settings) -> list[str]:
    return [
        value
        for value in (
            settings.stripe_secret_key,
            settings.admin_token,
            *settings.webhook_secrets,
        )
        if value
    ]


def _stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [
            max(width, len(cell)) for width, cell in zip(widths, row, strict=True)
        ]
    for line in [headers, *rows]:
        click.echo(
            "  ".join(
                cell.ljust(width) for cell, width in zip(line, widths, strict=True)
            ).rstrip()
        )


def _shorten(text: str | None, limit: int = 60) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.group()
def events() -> None:
    """Stripe events in the inbox: list, show, replay."""


@events.command(name="list")
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Only this status.")
@click.option("--type", "kind", help="Only this event type, e.g. invoice.paid.")
@click.option("--limit", default=50, show_default=True, type=LIMIT)
@_json_option
@_config_option
def list_events(
    status: str | None, kind: str | None, limit: int, as_json: bool, config: Path | None
) -> None:
    """The newest events first, with their status and attempts."""
    engine, settings = _open(config)
    query = select(EVENTS).order_by(EVENTS.c.id.desc()).limit(limit)
    if status:
        query = query.where(EVENTS.c.status == status)
    if kind:
        query = query.where(EVENTS.c.type == kind)
    with db.read(engine) as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    if as_json:
        click.echo(json.dumps([_event_json(row, settings) for row in rows], indent=2))
        return
    _table(
        ["ID", "STRIPE EVENT", "TYPE", "STATUS", "ATTEMPTS", "RECEIVED", "NOTE"],
        [
            [
                str(row["id"]),
                row["stripe_event_id"],
                row["type"],
                row["status"],
                str(row["attempts"]),
                _stamp(row["received_at"]),
                _shorten(_clean(row["last_error"] or row["note"], settings)),
            ]
            for row in rows
        ],
    )


def _event_json(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {
        "id": row["id"],
        "stripeEventId": row["stripe_event_id"],
        "type": row["type"],
        "objectId": row["object_id"],
        "stripeCreated": row["stripe_created"],
        "status": row["status"],
        "attempts": row["attempts"],
        "nextAttemptAt": _iso(row["next_attempt_at"]),
        "receivedAt": _iso(row["received_at"]),
        "processedAt": _iso(row["processed_at"]),
        "lastError": _clean(row["last_error"], settings),
        "note": _clean(row["note"], settings),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _find_event(connection: Connection, key: str) -> dict[str, Any]:
    row_id = parse_row_id(key)
    column = EVENTS.c.id if row_id is not None else EVENTS.c.stripe_event_id
    value: Any = row_id if row_id is not None else key
    row = connection.execute(select(EVENTS).where(column == value)).mappings().first()
    if row is None:
        raise click.ClickException(
            f"no event {key!r}; give our numeric id or a Stripe event id (evt_…) "
            "as `actionflow events list` shows them"
        )
    return dict(row)


@events.command(name="show")
@click.argument("key", metavar="ID")
@_json_option
@_config_option
def show_event(key: str, as_json: bool, config: Path | None) -> None:
    """One event (our id or its Stripe id): status, attempts, errors, its runs."""
    engine, settings = _open(config)
    with db.read(engine) as connection:
        row = _find_event(connection, key)
        runs = [
            dict(run)
            for run in connection.execute(
                select(RUNS).where(RUNS.c.event_id == row["id"]).order_by(RUNS.c.id)
            ).mappings()
        ]
    if as_json:
        data = _event_json(row, settings)
        data["runs"] = [_run_json(run, settings) for run in runs]
        click.echo(json.dumps(data, indent=2))
        return
    fields = _event_json(row, settings)
    for name in (
        "id",
        "stripeEventId",
        "type",
        "objectId",
        "stripeCreated",
        "status",
        "attempts",
        "receivedAt",
        "processedAt",
        "nextAttemptAt",
        "lastError",
        "note",
    ):
        click.echo(f"{name + ':':<15} {'-' if fields[name] is None else fields[name]}")
    click.echo("runs:")
    if not runs:
        click.echo("  (none)")
    for run in runs:
        error = _clean(run["error"], settings)
        line = (
            f"  #{run['id']} {run['flow']} {run['status']} attempts={run['attempts']}"
        )
        click.echo(line + (f" error: {_shorten(error, 200)}" if error else ""))


REPLAY_HELP = """Process events once more: each is set back to `pending` with a
fresh retry budget, and the worker (`serve` or `worker`) runs its flows again.

Give event ids (ours or Stripe's), or --failed for every parked event. Use it
after fixing what made an event fail. Replaying an event that was processed
already is safe: the system flows do nothing to a payment that is settled (no
second status change, no second run of its extensions), and an event older
than one applied since is skipped. Extensions that are not guarded by the state
they read, or by a `dedup` step, would run again.
"""


@events.command(name="replay", help=REPLAY_HELP)
@click.argument("keys", nargs=-1, metavar="[ID]...")
@click.option("--failed", is_flag=True, help="Replay every event parked as failed.")
@_config_option
def replay_events(keys: tuple[str, ...], failed: bool, config: Path | None) -> None:
    if bool(keys) == failed:
        raise click.UsageError("give event ids or --failed, not both and not neither")
    engine, _settings = _open(config)
    with db.read(engine) as connection:
        if failed:
            ids = list(
                connection.execute(
                    select(EVENTS.c.id)
                    .where(EVENTS.c.status == "failed")
                    .order_by(EVENTS.c.id)
                ).scalars()
            )
        else:
            ids = [_find_event(connection, key)["id"] for key in keys]
    if not ids:
        click.echo("no failed events to replay")
        return
    with click.progressbar(
        ids, label=f"replaying {len(ids)} events", file=sys.stderr
    ) as bar:
        for event_id in bar:
            _replay(engine, event_id)
    click.echo(
        f"{len(ids)} event(s) set back to pending; the worker processes them next"
    )


def _replay(engine: Engine, event_id: int) -> None:
    now = utcnow()
    with db.write(engine) as connection:
        connection.execute(
            update(EVENTS)
            .where(EVENTS.c.id == event_id)
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                note=f"replayed {now:%Y-%m-%d %H:%M:%S} UTC",
            )
        )


@click.group()
def runs() -> None:
    """Flow runs: list them, show one step by step."""


@runs.command(name="list")
@click.option("--flow", help="Only runs of this flow.")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=LIMIT)
@_json_option
@_config_option
def list_runs(
    flow: str | None, status: str | None, limit: int, as_json: bool, config: Path | None
) -> None:
    """The newest runs first."""
    engine, settings = _open(config)
    query = (
        select(RUNS, EVENTS.c.stripe_event_id)
        .outerjoin(EVENTS, EVENTS.c.id == RUNS.c.event_id)
        .order_by(RUNS.c.id.desc())
        .limit(limit)
    )
    if flow:
        query = query.where(RUNS.c.flow == flow)
    if status:
        query = query.where(RUNS.c.status == status)
    with db.read(engine) as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    if as_json:
        click.echo(json.dumps([_run_json(row, settings) for row in rows], indent=2))
        return
    _table(
        ["ID", "FLOW", "STATUS", "ATTEMPTS", "EVENT", "FINISHED", "ERROR"],
        [
            [
                str(row["id"]),
                row["flow"],
                row["status"],
                str(row["attempts"]),
                row["stripe_event_id"] or "-",
                _stamp(row["finished_at"]),
                _shorten(_clean(row["error"], settings)),
            ]
            for row in rows
        ],
    )


def _run_json(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {
        "id": row["id"],
        "flow": row["flow"],
        "status": row["status"],
        "attempts": row["attempts"],
        "eventId": row["event_id"],
        "parentRunId": row["parent_run_id"],
        "createdAt": _iso(row["created_at"]),
        "finishedAt": _iso(row["finished_at"]),
        "nextAttemptAt": _iso(row["next_attempt_at"]),
        "error": _clean(row["error"], settings),
        "steps": [
            {**step, "reason": _clean(step.get("reason"), settings)}
            for step in _steps(row["trace"])
        ],
        "outputs": json.loads(_clean(row["outputs"], settings))
        if row["outputs"]
        else None,
    }


def _steps(trace: str | None) -> list[dict[str, Any]]:
    steps = json.loads(trace) if trace else []
    return steps if isinstance(steps, list) else []


@runs.command(name="show")
@click.argument("run_id", metavar="ID", type=ROW_ID)
@_json_option
@_config_option
def show_run(run_id: int, as_json: bool, config: Path | None) -> None:
    """One run: its status, error, and each step's outcome and duration."""
    engine, settings = _open(config)
    with db.read(engine) as connection:
        row = connection.execute(select(RUNS).where(RUNS.c.id == run_id)).mappings()
        found = row.first()
        if found is None:
            raise click.ClickException(
                f"no run {run_id}; `actionflow runs list` shows the runs there are"
            )
        total = connection.execute(
            select(func.count()).select_from(RUNS).where(RUNS.c.parent_run_id == run_id)
        ).scalar_one()
    data = _run_json(dict(found), settings)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for name in ("id", "flow", "status", "attempts", "eventId", "parentRunId"):
        click.echo(f"{name + ':':<13} {'-' if data[name] is None else data[name]}")
    click.echo(f"{'finishedAt:':<13} {data['finishedAt'] or '-'}")
    click.echo(f"{'error:':<13} {data['error'] or '-'}")
    click.echo(f"{'extensions:':<13} {total} run(s) after this one")
    click.echo("steps:")
    if not data["steps"]:
        click.echo("  (none recorded)")
    for step in data["steps"]:
        reason = f"  {step['reason']}" if step.get("reason") else ""
        click.echo(
            f"  {step['step']:<20} {step['use']:<14} {step['outcome']:<8} "
            f"{step['ms']:>9.3f} ms{reason}"
        )
