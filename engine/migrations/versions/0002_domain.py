"""the payment domain: invoice payments, customers, feature flags

Revision ID: 0002_domain
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_domain"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_customer",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        sa.UniqueConstraint("stripe_customer_id"),
    )
    op.create_table(
        "user_feature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("feature", sa.String(length=128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user_feature", schema=None) as batch_op:
        batch_op.create_index(
            "ux_user_feature_user_feature", ["user_id", "feature"], unique=True
        )

    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("recurring_payment_id", sa.Integer(), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_payment_recurring_payment_id"),
            ["recurring_payment_id"],
            unique=False,
        )
        batch_op.create_index(
            "ux_payment_stripe_invoice_id", ["stripe_invoice_id"], unique=True
        )

    with op.batch_alter_table("recurring_payment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_event_at", sa.BigInteger(), server_default="0", nullable=False
            )
        )

    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.drop_column("failure_reason")

    with op.batch_alter_table("recurring_payment", schema=None) as batch_op:
        batch_op.drop_column("last_event_at")

    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index("ux_payment_stripe_invoice_id")
        batch_op.drop_index(batch_op.f("ix_payment_recurring_payment_id"))
        batch_op.drop_column("recurring_payment_id")
        batch_op.drop_column("stripe_invoice_id")

    with op.batch_alter_table("user_feature", schema=None) as batch_op:
        batch_op.drop_index("ux_user_feature_user_feature")

    op.drop_table("user_feature")
    op.drop_table("stripe_customer")
