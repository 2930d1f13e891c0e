"""row_change: the log of committed changes that realtime subscribers read.

Revision ID: 0005_realtime
Revises: 0004_delivery
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_realtime"
down_revision = "0004_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "row_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_row_change_table_id", "row_change", ["table_name", "id"])
    op.create_index("ix_row_change_order_id", "row_change", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_row_change_order_id", table_name="row_change")
    op.drop_index("ix_row_change_table_id", table_name="row_change")
    op.drop_table("row_change")
