"""The outbox: notifications written with a run, sent after it commits, at most once.

A notify step never talks to the outside world. It adds a row here, inside the
run's transaction, under a unique idempotency key (the run's key, the flow, the
step); a retried or replayed run finds the key taken and adds nothing. So a run
that rolls back sends nothing, and one that commits sends once.

The sender then works through due rows, one at a time:

    pending --claim (committed)--> sending --delivered--> sent
                                       |---refused/unreachable--> pending (backoff)
                                       |---out of attempts------> failed
                                       '---found after a crash--> unknown

A row is marked `sending` and committed before the mail server or the receiver
is contacted. If the process dies after that, nobody knows whether the message
went out; the row is never sent again (at most once) but reported as `unknown`,
with a log line, for an operator to check.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, Engine, Index, Text, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, SQLModel

from . import db
from .errors import ActionflowError
from .notifyconfig import NotifySettings
from .tables import utcnow

log = logging.getLogger("actionflow.notify")

MAX_ERROR_CHARS = 500
WAITING_LOG_SECONDS = 300.0
STALE_CHECK_SECONDS = 30.0


class OutboxMessage(SQLModel, table=True):
    """A mail or webhook call a run asked for, and how sending it went."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=512, unique=True)
    kind: str = Field(max_length=16)  # email or webhook
    flow: str = Field(max_length=255)
    step: str = Field(max_length=255)
    destination: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    claimed_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


class DeliveryError(ActionflowError):
    """Sending failed; `permanent` ones are not retried (a refused destination)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Queued:
    """What adding a row to the outbox did."""

    id: int
    status: str
    duplicate: bool


def enqueue(
    connection: Connection,
    *,
    key: str,
    kind: str,
    flow: str,
    step: str,
    destination: str,
    payload: dict[str, Any],
) -> Queued:
    """Add a message under `key`, in the caller's transaction; once per key."""
    now = utcnow()
    builder = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = (
        builder(OUTBOX)
        .values(
            key=key,
            kind=kind,
            flow=flow,
            step=step,
            destination=destination,
            payload=json.dumps(payload, sort_keys=True),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(OUTBOX.c.id)
    )
    inserted = connection.execute(statement).scalar_one_or_none()
    if inserted is not None:
        return Queued(int(inserted), "pending", duplicate=False)
    row = connection.execute(
        select(OUTBOX.c.id, OUTBOX.c.status).where(OUTBOX.c.key == key)
    ).one()
    return Queued(int(row.id), str(row.status), duplicate=True)


Deliver = Callable[[dict[str, Any]], None]


@dataclass
class Sender:
    """Sends due outbox rows through the transports configured for their kind."""

    engine: Engine
    settings: NotifySettings
    transports: dict[str, Deliver]
    clock: Callable[[], float] = time.monotonic
    _waiting_logged: dict[str, float] = field(default_factory=dict)
    _stale_checked: float | None = None

    def send_next(self) -> bool:
        """Claim, send and record one due message; False when none is due."""
        self._report_stale()
        self._report_waiting()
        row = self.claim()
        if row is None:
            return False
        self.deliver(row)
        return True

    def claim(self) -> dict[str, Any] | None:
        """Mark one due message `sending`, committed, and return it."""
        with db.write(self.engine) as connection:
            query = (
                select(OUTBOX)
                .where(
                    OUTBOX.c.status == "pending",
                    OUTBOX.c.next_attempt_at <= utcnow(),
                    OUTBOX.c.kind.in_(sorted(self.transports)),
                )
                .order_by(OUTBOX.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            found = connection.execute(query).mappings().first()
            if found is None:
                return None
            row = dict(found)
            row["attempts"] += 1
            connection.execute(
                sql_update(OUTBOX)
                .where(OUTBOX.c.id == row["id"])
                .values(status="sending", attempts=row["attempts"], claimed_at=utcnow())
            )
        return row

    def deliver(self, row: dict[str, Any]) -> None:
        """Send a claimed message and record the outcome."""
        try:
            self.transports[row["kind"]](row)
        except DeliveryError as exc:
            self._failed(row, exc.message, permanent=exc.permanent)
            return
        except Exception as exc:  # a bug must not leave the row claimed forever
            log.exception("outbox delivery crashed id=%s", row["id"])
            self._failed(row, f"internal error: {type(exc).__name__}", permanent=False)
            return
        self._finish(row["id"], status="sent", sent_at=utcnow(), last_error=None)
        log.info(
            "notification sent id=%s kind=%s flow=%s step=%s attempt=%d",
            row["id"],
            row["kind"],
            row["flow"],
            row["step"],
            row["attempts"],
        )

    def _failed(self, row: dict[str, Any], error: str, *, permanent: bool) -> None:
        error = error[:MAX_ERROR_CHARS]
        parked = permanent or row["attempts"] >= self.settings.retry.attempts
        delay = self.settings.retry.delay(row["attempts"])
        self._finish(
            row["id"],
            status="failed" if parked else "pending",
            next_attempt_at=utcnow() + delay,
            last_error=error,
        )
        log.warning(
            "notification failed id=%s kind=%s flow=%s step=%s attempt=%d "
            "parked=%s error=%s",
            row["id"],
            row["kind"],
            row["flow"],
            row["step"],
            row["attempts"],
            parked,
            error,
        )

    def _finish(self, row_id: int, **values: Any) -> None:
        # Also from `unknown`: a send that outlived the stale limit did finish.
        with db.write(self.engine) as connection:
            connection.execute(
                sql_update(OUTBOX)
                .where(
                    OUTBOX.c.id == row_id,
                    or_(OUTBOX.c.status == "sending", OUTBOX.c.status == "unknown"),
                )
                .values(**values)
            )

    def _report_stale(self) -> None:
        now = self.clock()
        if self._stale_checked is not None:
            if now - self._stale_checked < STALE_CHECK_SECONDS:
                return
        self._stale_checked = now
        limit = utcnow() - timedelta(seconds=self.settings.stale_sending_seconds)
        with db.write(self.engine) as connection:
            stale = connection.execute(
                sql_update(OUTBOX)
                .where(OUTBOX.c.status == "sending", OUTBOX.c.claimed_at <= limit)
                .values(
                    status="unknown",
                    last_error=(
                        "the process stopped while sending; the message may or may "
                        "not have been delivered, and is not sent again"
                    ),
                )
                .returning(OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.flow, OUTBOX.c.step)
            ).all()
        for row in stale:
            log.warning(
                "notification outcome unknown id=%s kind=%s flow=%s step=%s "
                "reason=interrupted while sending; not resent, check the recipient",
                row.id,
                row.kind,
                row.flow,
                row.step,
            )

    def _report_waiting(self) -> None:
        """Say, now and then, that messages wait for a transport nobody set up."""
        for kind, reason in (("email", "smtp is not configured"),):
            if kind in self.transports:
                continue
            last = self._waiting_logged.get(kind)
            if last is not None and self.clock() - last < WAITING_LOG_SECONDS:
                continue
            with db.read(self.engine) as connection:
                waiting = connection.execute(
                    select(func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.kind == kind, OUTBOX.c.status == "pending")
                ).scalar_one()
            if waiting:
                self._waiting_logged[kind] = self.clock()
                log.warning(
                    "notifications waiting kind=%s count=%d reason=%s; "
                    "set smtp.host in actionflow.yaml (or ACTIONFLOW_SMTP_HOST)",
                    kind,
                    waiting,
                    reason,
                )
