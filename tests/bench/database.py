"""The benchmark's databases: create, pre-fill, add the orders to pay, watch, check.

Every run gets a database of its own: a copy of a SQLite template file, or a
fresh PostgreSQL schema (selected with the search_path option, as the test
suite does). The schema always comes from actionflow's migrations, for the
product and the baseline alike.

Pre-filling (`stored`) writes already-processed history with INSERT ... SELECT
over a generated series, in the database itself: one order, payment, event and
its two flow runs are first produced by the real engine, then copied `stored - 1`
times with only the unique columns changed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import Processor, store_event
from actionflow.engine.tables import Order, Payment, utcnow
from tests.stripe_events import event, stripe_object

ORDERS = Order.__table__
PAYMENTS = Payment.__table__
CURRENCIES = ("usd", "eur", "gbp")
INTENT = stripe_object("payment_intent")

# The columns a copied row must not share with its template, as SQL over `i`.
VARYING = {
    "order": {"id": "i"},
    "payment": {
        "id": "i",
        "order_id": "i",
        "stripe_payment_intent_id": "'pi_stored_' || i",
    },
    "webhook_event": {
        "id": "i",
        "stripe_event_id": "'evt_stored_' || i",
        "object_id": "'pi_stored_' || i",
    },
}

# The flows the benchmark runs: the system flows plus, in FLOW_SETS[name], the
# example extensions that are loaded. "payment" is the path being measured:
# StripePaymentCallback and its extension MarkOrderPaid; "examples" loads every
# example flow, as a new project does (two more extensions run per payment: a
# receipt email that stops without an address, and a receipt log line).
FLOW_SETS = {
    "payment": ["MarkOrderPaid.yaml"],
    "examples": None,  # the whole folder
}


@dataclass(frozen=True)
class Payable:
    """An order and its pending payment, waiting for its succeeded event."""

    order_id: int
    intent: str
    amount: int
    currency: str


def intent_event(payable: Payable, event_id: str) -> dict[str, Any]:
    """The payment_intent.succeeded event Stripe would send for `payable`."""
    intent = dict(INTENT)  # shallow: the nested values are never changed
    intent.update(
        id=payable.intent,
        amount=payable.amount,
        amount_received=payable.amount,
        currency=payable.currency,
        status="succeeded",
    )
    return event("payment_intent.succeeded", intent, event_id=event_id)


class Databases:
    """Makes a new database per run, from a template per pre-fill size."""

    def __init__(
        self, workdir: Path, postgres_url: str | None, flows: Path = EXAMPLE_FLOWS
    ) -> None:
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.flows = flows
        self.templates: dict[int, Path] = {}
        self.schemas: list[str] = []

    def create(self, name: str, stored: int) -> str:
        """The URL of a new migrated database holding `stored` processed events."""
        if self.postgres_url:
            url = self._new_schema()
            prefill(url, stored, self.flows)
            return url
        if stored not in self.templates:
            template = self.workdir / f"template-{stored}.db"
            prefill(f"sqlite:///{template}", stored, self.flows)
            _checkpoint(template)
            self.templates[stored] = template
        target = self.workdir / f"{name}.db"
        shutil.copyfile(self.templates[stored], target)
        return f"sqlite:///{target}"

    def drop(self, url: str) -> None:
        """Remove a run's database once its figures are taken."""
        if not url.startswith("sqlite"):
            return
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        """Drop the PostgreSQL schemas this benchmark made."""
        if not self.schemas or not self.postgres_url:
            return
        admin = create_engine(self.postgres_url)
        with admin.begin() as connection:
            for schema in self.schemas:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    def _new_schema(self) -> str:
        assert self.postgres_url is not None
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.postgres_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        self.schemas.append(schema)
        separator = "&" if "?" in self.postgres_url else "?"
        return f"{self.postgres_url}{separator}options=-csearch_path%3D{schema}"


