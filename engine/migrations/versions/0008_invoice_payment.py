"""invoice_payment: the PaymentIntent that paid each subscription invoice.

Revision ID: 0008_invoice_payment
Revises: 0007_run_changes
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_invoice_payment"
down_revision = "0007_run_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_invoice_id"),
    )


def downgrade() -> None:
    op.drop_table("invoice_payment")
