"""Dry runs that reach Stripe: flows with stripe.* steps, and the payment actions.

Each plan is compared with the one expected, and afterwards the database is
what it was (the SQLite file byte for byte; on PostgreSQL every table's rows)
and the Stripe configured for the run (a FakeStripe on loopback) got nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.engine import make_url

from actionflow.engine import db
from actionflow.engine.tables import (
    Order,
    Payment,
    RecurringPayment,
    Setting,
)
from actionflow.server.cli import main
from tests.localstripe import SECRET_KEY
from tests.stripe_fake import FakeStripe

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
RECURRING = RecurringPayment.__table__  # type: ignore[attr-defined]
SETTINGS = Setting.__table__  # type: ignore[attr-defined]
INSTALLATION = "inst0123456789ab"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIME = "<time>"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(SECRET_KEY) as fake:
        yield fake


def _dry_run(
    database_url: str, fake: FakeStripe, *arguments: str
) -> tuple[Result, dict[str, Any] | None]:
    environment = {
        "ACTIONFLOW_DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_API_BASE": fake.url,
    }
    result = CliRunner().invoke(main, ["dry-run", *arguments], env=environment)
    plan = json.loads(result.stdout) if "--json" in arguments else None
    return result, plan


def _normalised(value: Any) -> Any:
    """The plan with the times of this run (row stamps, `created`, ms) masked."""
    if isinstance(value, dict):
        return {
            key: TIME
            if key in ("created_at", "updated_at", "created", "ms") and item
            else _normalised(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return value


def _state(database_url: str, engine: Engine) -> Any:
    """The database as stored: the SQLite file's bytes, or every PostgreSQL row."""
    if database_url.startswith("sqlite"):
        engine.dispose()  # the last connection closed checkpoints the WAL
        path = Path(str(make_url(database_url).database))
        digest = hashlib.sha256()
        for part in (path, Path(f"{path}-wal")):
            if part.exists():
                digest.update(part.name.encode() + part.read_bytes())
        return digest.hexdigest()
    with db.read(engine) as connection:
        tables = inspect(connection).get_table_names()
        return {
            table: sorted(
                repr(tuple(row))
                for row in connection.exec_driver_sql(f'SELECT * FROM "{table}"')
            )
            for table in tables
        }


DryRun = Callable[..., tuple[Result, dict[str, Any] | None]]


@pytest.fixture
def dry_run(database_url: str, engine: Engine, fake_stripe: FakeStripe) -> DryRun:
    """`actionflow dry-run ARGUMENTS`, checked to leave the database and Stripe be."""

    def run(*arguments: str) -> tuple[Result, dict[str, Any] | None]:
        before = _state(database_url, engine)
        outcome = _dry_run(database_url, fake_stripe, *arguments)
        assert _state(database_url, engine) == before
        assert fake_stripe.seen == []
        return outcome

    return run


def _fixtures(tmp_path: Path, answers: dict[str, Any]) -> str:
    path = tmp_path / "fixtures.yaml"
    path.write_text(yaml.safe_dump(answers, sort_keys=False))
    return str(path)


def _installed(engine: Engine) -> None:
    with db.write(engine) as connection:
        connection.execute(
            insert(SETTINGS).values(
                name="installation_id", value=INSTALLATION + "rest", created_at=T0
            )
        )


def _order(engine: Engine, status: str = "pending") -> int:
    with db.write(engine) as connection:
        return int(
            connection.execute(
                insert(ORDERS)
                .values(
                    price=Decimal("10.99"),
                    currency="usd",
                    user_id="u1",
                    status=status,
                    description="",
                    created_at=T0,
                    updated_at=T0,
                )
                .returning(ORDERS.c.id)
            ).scalar_one()
        )


PAID = {
    "id": 1,
    "order_id": 1,
    "amount": 1099,
    "amount_received": 1099,
    "currency": "usd",
    "status": "succeeded",
    "callback_processed": True,
    "refunded_amount": 0,
    "failure_message": None,
    "stripe_payment_intent_id": "pi_paid",
    "stripe_invoice_id": None,
    "recurring_payment_id": None,
    "created_at": TIME,
    "updated_at": TIME,
}


def _paid_payment(engine: Engine) -> None:
    _order(engine, status="paid")
    values = {key: value for key, value in PAID.items() if key != "id"}
    with db.write(engine) as connection:
        connection.execute(
            insert(PAYMENTS).values({**values, "created_at": T0, "updated_at": T0})
        )