def flow_folder(workdir: Path, name: str) -> Path:
    """A folder with the example flows of the flow set `name`."""
    chosen = FLOW_SETS[name]
    if chosen is None:
        return EXAMPLE_FLOWS
    folder = workdir / f"flows-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for file in chosen:
        shutil.copyfile(EXAMPLE_FLOWS / file, folder / file)
    return folder


def prefill(url: str, stored: int, flows: Path = EXAMPLE_FLOWS) -> None:
    """Migrate the database at `url` and fill it with `stored` processed events."""
    engine = db.create_db_engine(url)
    try:
        db.prepare(engine)
        if stored > 0:
            runs = _process_one_real_event(engine, flows)
            _copy_history(engine, stored, runs)
    finally:
        engine.dispose()


def _process_one_real_event(engine: Engine, flows: Path) -> list[tuple[int, Any]]:
    """Process one event with the real engine; its runs (id, parent run id)."""
    payable = add_payables(engine, 1, prefix="pi_stored_")[0]
    body = intent_event(payable, "evt_stored_1")
    store_event(engine, body, json.dumps(body))
    processor = Processor(engine, load_project([flows]))
    if not processor.process_next_event():
        raise RuntimeError("the engine did not process the template event")
    with db.read(engine) as connection:
        runs = connection.execute(
            text("SELECT id, parent_run_id, event_id FROM flow_run ORDER BY id")
        ).all()
        status = connection.execute(
            text("SELECT status FROM webhook_event WHERE id = 1")
        ).scalar_one()
    ids = [run[0] for run in runs]
    if status != "processed" or ids != list(range(1, len(runs) + 1)) or not runs:
        raise RuntimeError(f"unexpected template event {status}, runs {runs}")
    return [(run_id, parent) for run_id, parent, _ in runs]


def _copy_history(engine: Engine, stored: int, runs: list[tuple[int, Any]]) -> None:
    # The template event has k runs, ids 1..k; event i gets ids k(i-1)+1..k*i.
    k = len(runs)
    with db.write(engine) as connection:
        for table, varying in VARYING.items():
            _copy_rows(connection, table, "id = 1", varying, stored)
        _copy_rows(
            connection,
            "stripe_object_version",
            "object_id = 'pi_stored_1'",
            {
                "object_id": "'pi_stored_' || i",
                "stripe_event_id": "'evt_stored_' || i",
            },
            stored,
        )
        changes = connection.execute(
            text("SELECT id FROM row_change ORDER BY id")
        ).scalars()
        change_ids = list(changes)
        for change_id in change_ids:
            varying = {
                "id": f"{len(change_ids)} * (i - 1) + {change_id}",
                "row_id": "i",
                "order_id": "i",
            }
            _copy_rows(connection, "row_change", f"id = {change_id}", varying, stored)
        for run_id, parent in runs:
            varying = {"id": f"{k} * (i - 1) + {run_id}", "event_id": "i"}
            if parent is not None:
                varying["parent_run_id"] = f"{k} * (i - 1) + {parent}"
            _copy_rows(connection, "flow_run", f"id = {run_id}", varying, stored)
        if engine.dialect.name == "postgresql":
            tables = ("order", "payment", "webhook_event", "flow_run", "row_change")
            for table in tables:
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                        f'(SELECT max(id) FROM "{table}"))'
                    )
                )


def _copy_rows(
    connection: Any, table: str, where: str, varying: dict[str, str], stored: int
) -> None:
    sample = (
        connection.execute(text(f'SELECT * FROM "{table}" WHERE {where}'))
        .mappings()
        .one()
    )
    columns = list(sample.keys())
    values = [varying.get(name, f":v_{name}") for name in columns]
    params = {f"v_{name}": sample[name] for name in columns if name not in varying}
    params.update(first=2, last=stored)
    names = ", ".join(f'"{name}"' for name in columns)
    select_list = ", ".join(values)
    if connection.dialect.name == "postgresql":
        statement = (
            f'INSERT INTO "{table}" ({names}) SELECT {select_list} '
            "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) "
            "AS seq(i)"
        )
    else:
        statement = (
            "WITH RECURSIVE seq(i) AS (SELECT :first UNION ALL "
            "SELECT i + 1 FROM seq WHERE i < :last) "
            f'INSERT INTO "{table}" ({names}) SELECT {select_list} FROM seq'
        )
    connection.execute(text(statement), params)


