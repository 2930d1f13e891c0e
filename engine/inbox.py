"""The event inbox: store verified Stripe events, then process each exactly once.

Processing claims one due event inside a write transaction (SKIP LOCKED on
PostgreSQL; the write lock on SQLite), runs the system flows for its type, runs
their extensions each inside a savepoint, and commits every table write together
with the event's new status and the run records. A crash before the commit
leaves the event pending; nothing is half-written.

An extension that fails is rolled back to its savepoint alone and kept as a
pending run, retried with backoff on its own; the system flow's work stands.

Order. Stripe does not deliver events in order, so each Stripe object keeps the
`created` time of the newest event applied to it (table stripe_object_version,
written in the same transaction as the flows' work). An event older than that,
strictly, is marked `skipped` with a note and runs no flow: a late
`customer.subscription.updated` never undoes a newer one. `created` counts
whole seconds, so an event from the same second is not older and does apply.
Events that move an object into a final state (FINAL_TYPES, e.g.
payment_intent.succeeded) always apply, whatever arrived before them: a
succeeded payment must be recorded even after a payment_failed that Stripe
stamped later, and the flows themselves refuse to move a settled row back.
Reading and writing the version holds a row lock on PostgreSQL, so two workers
never apply two events of one object at the same time.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from . import db
from .errors import RunError
from .flow import Flow, FlowSet
from .jsonvalues import dumps
from .runner import RunResult, run_flow
from .tables import FlowRun, StripeObjectVersion, WebhookEvent, utcnow

log = logging.getLogger("actionflow.inbox")

EVENTS = WebhookEvent.__table__  # type: ignore[attr-defined]
RUNS = FlowRun.__table__  # type: ignore[attr-defined]
VERSIONS = StripeObjectVersion.__table__  # type: ignore[attr-defined]

# Event types after which their object never changes state again; they apply
# even when a newer event of the same object was applied first.
FINAL_TYPES = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.canceled",
        "invoice.paid",
        "customer.subscription.deleted",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """How failed runs are retried: exponential backoff with jitter, then parked."""

    attempts: int = 8
    base_seconds: float = 2.0
    cap_seconds: float = 3600.0

    def delay(self, attempt: int) -> timedelta:
        """The wait before retry number `attempt` (1-based), with full jitter."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


