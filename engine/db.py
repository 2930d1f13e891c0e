"""Database connections, transactions and the schema version.

SQLite is the embedded default; PostgreSQL (psycopg) serves several processes.
On SQLite every write transaction starts with BEGIN IMMEDIATE, so two writers
queue on the lock instead of failing half-way through with "database is locked".
Within one process, writers also queue in arrival order on a lock of the
engine's before they begin: SQLite's own wait for its lock is a series of
sleeps, which leaves the lock idle between them and lets one busy writer (the
worker) take it again and again ahead of the others (the webhook).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, OperationalError

from .errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def create_db_engine(url: str) -> Engine:
    """An engine for `url`, with the settings actionflow relies on."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        if url.startswith("sqlite"):
            _create_private_file(url)
            engine = create_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(engine)
            _plain_savepoints(engine)
            _WRITERS[engine] = _Turns()
            return engine
        if url.startswith("postgresql+psycopg"):
            return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    except (ArgumentError, ValueError) as exc:
        # The message may quote the URL, password and all: say only what is wrong.
        raise ConfigError(
            f"the database URL {redact_url(url)!r} is not valid "
            f"({type(exc).__name__}); check ACTIONFLOW_DATABASE_URL"
        ) from None
    raise ConfigError(
        f"unsupported database URL scheme in {redact_url(url)!r}; "
        "use sqlite:///FILE or postgresql://USER@HOST/DB"
    )


def _create_private_file(url: str) -> None:
    """Create a new SQLite file readable by its owner only: it holds secrets."""
    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        folder = os.path.dirname(os.path.abspath(path))
        hint = (
            f"create the folder {folder} first"
            if not os.path.isdir(folder)
            else "check the file's permissions"
        )
        raise ConfigError(
            f"cannot create the SQLite database {path}: {exc.strerror}; {hint}, "
            "or point ACTIONFLOW_DATABASE_URL elsewhere"
        ) from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the webhook is acknowledged.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _plain_savepoints(engine: Engine) -> None:
    """Send SAVEPOINT, RELEASE and ROLLBACK TO as plain SQL to the driver.

    SQLAlchemy names each savepoint anew (sa_savepoint_1, _2, ...), so its
    statement cache never holds them and every savepoint was compiled again;
    each event of a batch takes two. The names are SQLAlchemy's own.
    """
    dialect = engine.dialect

    def savepoint(connection: Connection, name: str) -> None:
        connection.exec_driver_sql(f'SAVEPOINT "{name}"')

    def rollback_to(connection: Connection, name: str) -> None:
        connection.exec_driver_sql(f'ROLLBACK TO SAVEPOINT "{name}"')

    def release(connection: Connection, name: str) -> None:
        connection.exec_driver_sql(f'RELEASE SAVEPOINT "{name}"')

    dialect.do_savepoint = savepoint  # type: ignore[method-assign]
    dialect.do_rollback_to_savepoint = rollback_to  # type: ignore[method-assign]
    dialect.do_release_savepoint = release  # type: ignore[method-assign]


# While `rolled_back` runs, the engine and the one connection that every
# write() and read() on that engine in this context uses instead of its own.
_joined: ContextVar[tuple[Engine, Connection] | None] = ContextVar(
    "actionflow_joined", default=None
)


class _Turns:
    """A lock granted in the order it was asked for (a ticket lock)."""

    # As long as SQLite's busy timeout: past it, go on and let SQLite decide.
    PATIENCE_SECONDS = 30.0

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._issued = 0
        self._serving = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._changed:
            ticket = self._issued
            self._issued += 1
            self._changed.wait_for(
                lambda: self._serving >= ticket, self.PATIENCE_SECONDS
            )
        try:
            yield
        finally:
            with self._changed:
                self._serving = max(self._serving, ticket + 1)
                self._changed.notify_all()


_WRITERS: weakref.WeakKeyDictionary[Engine, _Turns] = weakref.WeakKeyDictionary()


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on success, rolled back on error."""
    joined = _joined.get()
    if joined is not None and joined[0] is engine:
        yield from _savepoint(joined[1])
        return
    turns = _WRITERS.get(engine)
    with turns.turn() if turns is not None else contextlib.nullcontext():
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection = connection.execution_options(sqlite_begin="IMMEDIATE")
            with connection.begin():
                yield connection


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads."""
    joined = _joined.get()
    if joined is not None and joined[0] is engine:
        yield from _savepoint(joined[1])
        return
    with engine.connect() as connection, connection.begin():
        yield connection


@contextmanager
def rolled_back(engine: Engine) -> Iterator[Connection]:
    """One transaction, always rolled back, that code run inside it cannot leave.

    Inside, every write() and read() on `engine` (in this thread) is a
    savepoint on this transaction's connection instead of a transaction of its
    own: code that commits several transactions runs unchanged, sees its own
    writes, and leaves nothing behind. Dry runs of the actions use it.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection = connection.execution_options(sqlite_begin="IMMEDIATE")
        transaction = connection.begin()
        token = _joined.set((engine, connection))
        try:
            yield connection
        finally:
            _joined.reset(token)
            transaction.rollback()


def _savepoint(connection: Connection) -> Iterator[Connection]:
    """What write() and read() give inside rolled_back: a savepoint."""
    with connection.begin_nested():
        yield connection


def redact_url(url: str) -> str:
    """`url` with any password replaced, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this version of actionflow knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None  # the package always ships at least one revision
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at; None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database schema to the newest revision."""
    try:
        with _schema_lock(engine) as connection:
            command.upgrade(_alembic_config(connection), "head")
    except OperationalError as exc:
        raise _unusable(engine, exc) from None


def prepare(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one that is out of date.

    Several processes may start at once on a new database: the first to take
    the schema lock creates the tables, the others then find them current.
    """
    try:
        revision = current_revision(engine)
        if revision == head_revision():
            return
        with _schema_lock(engine) as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            if revision == head_revision():
                return
            if revision is None and not _has_actionflow_tables(connection):
                command.upgrade(_alembic_config(connection), "head")
                return
    except OperationalError as exc:
        raise _unusable(engine, exc) from None
    raise ConfigError(
        f"the database schema is at revision {revision or 'none'}, this version of "
        f"actionflow needs {head_revision()}; run `actionflow db upgrade` first"
    )


def _unusable(engine: Engine, exc: OperationalError) -> ConfigError:
    """The error for a database that cannot be reached or opened, password hidden."""
    where = engine.url.render_as_string(hide_password=True)
    detail = str(exc.orig or exc).splitlines()[0]
    return ConfigError(
        f"cannot use the database at {where}: {detail}; "
        "check ACTIONFLOW_DATABASE_URL and that the database is running"
    )


_SCHEMA_LOCK = 0x6166_7363  # "afsc": one advisory lock for schema changes


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A write transaction that no other process changing the schema runs beside."""
    with write(engine) as connection:
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": _SCHEMA_LOCK})
        yield connection


def _has_actionflow_tables(connection: Connection) -> bool:
    names = set(inspect(connection).get_table_names())
    return bool(names & {"payment", "webhook_event", "flow_run"})