SUBSCRIBED = {
    "id": 1,
    "order_id": 1,
    "user_id": "u1",
    "status": "active",
    "stripe_subscription_id": "sub_live",
    "stripe_customer_id": "cus_live",
    "stripe_price_id": "price_monthly",
    "current_period_end": "2026-02-01T00:00:00+00:00",
    "cancel_at_period_end": False,
    "ended_at": None,
    "callback_processed": True,
    "last_event_at": 1767225600,
    "created_at": TIME,
    "updated_at": TIME,
}


def _subscription(engine: Engine) -> None:
    _order(engine, status="paid")
    values = {key: value for key, value in SUBSCRIBED.items() if key != "id"}
    values.update(
        current_period_end=datetime(2026, 2, 1, tzinfo=UTC),
        created_at=T0,
        updated_at=T0,
    )
    with db.write(engine) as connection:
        connection.execute(insert(RECURRING).values(values))


INTENT = {
    "id": "pi_planned",
    "object": "payment_intent",
    "amount": 1099,
    "currency": "usd",
    "status": "requires_payment_method",
    "client_secret": "pi_planned_secret_planned",
    "metadata": {"order_id": "1", "payment_id": "1"},
}


def test_the_payment_action_plans_its_payment_intent_and_keeps_nothing(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _installed(engine)
    _order(engine)
    fixtures = _fixtures(tmp_path, {"create_payment_intent": INTENT})

    result, plan = dry_run(
        "--action",
        "stripe-payment",
        "--input",
        '{"orderId": 1, "currency": "usd", "amount": 1099}',
        "--fixtures",
        fixtures,
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert _normalised(plan) == {
        "action": "stripe-payment",
        "status": "succeeded",
        "reason": None,
        "error": None,
        "steps": [],
        "changes": [
            {
                "step": None,
                "table": "payment",
                "before": None,
                "after": {
                    **PAID,
                    "amount_received": None,
                    "status": "pending",
                    "callback_processed": False,
                    "stripe_payment_intent_id": "pi_planned",
                },
            }
        ],
        "outputs": {
            "paymentId": 1,
            # A client secret lets its holder pay: never printed.
            "clientSecret": "[redacted]",
            "publishableKey": None,
            "stripePaymentIntentId": "pi_planned",
        },
        "stripe_requests": [
            {
                "step": "create_payment_intent",
                "attempt": 1,
                "method": "POST",
                "path": "/v1/payment_intents",
                "params": {
                    "amount": 1099,
                    "currency": "usd",
                    "metadata": {"order_id": "1", "payment_id": "1"},
                },
                "idempotency_key": f"af-{INSTALLATION}-payment-1",
                "answered_from": "fixture",
                "response": {**INTENT, "client_secret": "[redacted]"},
            }
        ],
    }


def test_without_fixtures_the_payment_intent_is_built_from_the_request(
    dry_run: DryRun, database_url: str, engine: Engine, fake_stripe: FakeStripe
) -> None:
    _order(engine)

    result, _ = dry_run(
        "--action",
        "stripe-payment",
        "--input",
        '{"orderId": 1, "currency": "usd", "amount": 1099}',
    )

    assert result.exit_code == 0, result.output
    assert "action stripe-payment  succeeded" in result.output
    assert (
        "    POST /v1/payment_intents  [create_payment_intent attempt 1]  "
        "key af-new-payment-1  answered from default: requires_payment_method\n"
        '      {"amount": 1099, "currency": "usd", "metadata": {"order_id": "1", '
        '"payment_id": "1"}}'
    ) in result.output
    assert '"stripePaymentIntentId": "pi_dryrun_1"' in result.output


def test_an_open_payment_is_reused_after_reading_its_intent_as_the_tables_know_it(
    dry_run: DryRun, engine: Engine
) -> None:
    _order(engine)
    values = {**PAID, "status": "pending", "amount_received": None}
    values.update(stripe_payment_intent_id="pi_open", created_at=T0, updated_at=T0)
    with db.write(engine) as connection:
        connection.execute(insert(PAYMENTS).values(values))

    result, plan = dry_run(
        "--action",
        "stripe-payment",
        "--input",
        '{"orderId": 1, "currency": "usd", "amount": 1099}',
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert plan is not None
    assert plan["changes"] == []
    assert plan["outputs"]["stripePaymentIntentId"] == "pi_open"
    [request] = plan["stripe_requests"]
    assert (request["step"], request["method"], request["path"]) == (
        "retrieve_payment_intent",
        "GET",
        "/v1/payment_intents/pi_open",
    )
    assert request["idempotency_key"] is None
    assert request["answered_from"] == "default"
    assert request["response"]["metadata"] == {"order_id": "1", "payment_id": "1"}


REFUND = {
    "id": "re_planned",
    "object": "refund",
    "amount": 500,
    "currency": "usd",
    "status": "succeeded",
    "payment_intent": "pi_paid",
    "created": 1767225600,
}
REFUND_REQUEST = {
    "step": "create_refund",
    "attempt": 1,
    "method": "POST",
    "path": "/v1/refunds",
    "params": {
        "payment_intent": "pi_paid",
        "amount": 500,
        "metadata": {"refund_id": "1", "payment_id": "1", "order_id": "1"},
    },
    "idempotency_key": f"af-{INSTALLATION}-refund-1",
    "answered_from": "fixture",
}
NEW_REFUND = {
    "id": 1,
    "payment_id": 1,
    "amount": 500,
    "currency": "usd",
    "reason": None,
    "callback_processed": False,
    "created_at": TIME,
    "updated_at": TIME,
}


def test_the_refund_action_plans_the_refund_and_the_refunded_total(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _installed(engine)
    _paid_payment(engine)
    fixtures = _fixtures(tmp_path, {"create_refund": REFUND})

    result, plan = dry_run(
        "--action",
        "stripe-refund",
        "--input",
        '{"paymentId": 1, "refundAmount": 500}',
        "--fixtures",
        fixtures,
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert _normalised(plan) == {
        "action": "stripe-refund",
        "status": "succeeded",
        "reason": None,
        "error": None,
        "steps": [],
        "changes": [
            {
                "step": None,
                "table": "refund",
                "before": None,
                "after": {
                    **NEW_REFUND,
                    "status": "succeeded",
                    "stripe_refund_id": "re_planned",
                    "failure_reason": None,
                },
            },
            {
                "step": None,
                "table": "payment",
                "before": PAID,
                "after": {**PAID, "refunded_amount": 500},
            },
        ],
        "outputs": {
            "refundId": 1,
            "paymentId": 1,
            "stripeRefundId": "re_planned",
            "amount": 500,
            "currency": "usd",
            "status": "succeeded",
        },
        "stripe_requests": [{**REFUND_REQUEST, "response": _normalised(REFUND)}],
    }


def test_a_stripe_error_in_the_fixtures_plans_the_refused_refund(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _installed(engine)
    _paid_payment(engine)
    error = {"type": "invalid_request_error", "message": "Charge is disputed."}
    fixtures = _fixtures(tmp_path, {"create_refund": {"error": error}})

    result, plan = dry_run(
        "--action",
        "stripe-refund",
        "--input",
        '{"paymentId": 1, "refundAmount": 500}',
        "--fixtures",
        fixtures,
        "--json",
    )

    assert result.exit_code == 1
    assert plan is not None
    assert plan["status"] == "failed"
    message = "Stripe refused the request: Charge is disputed."
    assert plan["error"] == f"refused with 400: {message}"
    [change] = _normalised(plan["changes"])
    assert change == {
        "step": None,
        "table": "refund",
        "before": None,
        "after": {
            **NEW_REFUND,
            "status": "failed",
            "stripe_refund_id": None,
            "failure_reason": message,
        },
    }
    assert plan["stripe_requests"] == [{**REFUND_REQUEST, "response": {"error": error}}]


SUBSCRIPTION = {
    "id": "sub_planned",
    "object": "subscription",
    "status": "active",
    "customer": "cus_planned",
    "cancel_at_period_end": False,
    "items": {"object": "list", "data": [{"current_period_end": 1769904000}]},
    "latest_invoice": "in_planned",
}


def test_the_subscription_action_plans_the_customer_and_the_subscription(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _installed(engine)
    _order(engine)
    customer = {
        "id": "cus_planned",
        "object": "customer",
        "metadata": {"user_id": "u1"},
    }
    answers = {"create_customer": customer, "create_subscription": SUBSCRIPTION}
    fixtures = _fixtures(tmp_path, answers)

    result, plan = dry_run(
        "--action",
        "stripe-subscription",
        "--input",
        '{"orderId": 1, "priceId": "price_monthly"}',
        "--fixtures",
        fixtures,
        "--json",
    )

    assert result.exit_code == 0, result.output
    metadata = {"order_id": "1", "recurring_payment_id": "1", "user_id": "u1"}
    assert _normalised(plan) == {
        "action": "stripe-subscription",
        "status": "succeeded",
        "reason": None,
        "error": None,
        "steps": [],
        "changes": [
            {
                "step": None,
                "table": "recurring_payment",
                "before": None,
                "after": {
                    **SUBSCRIBED,
                    "stripe_subscription_id": "sub_planned",
                    "stripe_customer_id": "cus_planned",
                    "callback_processed": False,
                    "last_event_at": 0,
                },
            }
        ],
        "outputs": {
            "recurringPaymentId": 1,
            "orderId": 1,
            "stripeSubscriptionId": "sub_planned",
            "stripeCustomerId": "cus_planned",
            "status": "active",
            "latestInvoice": "in_planned",
        },
        "stripe_requests": [
            {
                "step": "create_customer",
                "attempt": 1,
                "method": "POST",
                "path": "/v1/customers",
                "params": {"metadata": {"user_id": "u1"}},
                "idempotency_key": f"af-{INSTALLATION}-customer-u1",
                "answered_from": "fixture",
                "response": customer,
            },
            {
                "step": "create_subscription",
                "attempt": 1,
                "method": "POST",
                "path": "/v1/subscriptions",
                "params": {
                    "customer": "cus_planned",
                    "items": [{"price": "price_monthly"}],
                    "metadata": metadata,
                },
                "idempotency_key": f"af-{INSTALLATION}-subscription-1",
                "answered_from": "fixture",
                "response": SUBSCRIPTION,
            },
        ],
    }


def test_the_cancel_action_plans_the_cancel_at_period_end_for_its_owner(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _installed(engine)
    _subscription(engine)
    answer = {
        "id": "sub_live",
        "object": "subscription",
        "status": "active",
        "customer": "cus_live",
        "cancel_at_period_end": True,
        "cancel_at": 1769904000,
        "items": {"data": [{"current_period_end": 1769904000}]},
    }
    fixtures = _fixtures(tmp_path, {"cancel_subscription": answer})

    result, plan = dry_run(
        "--action",
        "stripe-subscription-cancel",
        "--input",
        '{"recurringPaymentId": 1, "atPeriodEnd": true}',
        "--user",
        "u1",
        "--fixtures",
        fixtures,
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert _normalised(plan) == {
        "action": "stripe-subscription-cancel",
        "status": "succeeded",
        "reason": None,
        "error": None,
        "steps": [],
        "changes": [
            {
                "step": None,
                "table": "recurring_payment",
                "before": SUBSCRIBED,
                "after": {**SUBSCRIBED, "cancel_at_period_end": True},
            }
        ],
        "outputs": {
            "recurringPaymentId": 1,
            "stripeSubscriptionId": "sub_live",
            "status": "active",
            "cancelAtPeriodEnd": True,
        },
        "stripe_requests": [
            {
                "step": "cancel_subscription",
                "attempt": 1,
                "method": "POST",
                "path": "/v1/subscriptions/sub_live",
                "params": {"cancel_at_period_end": True},
                "idempotency_key": f"af-{INSTALLATION}-cancel-1-period-end",
                "answered_from": "fixture",
                "response": answer,
            }
        ],
    }


def test_an_action_refused_to_another_user_is_a_failed_plan(
    dry_run: DryRun, database_url: str, engine: Engine, fake_stripe: FakeStripe
) -> None:
    _subscription(engine)

    result, _ = dry_run(
        "--action",
        "stripe-subscription-cancel",
        "--input",
        '{"recurringPaymentId": 1, "atPeriodEnd": false}',
        "--user",
        "u2",
    )

    assert result.exit_code == 1
    assert "action stripe-subscription-cancel  failed" in result.output
    assert (
        "error: refused with 403: this subscription belongs to another user"
        in result.output
    )
    assert "Stripe requests" not in result.output


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            {**REFUND, "amount": "500"},
            "step 'create_refund', answer: /amount: '500' is not of type 'integer'",
            id="wrong-type",
        ),
        pytest.param(
            {key: value for key, value in REFUND.items() if key != "status"},
            "step 'create_refund', answer: /status: is required but missing",
            id="missing",
        ),
        pytest.param(
            {**REFUND, "amount": "5.00"},  # written as a number below
            "step 'create_refund', answer: /amount: Decimal('5.00') is not of type "
            "'integer'",
            id="fraction",
        ),
        pytest.param(
            {"error": {"type": "card_error", "messages": "declined"}},
            "step 'create_refund', answer: /error/message: is required but missing",
            id="error",
        ),
    ],
)
def test_a_fixture_that_does_not_fit_the_declared_answer_is_refused_naming_the_field(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
    answer: dict[str, Any],
    message: str,
) -> None:
    _paid_payment(engine)
    fixtures = tmp_path / "fixtures.yaml"
    text = yaml.safe_dump({"create_refund": answer}).replace("'5.00'", "5.00")
    fixtures.write_text(text)

    result, _ = dry_run(
        "--action",
        "stripe-refund",
        "--input",
        '{"paymentId": 1, "refundAmount": 500}',
        "--fixtures",
        str(fixtures),
    )

    assert result.exit_code == 1
    assert f"{fixtures}: {message}" in result.output


def test_a_fixture_for_a_call_the_action_does_not_make_is_refused(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    fixtures = _fixtures(tmp_path, {"create_refnud": REFUND})

    result, _ = dry_run(
        "--action",
        "stripe-refund",
        "--input",
        '{"paymentId": 1, "refundAmount": 500}',
        "--fixtures",
        fixtures,
    )

    assert result.exit_code == 1
    assert (
        "there is a fixture for 'create_refnud', but nothing of that name calls "
        "Stripe here; the Stripe calls are: create_refund"
    ) in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            [],
            "give either --event FILE, --event-type TYPE, --replay EVENT_ID "
            "or --action NAME",
            id="none",
        ),
        pytest.param(
            ["--action", "stripe-refund"], "--action needs --input JSON", id="no-input"
        ),
        pytest.param(
            ["--action", "stripe-refund", "--input", "[1]"],
            "--input must be a JSON object",
            id="not-an-object",
        ),
        pytest.param(
            ["--action", "stripe-refund", "--input", "{", "--event-type", "x"],
            "an action takes --input JSON, not an event",
            id="event",
        ),
    ],
)
def test_a_dry_run_of_an_action_is_used_as_documented_or_exits_2(
    dry_run: DryRun,
    database_url: str,
    fake_stripe: FakeStripe,
    arguments: list[str],
    message: str,
) -> None:
    result, _ = dry_run(*arguments)

    assert result.exit_code == 2
    assert message in result.output


REFUND_FLOW = """
name: RefundWhenPaid
trigger: {stripe: [payment_intent.succeeded]}
steps:
  - id: payment
    use: table.get
    with:
      table: payment
      where: {stripe_payment_intent_id: "{{ event.data.object.id }}"}
  - id: refund
    use: stripe.refund.create
    with:
      payment_intent: "{{ event.data.object.id }}"
      amount: 100
      metadata: {payment_id: "{{ steps.payment.row.id | string }}"}
    retry: {attempts: 2, delay_ms: 1, errors: [stripe]}
  - id: total
    use: table.update
    with:
      table: payment
      id: "{{ steps.payment.row.id }}"
      set: {refunded_amount: "{{ steps.refund.amount }}"}
outputs:
  refund: "{{ steps.refund.id }}"
  currency: "{{ steps.refund.currency }}"
"""
EVENT = {
    "id": "evt_paid_1",
    "object": "event",
    "type": "payment_intent.succeeded",
    "data": {"object": {"id": "pi_paid", "object": "payment_intent"}},
}


def _flow_files(tmp_path: Path) -> tuple[str, str]:
    flow = tmp_path / "RefundWhenPaid.yaml"
    flow.write_text(REFUND_FLOW)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(EVENT))
    return str(flow), str(event)


def test_a_flow_with_a_stripe_step_gets_an_answer_built_from_its_request(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _installed(engine)
    _paid_payment(engine)
    flow, event = _flow_files(tmp_path)

    result, plan = dry_run(flow, "--event", event, "--json")

    assert result.exit_code == 0, result.output
    assert plan is not None
    [plan] = plan["runs"]
    assert plan["outputs"] == {"refund": "re_dryrun_1", "currency": "usd"}
    assert [step["outcome"] for step in plan["steps"]] == ["ok", "ok", "ok"]
    [change] = plan["changes"]
    assert change["after"]["refunded_amount"] == 100
    assert _normalised(plan["stripe_requests"]) == [
        {
            "step": "refund",
            "attempt": 1,
            "method": "POST",
            "path": "/v1/refunds",
            "params": {
                "payment_intent": "pi_paid",
                "amount": 100,
                "metadata": {"payment_id": "1"},
            },
            "idempotency_key": (
                f"af-{INSTALLATION}-flow-evt_paid_1:RefundWhenPaid:refund"
            ),
            "answered_from": "default",
            "response": {
                "id": "re_dryrun_1",
                "object": "refund",
                "amount": 100,
                "currency": "usd",
                "status": "succeeded",
                "payment_intent": "pi_paid",
                "charge": None,
                "reason": None,
                "failure_reason": None,
                "metadata": {"payment_id": "1"},
                "created": TIME,
            },
        }
    ]


def test_a_flow_plans_a_failed_first_attempt_and_its_retry_from_fixtures(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    _paid_payment(engine)
    flow, event = _flow_files(tmp_path)
    failure = {"error": {"type": "api_error", "message": "try again"}}
    refund = {**REFUND, "id": "re_second", "amount": 100}
    fixtures = _fixtures(tmp_path, {"refund": [failure, refund]})

    result, _ = dry_run(flow, "--event", event, "--fixtures", fixtures)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        "refund" in line and "retried" in line and "(APIError)" in line
        for line in lines
    )
    assert "[refund attempt 1]  key " in result.output
    assert "answered from fixture: error api_error" in result.output
    assert "[refund attempt 2]  key " in result.output
    assert "answered from fixture: succeeded" in result.output
    assert 'outputs: {"currency": "usd", "refund": "re_second"}' in result.output


def test_a_flow_fixture_that_does_not_fit_the_step_is_refused_with_its_attempt(
    dry_run: DryRun,
    database_url: str,
    engine: Engine,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    flow, event = _flow_files(tmp_path)
    without_id = {key: value for key, value in REFUND.items() if key != "id"}
    fixtures = _fixtures(tmp_path, {"refund": [REFUND, without_id]})

    result, _ = dry_run(flow, "--event", event, "--fixtures", fixtures)

    assert result.exit_code == 1
    assert (
        "step 'refund', attempt 2: /id: is required but missing; the answer must "
        "fit a Stripe refund"
    ) in result.output
    with db.read(engine) as connection:
        assert connection.execute(select(PAYMENTS)).first() is None


def test_a_secret_a_stripe_step_sends_is_redacted_in_the_plan(
    dry_run: DryRun,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACTIONFLOW_SECRET_CRM_TOKEN", "crm-token-value-1234")
    _paid_payment(engine)
    flow, event = _flow_files(tmp_path)
    Path(flow).write_text(
        REFUND_FLOW.replace(
            'metadata: {payment_id: "{{ steps.payment.row.id | string }}"}',
            "metadata: {crm: \"{{ secret('CRM_TOKEN') }}\"}",
        )
    )

    result, plan = dry_run(flow, "--event", event, "--json")

    assert result.exit_code == 0, result.output
    assert "crm-token-value-1234" not in result.output
    assert plan is not None
    [request] = plan["runs"][0]["stripe_requests"]
    assert request["params"]["metadata"] == {"crm": "[redacted]"}
    assert request["response"]["metadata"] == {"crm": "[redacted]"}


def test_json_fixtures_are_read_too_and_a_fractional_amount_is_refused(
    dry_run: DryRun, engine: Engine, tmp_path: Path
) -> None:
    flow, event = _flow_files(tmp_path)
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(
        '{"refund": {"id": "re_1", "object": "refund", '
        '"amount": 100.0, "status": "succeeded"}}'
    )

    result, _ = dry_run(flow, "--event", event, "--fixtures", str(fixtures))

    assert result.exit_code == 1
    assert (
        "step 'refund', answer: /amount: Decimal('100.0') is not of type 'integer'"
    ) in result.output
