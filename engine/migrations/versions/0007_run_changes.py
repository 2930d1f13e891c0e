"""flow_run.changes: the rows each run wrote, so a replay can compare its own.

Revision ID: 0007_run_changes
Revises: 0006_notify
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_run_changes"
down_revision = "0006_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("changes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("changes")
