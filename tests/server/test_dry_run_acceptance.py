"""Acceptance: every system flow and every payment action, dry-run end to end.

Each dry run goes through the CLI (`actionflow dry-run ... --fixtures FILE
--json`) against a database holding the rows it needs, with everything a real
run would talk to running on loopback and configured:

- Stripe: a FakeStripe is STRIPE_API_BASE, with a test secret key;
- mail: an aiosmtpd server is the config's `smtp` host;
- flows: the config's `flows` is the example extensions, so the path of an
  event reaches EmailReceipt, EmailRefundNotice and the others.

The plan is compared with the one written out below, with only the volatile
values masked: the time stamps of rows and how long each step took. Around every
dry run: the database is as it was (the SQLite file and its WAL byte for
byte, once every connection is closed; on PostgreSQL every row of every
table), the FakeStripe received no request and the SMTP server no mail, nor
even a connection.

System flows make no Stripe call. The CLI accepts a fixtures file for them
when it names no step (an empty one is given to each), and refuses one that
names a step of the flow, since that step makes no Stripe call: both are shown
here. A refused dry run leaves everything untouched too.

On PostgreSQL a rolled-back insert still advances its table's id sequence (no
transaction can give a sequence value back); rows are compared, sequences not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, insert

from actionflow.engine import db
from actionflow.engine.flow import EXAMPLE_FLOWS
from actionflow.server.cli import main
from actionflow.server.config import EXAMPLE_TEMPLATES
from tests.localstripe import SECRET_KEY
from tests.notify.helpers import SHOP, MailCatcher, SmtpServer, start_smtp
from tests.server.test_dry_run_stripe import (
    INSTALLATION,
    INTENT,
    PAID,
    PAYMENTS,
    RECURRING,
    REFUND,
    SUBSCRIBED,
    SUBSCRIPTION,
    T0,
    TIME,
    _installed,
    _order,
    _paid_payment,
    _state,
    _subscription,
)
from tests.stripe_events import event, stripe_object
from tests.stripe_fake import FakeStripe

PI = "pi_1PgafyB7WZ01zgkWSjxsAJo3"  # Stripe's example PaymentIntent
SUB = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"  # Stripe's example subscription
CUSTOMER = "cus_QXg1o8vcGmoR32"
CREATED = 1767312000  # 2026-01-02: the events' time, after SUBSCRIBED's last event
BUYER = "buyer@example.com"


class SmtpWatcher(MailCatcher):
    """A MailCatcher that also notes every SMTP session opened (EHLO or HELO)."""

    def __init__(self) -> None:
        super().__init__()
        self.greetings: list[str] = []

    async def handle_EHLO(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.greetings.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_HELO(
        self, server: Any, session: Any, envelope: Any, hostname: str
    ) -> str:
        self.greetings.append(hostname)
        session.host_name = hostname
        return "250 127.0.0.1"


@dataclass
class Outside:
    """Everything outside the process a dry run could reach, on loopback."""

    stripe: FakeStripe
    smtp: SmtpServer
    watcher: SmtpWatcher  # the SMTP server's handler
    config: Path

    def untouched(self) -> None:
        assert self.stripe.seen == [], "the dry run sent requests to Stripe"
        assert self.watcher.mails == [], "the dry run sent mail"
        assert self.watcher.greetings == [], "the dry run opened an SMTP session"


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Outside]:
    watcher = SmtpWatcher()
    smtp = start_smtp(watcher)
    config = tmp_path / "actionflow.yaml"
    config.write_text(
        f"flows: [{EXAMPLE_FLOWS}]\n"
        f"templates: {EXAMPLE_TEMPLATES}\n"
        "smtp:\n"
        "  host: 127.0.0.1\n"
        f"  port: {smtp.port}\n"
        "  tls: none\n"
        f"  from: {SHOP}\n"
    )
    try:
        with FakeStripe(SECRET_KEY) as stripe:
            yield Outside(stripe, smtp, watcher, config)
    finally:
        smtp.controller.stop()


def dry_run(
    database_url: str, engine: Engine, outside: Outside, *arguments: str
) -> tuple[Result, dict[str, Any]]:
    """`actionflow dry-run ARGUMENTS --json`, checked to leave everything be.

    The plan is {} when the dry run was refused before it ran.
    """
    before = _state(database_url, engine)
    result = CliRunner().invoke(
        main,
        ["dry-run", *arguments, "--json", "--config", str(outside.config)],
        env={
            "ACTIONFLOW_DATABASE_URL": database_url,
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_API_BASE": outside.stripe.url,
        },
    )
    assert _state(database_url, engine) == before, "the dry run left a change"
    outside.untouched()
    assert SECRET_KEY not in result.output
    plan = json.loads(result.stdout) if result.stdout.startswith("{") else {}
    return result, plan


def _file(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


# Rows the events need ---------------------------------------------------------


def _payment(engine: Engine, **values: Any) -> None:
    row = {key: value for key, value in PAID.items() if key != "id"}
    row.update(created_at=T0, updated_at=T0, stripe_payment_intent_id=PI)
    row.update(values)
    with db.write(engine) as connection:
        connection.execute(insert(PAYMENTS).values(row))


def _recurring(engine: Engine) -> None:
    row = {key: value for key, value in SUBSCRIBED.items() if key != "id"}
    row.update(
        stripe_subscription_id=SUB,
        stripe_customer_id=CUSTOMER,
        current_period_end=datetime(2026, 2, 1, tzinfo=UTC),
        created_at=T0,
        updated_at=T0,
    )
    with db.write(engine) as connection:
        connection.execute(insert(RECURRING).values(row))


def paid_intent_event(engine: Engine) -> dict[str, Any]:
    """A pending payment of order 1, and Stripe telling it succeeded."""
    _order(engine)
    _payment(
        engine,
        status="pending",
        amount_received=None,
        callback_processed=False,
    )
    intent = stripe_object("payment_intent")
    intent.update(
        status="succeeded",
        amount_received=1099,
        receipt_email=BUYER,
        latest_charge="ch_1PgafuB7WZ01zgkWXYmPNZs8",
        metadata={"order_id": "1", "payment_id": "1"},
    )
    return event(
        "payment_intent.succeeded", intent, event_id="evt_paid", created=CREATED
    )


def refund_event(engine: Engine) -> dict[str, Any]:
    """A paid payment, and a refund of 1.00 made in Stripe's Dashboard."""
    _order(engine, status="paid")
    _payment(engine)
    refund = stripe_object("refund")
    refund.update(payment_intent=PI)
    return event("refund.created", refund, event_id="evt_refund", created=CREATED)