@dataclass
class Processor:
    """Processes stored events and pending runs with one set of flows."""

    engine: Engine
    flows: FlowSet
    services: Any = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Events per transaction in `process_next_events`; None: the database's default.
    batch: int | None = None

    def process_next_event(self) -> bool:
        """Claim and process one due event; False when none is due."""
        row = None
        try:
            with db.write(self.engine) as connection:
                row = next(iter(_claim(connection, EVENTS, 1)), None)
                if row is None:
                    return False
                self._process_event(connection, row)
            return True
        except _RunFailed as failed:
            failure = failed.result
        except Exception as exc:
            # Anything unexpected (an error at commit, a bug) must not lose the
            # event: it stays pending, and the failure is recorded.
            if row is None:
                raise
            log.exception("event processing crashed event=%s", row["stripe_event_id"])
            failure = _crash_result(row["type"], exc)
        self._record_event_failure(row, failure)
        return True

    def process_next_events(self) -> int:
        """Claim up to `batch` due events and process them in one transaction.

        Each event runs inside a savepoint of its own: one that fails is rolled
        back alone and recorded as failed after the commit, exactly as
        `process_next_event` does; the others commit together, with one commit
        (one fsync) for all. The number of events claimed; 0 when none is due.
        """
        most = self.batch if self.batch is not None else _default_batch(self.engine)
        if most <= 1:
            return int(self.process_next_event())
        rows: list[dict[str, Any]] = []
        failures: list[tuple[dict[str, Any], RunResult]] = []
        try:
            with db.write(self.engine) as connection:
                rows = _claim(connection, EVENTS, most)
                for row in rows:
                    failure = self._process_in_savepoint(connection, row)
                    if failure is not None:
                        failures.append((row, failure))
        except Exception:
            if not rows:
                raise
            # The batch as a whole failed (at commit, say): nothing of it was
            # written. Process its events one by one, which records each
            # event's own failure.
            log.exception("event batch failed; processing its events one by one")
            done = 0
            while done < len(rows) and self.process_next_event():
                done += 1
            return len(rows)
        for row, failure in failures:
            self._record_event_failure(row, failure)
        return len(rows)

    def _process_in_savepoint(
        self, connection: Connection, row: dict[str, Any]
    ) -> RunResult | None:
        """Process one event of a batch; its failure, rolled back, or None."""
        savepoint = connection.begin_nested()
        try:
            self._process_event(connection, row)
        except _RunFailed as failed:
            savepoint.rollback()
            return failed.result
        except Exception as exc:
            log.exception("event processing crashed event=%s", row["stripe_event_id"])
            if savepoint.is_active:
                savepoint.rollback()
            return _crash_result(row["type"], exc)
        savepoint.commit()
        return None

    def process_next_run(self) -> bool:
        """Claim and run one due pending run (an extension being retried)."""
        row = None
        try:
            with db.write(self.engine) as connection:
                row = next(iter(_claim(connection, RUNS, 1)), None)
                if row is None:
                    return False
                flow = self.flows.by_name.get(row["flow"])
                if flow is None:
                    raise _RunFailed(_missing_flow(row["flow"]))
                self._run_pending(connection, row, flow)
            return True
        except _RunFailed as failed:
            failure = failed.result
        except Exception as exc:
            if row is None:
                raise
            log.exception("run processing crashed run=%s", row["id"])
            failure = _crash_result(row["flow"], exc)
        self._record_run_failure(row, failure)
        return True

    def _process_event(
        self, connection: Connection, row: dict[str, Any]
    ) -> RunResult | None:
        event = json.loads(row["payload"])
        flows = self.flows.for_event(row["type"])
        if not flows:
            _finish_event(
                connection, row["id"], "ignored", note=f"no flow handles {row['type']}"
            )
            log.info(
                "event ignored event=%s type=%s", row["stripe_event_id"], row["type"]
            )
            return None
        # On SQLite one statement checks the object's version and records this
        # event's; elsewhere the version row is locked now and updated last.
        applies_version = connection.dialect.name == "sqlite"
        if applies_version:
            newer = _apply_version(connection, row)
        else:
            newer = _newer_version(connection, row)
        if newer is not None:
            _finish_event(connection, row["id"], "skipped", note=newer)
            log.info(
                "event skipped event=%s type=%s reason=older",
                row["stripe_event_id"],
                row["type"],
            )
            return None
        notes = []
        for flow in flows:
            if not flow.system:
                _queue_run(connection, flow.name, event_id=row["id"])
                continue
            result = run_flow(
                flow,
                connection,
                event=event,
                services=self.services,
                flows=self.flows,
                run_key=row["stripe_event_id"],
            )
            if result.status == "failed":
                raise _RunFailed(result)
            run_id = _insert_run(connection, result, event_id=row["id"], attempts=1)
            if result.status == "stopped":
                notes.append(f"{flow.name} stopped: {result.reason}")
                continue
            self._run_extensions(
                connection,
                flow,
                result,
                row["id"],
                run_id,
                run_key=row["stripe_event_id"],
            )
        if not applies_version:
            _record_version(connection, row)
        _finish_event(connection, row["id"], "processed", note="; ".join(notes) or None)
        log.info(
            "event processed event=%s type=%s flows=%d",
            row["stripe_event_id"],
            row["type"],
            len(flows),
        )

    def _run_extensions(
        self,
        connection: Connection,
        parent: Flow,
        result: RunResult,
        event_id: int,
        run_id: int,
        *,
        run_key: str | None = None,
    ) -> None:
        if run_key is None:
            run_key = _run_key(connection, event_id)
        for extension in self.flows.extensions(parent.name):
            savepoint = connection.begin_nested()
            try:
                outcome = run_flow(
                    extension,
                    connection,
                    trigger_outputs=result.outputs,
                    trigger_flow=parent.name,
                    services=self.services,
                    flows=self.flows,
                    run_key=run_key,
                )
            except Exception as exc:  # a bug in a step must not undo the parent
                log.exception("extension crashed flow=%s", extension.name)
                outcome = _crash_result(extension.name, exc)
            if outcome.status == "failed":
                savepoint.rollback()
                self._queue_retry(
                    connection, extension, result, event_id, run_id, outcome
                )
                continue
            savepoint.commit()
            child_id = _insert_run(
                connection,
                outcome,
                event_id=event_id,
                parent_run_id=run_id,
                trigger_outputs=result.outputs,
                attempts=1,
            )
            if outcome.status == "succeeded":
                self._run_extensions(
                    connection,
                    extension,
                    outcome,
                    event_id,
                    child_id,
                    run_key=run_key,
                )

    def _queue_retry(
        self,
        connection: Connection,
        flow: Flow,
        parent: RunResult,
        event_id: int,
        parent_run_id: int,
        outcome: RunResult,
    ) -> None:
        connection.execute(
            insert(RUNS).values(
                flow=flow.name,
                event_id=event_id,
                parent_run_id=parent_run_id,
                status="pending",
                attempts=1,
                next_attempt_at=utcnow() + self.retry.delay(1),
                trigger_outputs=dumps(parent.outputs),
                trace=dumps([step.as_dict() for step in outcome.trace]),
                error=str(outcome.error),
                created_at=utcnow(),
            )
        )
        log.warning(
            "extension failed flow=%s event_id=%s error=%s",
            flow.name,
            event_id,
            outcome.error,
        )

    def _run_pending(
        self, connection: Connection, row: dict[str, Any], flow: Flow
    ) -> RunResult:
        event = None
        if row["event_id"] is not None and flow.trigger.stripe:
            payload = connection.execute(
                select(EVENTS.c.payload).where(EVENTS.c.id == row["event_id"])
            ).scalar_one()
            event = json.loads(payload)
        parent_outputs = (
            json.loads(row["trigger_outputs"]) if row["trigger_outputs"] else None
        )
        result = run_flow(
            flow,
            connection,
            event=event,
            trigger_outputs=parent_outputs,
            trigger_flow=flow.trigger.after,
            services=self.services,
            flows=self.flows,
            run_key=_run_key(connection, row["event_id"]),
        )
        if result.status == "failed":
            raise _RunFailed(result)
        _finish_run(
            connection,
            row["id"],
            result.status,
            attempts=row["attempts"] + 1,
            outputs=result.outputs,
            trace=result,
            error=result.reason,
        )
        if result.status == "succeeded":
            self._run_extensions(connection, flow, result, row["event_id"], row["id"])

    def _record_event_failure(self, row: dict[str, Any], failure: RunResult) -> None:
        attempts = row["attempts"] + 1
        parked = attempts >= self.retry.attempts
        with db.write(self.engine) as connection:
            connection.execute(
                update(EVENTS)
                .where(EVENTS.c.id == row["id"])
                .values(
                    status="failed" if parked else "pending",
                    attempts=attempts,
                    next_attempt_at=utcnow() + self.retry.delay(attempts),
                    last_error=str(failure.error),
                )
            )
            _insert_run(connection, failure, event_id=row["id"], attempts=attempts)
        log.warning(
            "event failed event=%s type=%s attempt=%d parked=%s error=%s",
            row["stripe_event_id"],
            row["type"],
            attempts,
            parked,
            failure.error,
        )

    def _record_run_failure(self, row: dict[str, Any], failure: RunResult) -> None:
        attempts = row["attempts"] + 1
        parked = attempts >= self.retry.attempts
        with db.write(self.engine) as connection:
            connection.execute(
                update(RUNS)
                .where(RUNS.c.id == row["id"])
                .values(
                    status="failed" if parked else "pending",
                    attempts=attempts,
                    next_attempt_at=utcnow() + self.retry.delay(attempts),
                    trace=dumps([step.as_dict() for step in failure.trace]),
                    error=str(failure.error),
                    finished_at=utcnow() if parked else None,
                )
            )
        log.warning(
            "run failed flow=%s run=%s attempt=%d parked=%s error=%s",
            row["flow"],
            row["id"],
            attempts,
            parked,
            failure.error,
        )


