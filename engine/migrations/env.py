"""Alembic's entry point: runs migrations on the connection actionflow hands it."""

from alembic import context
from sqlmodel import SQLModel

from actionflow.engine import tables  # noqa: F401  (registers the tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