def subscription_event(engine: Engine) -> dict[str, Any]:
    """An active subscription, and Stripe telling it will cancel at period end."""
    _order(engine, status="paid")
    _recurring(engine)
    subscription = stripe_object("subscription")
    subscription.update(ended_at=None, canceled_at=CREATED, cancel_at=1769904000)
    subscription["items"]["data"][0]["current_period_end"] = 1769904000
    return event(
        "customer.subscription.updated",
        subscription,
        event_id="evt_subscription",
        created=CREATED,
    )


def invoice_event(engine: Engine) -> dict[str, Any]:
    """An active subscription, and its renewal invoice paid."""
    _order(engine, status="paid")
    _recurring(engine)
    invoice = stripe_object("invoice")
    return event("invoice.paid", invoice, event_id="evt_invoice", created=CREATED)


# The expected plans ---------------------------------------------------------------


def masked(value: Any) -> Any:
    """The plan with this run's volatile values masked: row stamps, step times."""
    if isinstance(value, dict):
        return {
            key: TIME
            if key in ("created_at", "updated_at", "ms") and item is not None
            else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def ok(step: str, use: str) -> dict[str, Any]:
    return {"step": step, "use": use, "outcome": "ok", "ms": TIME}


def no(step: str, use: str) -> dict[str, Any]:
    """A step whose `if` was false."""
    return {**ok(step, use), "outcome": "skipped", "reason": "`if` was false"}


def run_of(
    flow: str,
    after: str | None,
    steps: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    outputs: dict[str, Any],
) -> dict[str, Any]:
    return {
        "flow": flow,
        "status": "succeeded",
        "reason": None,
        "error": None,
        "steps": steps,
        "changes": changes,
        "outputs": outputs,
        "stripe_requests": [],  # a system flow or an example makes no Stripe call
        "after": after,
    }


def change(
    step: str | None, table: str, before: dict[str, Any] | None, after: dict[str, Any]
) -> dict[str, Any]:
    return {"step": step, "table": table, "before": before, "after": after}


def plan_of(
    event_id: str, kind: str, runs: list[Any], notifications: list[Any]
) -> dict[str, Any]:
    return {
        "event": {"id": event_id, "type": kind},
        "status": "succeeded",
        "reason": None,
        "runs": runs,
        "notifications": notifications,
        "notes": [],  # smtp is configured: no note that mail would wait
    }


PENDING = {
    **PAID,
    "status": "pending",
    "amount_received": None,
    "callback_processed": False,
    "stripe_payment_intent_id": PI,
}
SUCCEEDED = {**PAID, "stripe_payment_intent_id": PI}
ORDER = {
    "id": 1,
    "price": "10.99",
    "currency": "usd",
    "user_id": "u1",
    "status": "pending",
    "description": "",
    "created_at": TIME,
    "updated_at": TIME,
}
PAYMENT_PLAN = plan_of(
    "evt_paid",
    "payment_intent.succeeded",
    [
        run_of(
            "StripePaymentCallback",
            None,
            [
                ok("source", "set"),
                no("no_intent", "stop"),
                ok("payment", "table.get"),
                no("unknown_intent", "stop"),
                no("order", "table.get"),
                no("unknown_order", "stop"),
                no("order_amount", "money.minor_units"),
                no("created", "table.insert"),
                ok("the", "set"),
                no("already_settled", "stop"),
                no("still_paying", "stop"),
                no("mismatch", "table.update"),
                no("mismatch_recorded", "stop"),
                ok("succeeded", "table.update"),
                no("failed", "table.update"),
            ],
            [change("succeeded", "payment", PENDING, SUCCEEDED)],
            {
                "payment_id": 1,
                "order_id": 1,
                "status": "succeeded",
                "amount": 1099,
                "currency": "usd",
                "payment_intent": PI,
                "receipt_email": BUYER,
            },
        ),
        run_of(
            "EmailReceipt",
            "StripePaymentCallback",
            [
                no("no_receipt", "stop"),
                ok("order", "table.get"),
                ok("receipt", "notify.email"),
            ],
            [],  # the mail is in the notifications, not a row
            {"order_id": 1, "outbox_key": "evt_paid:EmailReceipt:receipt"},
        ),
        run_of(
            "MarkOrderPaid",
            "StripePaymentCallback",
            [ok("order_paid", "table.update")],
            [change("order_paid", "order", ORDER, {**ORDER, "status": "paid"})],
            {"order_id": 1, "paid": True},
        ),
        run_of(
            "SendReceipt",
            "MarkOrderPaid",
            [ok("receipt", "notify.log")],
            [],
            {"order_id": 1},
        ),
    ],
    [
        {
            "kind": "email",
            "flow": "EmailReceipt",
            "step": "receipt",
            "key": "evt_paid:EmailReceipt:receipt",
            "to": [BUYER],
            "subject": "Your receipt for order 1",
            "text": "Thank you for your payment.\n\n"
            "Order:    1\nPaid:     10.99 USD\nPayment:  1\n\n"
            "Keep this mail as your receipt.\n",
            "html": "<!doctype html>\n<html>\n  <body>\n"
            "    <p>Thank you for your payment.</p>\n    <table>\n"
            "      <tr><th>Order</th><td>1</td></tr>\n"
            "      <tr><th>Paid</th><td>10.99 USD</td></tr>\n"
            "      <tr><th>Payment</th><td>1</td></tr>\n    </table>\n"
            "    <p>Keep this mail as your receipt.</p>\n  </body>\n</html>\n",
        },
        {
            "kind": "log",
            "flow": "SendReceipt",
            "step": "receipt",
            "line": 'message="receipt sent" order_id=1',
        },
    ],
)

REFUND_ID = "re_1Pgc72B7WZ01zgkWqPvrRrPE"
REFUND_PLAN = plan_of(
    "evt_refund",
    "refund.created",
    [
        run_of(
            "StripeRefundCallback",
            None,
            [
                ok("source", "set"),
                no("no_refund_listed", "stop"),
                ok("refund", "set"),
                ok("stripe", "set"),
                no("no_intent", "stop"),
                ok("payment", "table.get"),
                no("unknown_payment", "stop"),
                no("other_listed", "foreach"),
                ok("by_stripe_id", "table.get"),
                no("by_metadata", "table.get"),
                ok("existing", "set"),
                no("older_news", "stop"),
                ok("dashboard_refund", "table.insert"),
                no("our_refund", "table.update"),
                ok("refunded", "table.sum"),
                ok("payment_total", "table.update"),
            ],
            [
                change(
                    "dashboard_refund",
                    "refund",
                    None,
                    {
                        "id": 1,
                        "payment_id": 1,
                        "amount": 100,
                        "currency": "usd",
                        "status": "succeeded",
                        "stripe_refund_id": REFUND_ID,
                        "reason": None,
                        "failure_reason": None,
                        "callback_processed": True,
                        "created_at": TIME,
                        "updated_at": TIME,
                    },
                ),
                change(
                    "payment_total",
                    "payment",
                    SUCCEEDED,
                    {**SUCCEEDED, "refunded_amount": 100},
                ),
            ],
            {
                "refund_id": 1,
                "stripe_refund_id": REFUND_ID,
                "payment_id": 1,
                "order_id": 1,
                "status": "succeeded",
                "amount": 100,
                "currency": "usd",
                "refunded_amount": 100,
                "payment_amount": 1099,
                "fully_refunded": False,
            },
        ),
        run_of(
            "EmailRefundNotice",
            "StripeRefundCallback",
            [
                no("not_a_succeeded_refund", "stop"),
                ok("once_per_refund", "dedup"),
                ok("notice", "notify.email"),
            ],
            [
                change(
                    "once_per_refund",
                    "dedup_key",
                    None,
                    {
                        "flow": "EmailRefundNotice",
                        "key": f"EmailRefundNotice:refund-notice:{REFUND_ID}",
                    },
                )
            ],
            {"refund": REFUND_ID},
        ),
        run_of(
            "MarkOrderRefunded",
            "StripeRefundCallback",
            [no("order_refunded", "table.update")],  # 1.00 of 10.99: not all of it
            [],
            {"order_id": 1},
        ),
    ],
    [
        {
            "kind": "email",
            "flow": "EmailRefundNotice",
            "step": "notice",
            "key": "evt_refund:EmailRefundNotice:notice",
            "to": ["shop@example.com"],
            "subject": "Refund of 1.00 USD on order 1",
            "text": "Stripe refunded 1.00 USD on order 1\n"
            f"(payment 1, refund {REFUND_ID}).\n",
            "html": None,  # refund_notice has no .html template
        }
    ],
)

RECURRING_ROW = {
    **SUBSCRIBED,
    "stripe_subscription_id": SUB,
    "stripe_customer_id": CUSTOMER,
}
SUBSCRIPTION_PLAN = plan_of(
    "evt_subscription",
    "customer.subscription.updated",
    [
        run_of(
            "StripeRecurringPaymentManagementCallback",
            None,
            [
                ok("subscription", "set"),
                ok("by_subscription", "table.get"),
                no("by_metadata", "table.get"),
                no("foreign_metadata", "stop"),
                ok("found", "set"),
                no("unknown_subscription", "stop"),
                ok("current", "set"),
                no("older_news", "stop"),
                ok("recorded", "table.update"),
            ],
            [
                change(
                    "recorded",
                    "recurring_payment",
                    RECURRING_ROW,
                    {
                        **RECURRING_ROW,
                        "cancel_at_period_end": True,
                        "last_event_at": CREATED,
                    },
                )
            ],
            {
                "recurring_payment_id": 1,
                "order_id": 1,
                "user_id": "u1",
                "status": "active",
                "active": True,
                "cancel_at_period_end": True,
                "current_period_end": 1769904000,
                "stripe_subscription_id": SUB,
            },
        ),
        run_of(
            "SubscriptionFeature",
            "StripeRecurringPaymentManagementCallback",
            [ok("feature", "table.upsert")],
            [
                change(
                    "feature",
                    "user_feature",
                    None,
                    {
                        "id": 1,
                        "user_id": "u1",
                        "feature": "premium",
                        "active": True,
                        "source": "recurring_payment:1",
                        "created_at": TIME,
                        "updated_at": TIME,
                    },
                )
            ],
            {"user_id": "u1", "active": True},
        ),
    ],
    [],
)

INVOICE_ID = "in_1Pgc6tB7WZ01zgkWu9fdqL6I"
RENEWAL = {**ORDER, "id": 2, "price": "10.00"}
INVOICE_PLAN = plan_of(
    "evt_invoice",
    "invoice.paid",
    [
        run_of(
            "StripeRecurringPaymentDeductionCallback",
            None,
            [
                no("link", "set"),
                no("link_without_intent", "stop"),
                no("link_kept", "table.upsert"),
                no("link_payment", "table.get"),
                no("link_set", "table.update"),
                no("linked", "stop"),
                ok("invoice", "set"),
                ok("amounts", "set"),
                no("not_a_subscription", "stop"),
                ok("by_subscription", "table.get"),
                no("by_metadata", "table.get"),
                no("foreign_metadata", "stop"),
                ok("recurring", "set"),
                no("unknown_subscription", "stop"),
                ok("existing", "table.get"),
                no("already_paid", "stop"),
                no("first_order", "table.get"),
                no("first_order_amount", "money.minor_units"),
                ok("expected", "set"),
                ok("outcome", "set"),
                ok("known_intent", "table.get"),
                ok("intent", "set"),
                ok("renewal_price", "money.price"),
                ok("renewal_order", "table.insert"),
                ok("new_payment", "table.insert"),
                no("payment_update", "table.update"),
                ok("payment", "set"),
            ],
            [
                change("renewal_order", "order", None, RENEWAL),
                change(
                    "new_payment",
                    "payment",
                    None,
                    {
                        **PAID,
                        "order_id": 2,
                        "amount": 1000,
                        "amount_received": 1000,
                        "stripe_invoice_id": INVOICE_ID,
                        # Since 2025 an invoice names no PaymentIntent; the
                        # invoice_payment.paid event links it later.
                        "stripe_payment_intent_id": None,
                        "recurring_payment_id": 1,
                    },
                ),
            ],
            {
                "payment_id": 1,
                "order_id": 2,
                "recurring_payment_id": 1,
                "user_id": "u1",
                "status": "succeeded",
                "renewal": True,
                "amount": 1000,
                "currency": "usd",
                "stripe_invoice_id": INVOICE_ID,
            },
        ),
        run_of(
            "MarkSubscriptionOrderPaid",
            "StripeRecurringPaymentDeductionCallback",
            [ok("order_paid", "table.update")],
            [change("order_paid", "order", RENEWAL, {**RENEWAL, "status": "paid"})],
            {"order_id": 2},
        ),
    ],
    [],
)

SYSTEM_FLOWS = {
    "StripePaymentCallback": (paid_intent_event, PAYMENT_PLAN),
    "StripeRefundCallback": (refund_event, REFUND_PLAN),
    "StripeRecurringPaymentManagementCallback": (subscription_event, SUBSCRIPTION_PLAN),
    "StripeRecurringPaymentDeductionCallback": (invoice_event, INVOICE_PLAN),
}


@pytest.mark.parametrize("flow", list(SYSTEM_FLOWS))
def test_each_system_flow_plans_its_whole_path_and_leaves_everything_untouched(
    database_url: str, engine: Engine, outside: Outside, tmp_path: Path, flow: str
) -> None:
    build, expected = SYSTEM_FLOWS[flow]
    _installed(engine)
    event_file = _file(tmp_path, "event.json", build(engine))
    fixtures = _file(tmp_path, "fixtures.json", {})  # no step of it calls Stripe

    result, plan = dry_run(
        database_url, engine, outside, "--event", event_file, "--fixtures", fixtures
    )

    assert result.exit_code == 0, result.output
    assert masked(plan) == expected


@pytest.mark.parametrize(
    ("flow", "step"),
    [
        ("StripePaymentCallback", "succeeded"),
        ("StripeRefundCallback", "dashboard_refund"),
        ("StripeRecurringPaymentManagementCallback", "recorded"),
        ("StripeRecurringPaymentDeductionCallback", "new_payment"),
    ],
)
def test_a_fixture_for_a_system_flow_step_is_refused_since_it_calls_no_stripe(
    database_url: str,
    engine: Engine,
    outside: Outside,
    tmp_path: Path,
    flow: str,
    step: str,
) -> None:
    build, _ = SYSTEM_FLOWS[flow]
    event_file = _file(tmp_path, "event.json", build(engine))
    fixtures = _file(tmp_path, "fixtures.json", {step: REFUND})

    result, plan = dry_run(
        database_url, engine, outside, "--event", event_file, "--fixtures", fixtures
    )

    assert result.exit_code == 1
    assert plan == {}
    assert (
        f"there is a fixture for '{step}', but nothing of that name calls Stripe "
        "here; the Stripe calls are: none"
    ) in result.output


# The payment actions ----------------------------------------------------------------

CUSTOMER_ANSWER = {
    "id": "cus_planned",
    "object": "customer",
    "metadata": {"user_id": "u1"},
}
CANCELLED = {
    "id": "sub_live",
    "object": "subscription",
    "status": "active",
    "customer": "cus_live",
    "cancel_at_period_end": True,
    "cancel_at": 1769904000,
    "items": {"data": [{"current_period_end": 1769904000}]},
}


def action_plan(
    name: str,
    changes: list[dict[str, Any]],
    outputs: dict[str, Any],
    requests: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "action": name,
        "status": "succeeded",
        "reason": None,
        "error": None,
        "steps": [],
        "changes": changes,
        "outputs": outputs,
        "stripe_requests": requests,
    }


def request(
    step: str, path: str, params: dict[str, Any], key: str, response: dict[str, Any]
) -> dict[str, Any]:
    return {
        "step": step,
        "attempt": 1,
        "method": "POST",
        "path": path,
        "params": params,
        "idempotency_key": f"af-{INSTALLATION}-{key}",
        "answered_from": "fixture",
        "response": response,
    }


NEW_PAYMENT = {
    **PAID,
    "amount_received": None,
    "status": "pending",
    "callback_processed": False,
    "stripe_payment_intent_id": "pi_planned",
}
PAYMENT_ACTION = action_plan(
    "stripe-payment",
    [change(None, "payment", None, NEW_PAYMENT)],
    {
        "paymentId": 1,
        "clientSecret": "[redacted]",  # lets its holder pay: never printed
        "publishableKey": None,
        "stripePaymentIntentId": "pi_planned",
    },
    [
        request(
            "create_payment_intent",
            "/v1/payment_intents",
            {
                "amount": 1099,
                "currency": "usd",
                "metadata": {"order_id": "1", "payment_id": "1"},
            },
            "payment-1",
            {**INTENT, "client_secret": "[redacted]"},
        )
    ],
)
REFUND_ACTION = action_plan(
    "stripe-refund",
    [
        change(
            None,
            "refund",
            None,
            {
                "id": 1,
                "payment_id": 1,
                "amount": 500,
                "currency": "usd",
                "status": "succeeded",
                "stripe_refund_id": "re_planned",
                "reason": None,
                "failure_reason": None,
                "callback_processed": False,
                "created_at": TIME,
                "updated_at": TIME,
            },
        ),
        change(None, "payment", PAID, {**PAID, "refunded_amount": 500}),
    ],
    {
        "refundId": 1,
        "paymentId": 1,
        "stripeRefundId": "re_planned",
        "amount": 500,
        "currency": "usd",
        "status": "succeeded",
    },
    [
        request(
            "create_refund",
            "/v1/refunds",
            {
                "payment_intent": "pi_paid",
                "amount": 500,
                "metadata": {"refund_id": "1", "payment_id": "1", "order_id": "1"},
            },
            "refund-1",
            REFUND,
        )
    ],
)
SUBSCRIPTION_ACTION = action_plan(
    "stripe-subscription",
    [
        change(
            None,
            "recurring_payment",
            None,
            {
                **SUBSCRIBED,
                "stripe_subscription_id": "sub_planned",
                "stripe_customer_id": "cus_planned",
                "callback_processed": False,
                "last_event_at": 0,
            },
        )
    ],
    {
        "recurringPaymentId": 1,
        "orderId": 1,
        "stripeSubscriptionId": "sub_planned",
        "stripeCustomerId": "cus_planned",
        "status": "active",
        "latestInvoice": "in_planned",
    },
    [
        request(
            "create_customer",
            "/v1/customers",
            {"metadata": {"user_id": "u1"}},
            "customer-u1",
            CUSTOMER_ANSWER,
        ),
        request(
            "create_subscription",
            "/v1/subscriptions",
            {
                "customer": "cus_planned",
                "items": [{"price": "price_monthly"}],
                "metadata": {
                    "order_id": "1",
                    "recurring_payment_id": "1",
                    "user_id": "u1",
                },
            },
            "subscription-1",
            SUBSCRIPTION,
        ),
    ],
)
CANCEL_ACTION = action_plan(
    "stripe-subscription-cancel",
    [
        change(
            None,
            "recurring_payment",
            SUBSCRIBED,
            {**SUBSCRIBED, "cancel_at_period_end": True},
        )
    ],
    {
        "recurringPaymentId": 1,
        "stripeSubscriptionId": "sub_live",
        "status": "active",
        "cancelAtPeriodEnd": True,
    },
    [
        request(
            "cancel_subscription",
            "/v1/subscriptions/sub_live",
            {"cancel_at_period_end": True},
            "cancel-1-period-end",
            CANCELLED,
        )
    ],
)

ACTIONS = [
    pytest.param(
        _order,
        {"orderId": 1, "currency": "usd", "amount": 1099},
        {"create_payment_intent": INTENT},
        [],
        PAYMENT_ACTION,
        id="stripe-payment",
    ),
    pytest.param(
        _paid_payment,
        {"paymentId": 1, "refundAmount": 500},
        {"create_refund": REFUND},
        [],
        REFUND_ACTION,
        id="stripe-refund",
    ),
    pytest.param(
        _order,
        {"orderId": 1, "priceId": "price_monthly"},
        {"create_customer": CUSTOMER_ANSWER, "create_subscription": SUBSCRIPTION},
        [],
        SUBSCRIPTION_ACTION,
        id="stripe-subscription",
    ),
    pytest.param(
        _subscription,
        {"recurringPaymentId": 1, "atPeriodEnd": True},
        {"cancel_subscription": CANCELLED},
        ["--user", "u1"],
        CANCEL_ACTION,
        id="stripe-subscription-cancel",
    ),
]


@pytest.mark.parametrize(("rows", "data", "answers", "options", "expected"), ACTIONS)
def test_each_action_plans_its_rows_and_stripe_requests_and_leaves_everything_untouched(
    database_url: str,
    engine: Engine,
    outside: Outside,
    tmp_path: Path,
    rows: Any,
    data: dict[str, Any],
    answers: dict[str, Any],
    options: list[str],
    expected: dict[str, Any],
) -> None:
    _installed(engine)
    rows(engine)
    fixtures = _file(tmp_path, "fixtures.json", answers)

    result, plan = dry_run(
        database_url,
        engine,
        outside,
        "--action",
        expected["action"],
        "--input",
        json.dumps(data),
        "--fixtures",
        fixtures,
        *options,
    )

    assert result.exit_code == 0, result.output
    assert masked(plan) == expected