def store_event(engine: Engine, event: dict[str, Any], payload: str) -> bool:
    """Store a verified event; False if an event with its id was stored before."""
    return store_events(engine, [(event, payload)])[0]


def store_events(
    engine: Engine, events: Sequence[tuple[dict[str, Any], str]]
) -> list[bool]:
    """Store verified events in one transaction: one commit (one fsync) for all.

    For each event, False if an event with its id was stored before (also
    earlier in `events`). Either every event is stored or, on an error, none.
    """
    stored = []
    with db.write(engine) as connection:
        statement = _insert_ignoring_duplicates(connection)
        for event, payload in events:
            values = _event_values(event, payload)
            inserted = connection.execute(statement, values).first()
            stored.append(inserted is not None)
    return stored


def _event_values(event: dict[str, Any], payload: str) -> dict[str, Any]:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data.get("object"), dict) else {}
    object_id = obj.get("id")
    created = event.get("created")
    now = utcnow()
    return {
        "stripe_event_id": str(event["id"]),
        "type": str(event["type"]),
        "api_version": str(event["api_version"]) if event.get("api_version") else None,
        "object_id": str(object_id) if object_id is not None else None,
        "stripe_created": created if isinstance(created, int) else 0,
        "livemode": bool(event.get("livemode", False)),
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "received_at": now,
    }


