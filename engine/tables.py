"""The tables actionflow owns.

Money is an integer number of minor units plus an ISO currency code; only the
order's price is a decimal, stored exactly (as NUMERIC on PostgreSQL and as
text on SQLite, whose NUMERIC would round-trip through a float).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Numeric, String, Text, types
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time, aware, in UTC: every timestamp column stores UTC."""
    return datetime.now(UTC)


class ExactDecimal(types.TypeDecorator[Decimal]):
    """A decimal that never passes through a float on any database."""

    impl = String(40)
    cache_ok = True

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal

    def load_dialect_impl(self, dialect: Dialect) -> types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(40))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"expected a Decimal, got {type(value).__name__}")
        if dialect.name == "postgresql":
            return value
        return format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value))


def _minor_units() -> Any:
    return Field(sa_column=Column(BigInteger, nullable=False))


class Order(SQLModel, table=True):
    """The default order table, used when no existing table is linked."""

    __tablename__ = "order"

    id: int | None = Field(default=None, primary_key=True)
    price: Decimal = Field(sa_column=Column(ExactDecimal(), nullable=False))
    currency: str = Field(max_length=3)
    user_id: str = Field(max_length=64, index=True)
    status: str = Field(default="pending", max_length=32)
    description: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="")
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Payment(SQLModel, table=True):
    """One attempt to charge an order once (one Stripe PaymentIntent)."""

    __tablename__ = "payment"
    __table_args__ = (
        Index("ux_payment_stripe_invoice_id", "stripe_invoice_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(index=True)
    amount: int = _minor_units()
    currency: str = Field(max_length=3)
    status: str = Field(default="pending", max_length=32)
    callback_processed: bool = Field(default=False)
    stripe_payment_intent_id: str | None = Field(
        default=None, max_length=255, unique=True
    )
    amount_received: int | None = Field(default=None, sa_column=Column(BigInteger))
    refunded_amount: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    failure_message: str | None = Field(default=None, sa_column=Column(Text))
    # Set on a payment of a subscription invoice: one payment per invoice.
    stripe_invoice_id: str | None = Field(default=None, max_length=255)
    recurring_payment_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RecurringPayment(SQLModel, table=True):
    """One Stripe subscription started for an order."""

    __tablename__ = "recurring_payment"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(index=True)
    user_id: str = Field(max_length=64, index=True)
    status: str = Field(default="incomplete", max_length=32)
    stripe_subscription_id: str | None = Field(
        default=None, max_length=255, unique=True
    )
    stripe_customer_id: str | None = Field(default=None, max_length=255)
    stripe_price_id: str | None = Field(default=None, max_length=255)
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = Field(default=False)
    ended_at: datetime | None = None
    callback_processed: bool = Field(default=False)
    # The `created` time of the newest Stripe event applied, so a late older
    # event cannot move the status back.
    last_event_at: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Refund(SQLModel, table=True):
    """Money returned on a payment; a payment may have many."""

    __tablename__ = "refund"

    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(index=True)
    amount: int = _minor_units()
    currency: str = Field(max_length=3)
    status: str = Field(default="pending", max_length=32)
    stripe_refund_id: str | None = Field(default=None, max_length=255, unique=True)
    reason: str | None = Field(default=None, max_length=255)
    failure_reason: str | None = Field(default=None, sa_column=Column(Text))
    callback_processed: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookEvent(SQLModel, table=True):
    """A Stripe event as received: the raw body, verified, and its processing state."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        Index("ix_webhook_event_status_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    stripe_event_id: str = Field(max_length=255, unique=True)
    type: str = Field(max_length=255, index=True)
    api_version: str | None = Field(default=None, max_length=64)
    object_id: str | None = Field(default=None, max_length=255)
    stripe_created: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    livemode: bool = Field(default=False)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=32)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    note: str | None = Field(default=None, sa_column=Column(Text))
    received_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None


class FlowRun(SQLModel, table=True):
    """One run of one flow: for an event, after another flow, or as a dry run."""

    __tablename__ = "flow_run"
    __table_args__ = (Index("ix_flow_run_status_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    flow: str = Field(max_length=255, index=True)
    event_id: int | None = Field(default=None, index=True)
    parent_run_id: int | None = Field(default=None)
    status: str = Field(default="pending", max_length=32)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    trigger_outputs: str | None = Field(default=None, sa_column=Column(Text))
    outputs: str | None = Field(default=None, sa_column=Column(Text))
    trace: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    # The rows the run wrote, before and after (JSON), for replays to compare.
    changes: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class InvoicePayment(SQLModel, table=True):
    """Which PaymentIntent paid an invoice, from Stripe's invoice_payment events.

    Since 2025 an invoice no longer names its PaymentIntent; this link lets a
    subscription's payment be found by its PaymentIntent (refunds), whichever
    of the invoice's events arrives first.
    """

    __tablename__ = "invoice_payment"

    id: int | None = Field(default=None, primary_key=True)
    stripe_invoice_id: str = Field(max_length=255, unique=True)
    stripe_payment_intent_id: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class StripeObjectVersion(SQLModel, table=True):
    """The Stripe `created` time of the newest event applied to each Stripe object."""

    __tablename__ = "stripe_object_version"

    object_id: str = Field(primary_key=True, max_length=255)
    stripe_created: int = Field(sa_column=Column(BigInteger, nullable=False))
    stripe_event_id: str | None = Field(default=None, max_length=255)
    updated_at: datetime = Field(default_factory=utcnow)


class DedupKey(SQLModel, table=True):
    """Keys seen by `dedup` steps; a key is only ever inserted once."""

    __tablename__ = "dedup_key"

    key: str = Field(primary_key=True, max_length=512)
    flow: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class Setting(SQLModel, table=True):
    """Values actionflow generates once and keeps, such as a webhook secret."""

    __tablename__ = "setting"

    name: str = Field(primary_key=True, max_length=128)
    value: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class StripeCustomer(SQLModel, table=True):
    """The Stripe customer of a user, created once and reused by subscriptions."""

    __tablename__ = "stripe_customer"

    user_id: str = Field(primary_key=True, max_length=64)
    stripe_customer_id: str = Field(max_length=255, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class UserFeature(SQLModel, table=True):
    """A feature switched on or off for a user, e.g. by a subscription extension."""

    __tablename__ = "user_feature"
    __table_args__ = (
        Index("ux_user_feature_user_feature", "user_id", "feature", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(max_length=64)
    feature: str = Field(max_length=128)
    active: bool = Field(default=False)
    source: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# The tables flows may read and write with `table.*` steps, by the name flows use.
FLOW_TABLES: dict[str, type[SQLModel]] = {
    "invoice_payment": InvoicePayment,
    "order": Order,
    "payment": Payment,
    "recurring_payment": RecurringPayment,
    "refund": Refund,
    "user_feature": UserFeature,
}


class RowChange(SQLModel, table=True):
    """Every committed change to a payment table, in commit order, for subscribers.

    Subscribers resume from the id they saw last (SSE's Last-Event-ID). Owner
    and order are kept with each change so a subscription filters without joins.
    """

    __tablename__ = "row_change"
    __table_args__ = (Index("ix_row_change_table_id", "table_name", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    table_name: str = Field(max_length=64)
    row_id: int
    order_id: int | None = Field(default=None, index=True)
    user_id: str | None = Field(default=None, max_length=64)
    data: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