def _checkpoint(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def add_payables(engine: Engine, count: int, prefix: str) -> list[Payable]:
    """Insert `count` pending orders, each with a pending payment of its own."""
    with db.read(engine) as connection:
        start = connection.execute(text('SELECT max(id) FROM "order"')).scalar() or 0
    now = utcnow()
    payables = [
        Payable(
            order_id=start + n,
            intent=f"{prefix}{start + n}",
            amount=1000 + (n * 37) % 9000,
            currency=CURRENCIES[n % len(CURRENCIES)],
        )
        for n in range(1, count + 1)
    ]
    orders = [
        {
            "id": p.order_id,
            "price": Decimal(p.amount).scaleb(-2),
            "currency": p.currency,
            "user_id": f"user{p.order_id % 1000}",
            "status": "pending",
            "description": "",
            "created_at": now,
            "updated_at": now,
        }
        for p in payables
    ]
    payments = [
        {
            "order_id": p.order_id,
            "amount": p.amount,
            "currency": p.currency,
            "status": "pending",
            "callback_processed": False,
            "stripe_payment_intent_id": p.intent,
            "refunded_amount": 0,
            "created_at": now,
            "updated_at": now,
        }
        for p in payables
    ]
    with db.write(engine) as connection:
        connection.execute(insert(ORDERS), orders)
        connection.execute(insert(PAYMENTS), payments)
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('\"order\"', 'id'), "
                    '(SELECT max(id) FROM "order"))'
                )
            )
    return payables


class Watcher:
    """Counts paid orders among a run's own, cheaply, while the servers work."""

    def __init__(self, url: str, first_order: int, last_order: int) -> None:
        self.engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://")
        )
        self.first, self.last = first_order, last_order

    def paid(self) -> int:
        """How many of the run's orders are paid now."""
        query = text(
            'SELECT count(*) FROM "order" WHERE id BETWEEN :first AND :last '
            "AND status = 'paid'"
        )
        with self.engine.connect() as connection:
            count = connection.execute(
                query, {"first": self.first, "last": self.last}
            ).scalar_one()
        return int(count)

    def pending_events(self) -> int:
        """Stored events not yet processed (the worker's backlog)."""
        query = text("SELECT count(*) FROM webhook_event WHERE status = 'pending'")
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def problems(self, payables: list[Payable], event_prefix: str) -> list[str]:
        """What is wrong with the run's end state; empty when every order is paid."""
        found = []
        with self.engine.connect() as connection:
            payments = {
                row.stripe_payment_intent_id: row
                for row in connection.execute(
                    text(
                        "SELECT stripe_payment_intent_id, status, callback_processed, "
                        "amount, amount_received FROM payment "
                        "WHERE order_id BETWEEN :first AND :last"
                    ),
                    {"first": self.first, "last": self.last},
                )
            }
            processed = connection.execute(
                text(
                    "SELECT count(*) FROM webhook_event WHERE status = 'processed' "
                    "AND stripe_event_id LIKE :prefix"
                ),
                {"prefix": f"{event_prefix}%"},
            ).scalar_one()
        for payable in payables:
            row = payments.get(payable.intent)
            if row is None or (row.status, bool(row.callback_processed)) != (
                "succeeded",
                True,
            ):
                found.append(f"payment {payable.intent} is {row and row.status}")
            elif row.amount_received != payable.amount:
                found.append(f"payment {payable.intent} received {row.amount_received}")
        if processed != len(payables):
            found.append(f"{processed} of {len(payables)} events are processed")
        if self.paid() != len(payables):
            found.append(f"{self.paid()} of {len(payables)} orders are paid")
        return found

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()