_EVENT_COLUMNS = (
    "stripe_event_id",
    "type",
    "api_version",
    "object_id",
    "stripe_created",
    "livemode",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "received_at",
)
_STORE_STATEMENTS: dict[str, Any] = {}


def _insert_ignoring_duplicates(connection: Connection) -> Any:
    """The insert of one event, built once per dialect; values bound per call."""
    dialect = connection.dialect.name
    statement = _STORE_STATEMENTS.get(dialect)
    if statement is None:
        builder = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            builder(EVENTS)
            .values({name: bindparam(name) for name in _EVENT_COLUMNS})
            .on_conflict_do_nothing(index_elements=["stripe_event_id"])
            .returning(EVENTS.c.id)
        )
        _STORE_STATEMENTS[dialect] = statement
    return statement


def _claim(connection: Connection, table: Any, most: int) -> list[dict[str, Any]]:
    """Up to `most` due rows of `table`, oldest first, locked until the commit."""
    query = (
        select(table)
        .where(table.c.status == "pending", table.c.next_attempt_at <= utcnow())
        .order_by(table.c.id)
        .limit(most)
        .with_for_update(skip_locked=True)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


# SQLite has one writer at a time: a batch only saves commits. On PostgreSQL,
# several workers run side by side, and a batch would hold its row locks (and
# the change log's lock) for longer, so each event keeps its own transaction.
SQLITE_BATCH = 16


def _default_batch(engine: Engine) -> int:
    return SQLITE_BATCH if engine.dialect.name == "sqlite" else 1


def _newer_version(connection: Connection, row: dict[str, Any]) -> str | None:
    """Why the event is older than one already applied to its object, or None."""
    object_id = row["object_id"]
    if object_id is None:
        return None
    # Make sure the row exists, then lock it: a concurrent worker handling
    # another event of this object waits here until this transaction ends.
    connection.execute(
        _version_insert(connection.dialect.name),
        {"object_id": object_id, "updated_at": utcnow()},
    )
    current = connection.execute(_VERSION_LOCK, {"key": object_id}).mappings().one()
    if row["type"] in FINAL_TYPES or current["stripe_created"] <= row["stripe_created"]:
        return None
    return _older_note(current, row)


def _apply_version(connection: Connection, row: dict[str, Any]) -> str | None:
    """Like `_newer_version`, and record the event as its object's newest.

    One upsert inserts the version row or moves it to this event, unless the
    row holds a newer event; only then is the row read, for the note. The
    caller's savepoint undoes the upsert when the event's flows fail. For
    SQLite, where the transaction holds the write lock: no row lock is needed.
    """
    object_id = row["object_id"]
    if object_id is None:
        return None
    applied = connection.execute(
        _VERSION_APPLY,
        {
            "object_id": object_id,
            "created": row["stripe_created"],
            "event": row["stripe_event_id"],
            "now": utcnow(),
        },
    ).first()
    if applied is not None or row["type"] in FINAL_TYPES:
        return None
    current = connection.execute(_VERSION_LOCK, {"key": object_id}).mappings().one()
    return _older_note(current, row)


def _older_note(current: Any, row: dict[str, Any]) -> str:
    object_id = row["object_id"]
    return (
        f"older than {current['stripe_event_id']} (created "
        f"{current['stripe_created']}), already applied to {object_id}; "
        f"this event was created {row['stripe_created']}"
    )


# The statements of the event path, built once: building a SQLAlchemy statement
# and its cache key costs more than running it on SQLite.
_VERSION_INSERTS: dict[str, Any] = {}
_VERSION_LOCK = (
    select(VERSIONS).where(VERSIONS.c.object_id == bindparam("key")).with_for_update()
)
_VERSION_UPDATE = (
    update(VERSIONS)
    .where(
        VERSIONS.c.object_id == bindparam("key"),
        VERSIONS.c.stripe_created <= bindparam("created"),
    )
    .values(
        stripe_created=bindparam("created"),
        stripe_event_id=bindparam("event"),
        updated_at=bindparam("now"),
    )
)
_VERSION_UPSERT = sqlite_insert(VERSIONS).values(
    object_id=bindparam("object_id"),
    stripe_created=bindparam("created"),
    stripe_event_id=bindparam("event"),
    updated_at=bindparam("now"),
)
_VERSION_APPLY = _VERSION_UPSERT.on_conflict_do_update(
    index_elements=["object_id"],
    set_={
        "stripe_created": _VERSION_UPSERT.excluded.stripe_created,
        "stripe_event_id": _VERSION_UPSERT.excluded.stripe_event_id,
        "updated_at": _VERSION_UPSERT.excluded.updated_at,
    },
    where=VERSIONS.c.stripe_created <= _VERSION_UPSERT.excluded.stripe_created,
).returning(VERSIONS.c.object_id)
_EVENT_FINISH = (
    update(EVENTS)
    .where(EVENTS.c.id == bindparam("key"))
    .values(
        status=bindparam("new_status"),
        note=bindparam("new_note"),
        processed_at=bindparam("now"),
        last_error=None,
        attempts=EVENTS.c.attempts + 1,
    )
)
_RUN_COLUMNS = (
    "flow",
    "event_id",
    "parent_run_id",
    "status",
    "attempts",
    "next_attempt_at",
    "trigger_outputs",
    "outputs",
    "trace",
    "error",
    "created_at",
    "finished_at",
)
_RUN_INSERT = (
    insert(RUNS)
    .values({name: bindparam(name) for name in _RUN_COLUMNS})
    .returning(RUNS.c.id)
)


def _version_insert(dialect: str) -> Any:
    statement = _VERSION_INSERTS.get(dialect)
    if statement is None:
        builder = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            builder(VERSIONS)
            .values(
                object_id=bindparam("object_id"),
                stripe_created=-1,
                updated_at=bindparam("updated_at"),
            )
            .on_conflict_do_nothing(index_elements=["object_id"])
        )
        _VERSION_INSERTS[dialect] = statement
    return statement


