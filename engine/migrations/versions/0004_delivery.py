"""stripe_object_version: the newest event applied per Stripe object

Revision ID: 0004_delivery
Revises: 0002_domain
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_delivery"
down_revision = "0002_domain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_object_version",
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_created", sa.BigInteger(), nullable=False),
        sa.Column("stripe_event_id", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("object_id"),
    )


def downgrade() -> None:
    op.drop_table("stripe_object_version")