def _record_version(connection: Connection, row: dict[str, Any]) -> None:
    if row["object_id"] is None:
        return
    connection.execute(
        _VERSION_UPDATE,
        {
            "key": row["object_id"],
            "created": row["stripe_created"],
            "event": row["stripe_event_id"],
            "now": utcnow(),
        },
    )


def _run_key(connection: Connection, event_id: int | None) -> str | None:
    """A run's key: the id of the Stripe event it is for, also in retries."""
    if event_id is None:
        return None
    return connection.execute(
        select(EVENTS.c.stripe_event_id).where(EVENTS.c.id == event_id)
    ).scalar_one_or_none()


def _finish_event(
    connection: Connection, event_id: int, status: str, note: str | None
) -> None:
    connection.execute(
        _EVENT_FINISH,
        {"key": event_id, "new_status": status, "new_note": note, "now": utcnow()},
    )


def _insert_run(
    connection: Connection,
    result: RunResult,
    *,
    event_id: int | None,
    attempts: int,
    parent_run_id: int | None = None,
    trigger_outputs: Any = None,
) -> int:
    now = utcnow()
    values = {
        "flow": result.flow,
        "event_id": event_id,
        "parent_run_id": parent_run_id,
        "status": result.status,
        "attempts": attempts,
        "next_attempt_at": now,
        "trigger_outputs": dumps(trigger_outputs)
        if trigger_outputs is not None
        else None,
        "outputs": dumps(result.outputs) if result.outputs is not None else None,
        "trace": dumps([step.as_dict() for step in result.trace]),
        "changes": _changes(result),
        "error": str(result.error) if result.error else result.reason,
        "created_at": now,
        "finished_at": now,
    }
    return int(connection.execute(_RUN_INSERT, values).scalar_one())


def _queue_run(connection: Connection, flow: str, *, event_id: int) -> None:
    now = utcnow()
    connection.execute(
        insert(RUNS).values(
            flow=flow,
            event_id=event_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def _finish_run(
    connection: Connection,
    run_id: int,
    status: str,
    *,
    attempts: int | None = None,
    outputs: Any = None,
    trace: RunResult | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow()}
    if attempts is not None:
        values["attempts"] = attempts
    if outputs is not None:
        values["outputs"] = dumps(outputs)
    if trace is not None:
        values["trace"] = dumps([step.as_dict() for step in trace.trace])
        values["changes"] = _changes(trace)
    connection.execute(update(RUNS).where(RUNS.c.id == run_id).values(values))


def _changes(result: RunResult) -> str | None:
    """The rows a run wrote, as kept with its record; none when it rolled back."""
    if result.status == "failed":
        return None
    return dumps([change.as_dict() for change in result.changes])


class _RunFailed(Exception):
    """Unwinds the transaction of a run that failed, carrying its result."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(str(result.error))
        self.result = result


def _crash_result(flow: str, exc: Exception) -> RunResult:
    error = RunError(f"internal error: {type(exc).__name__}: {_first_line(exc)}")
    return RunResult(flow=flow, status="failed", error=error)


def _first_line(exc: Exception) -> str:
    # SQLAlchemy puts the statement and its parameters (event payloads, which
    # hold client secrets) after the first line; a run record keeps only this.
    if isinstance(exc, SQLAlchemyError):
        exc = getattr(exc, "orig", None) or exc
    lines = str(exc).splitlines()
    return lines[0] if lines else ""


def _missing_flow(name: str) -> RunResult:
    error = RunError(
        f"flow {name!r} is no longer loaded; restore its file or mark the run failed"
    )
    return RunResult(flow=name, status="failed", error=error)


def older_than_applied(connection: Connection, event: dict[str, Any]) -> str | None:
    """Why processing would skip `event` now (an older one), or None.

    For dry runs: it takes the same row lock as processing, so call it in a
    transaction that is rolled back or committed soon.
    """
    values = _event_values(event, "")
    if values["object_id"] is None:
        return None
    return _newer_version(connection, values)
