"""The order table link and the schema version, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text

from actionflow.engine import db
from actionflow.engine.errors import ConfigError
from actionflow.engine.flow import EXAMPLE_FLOWS, load_project
from actionflow.engine.inbox import Processor, store_event
from actionflow.engine.orderlink import OrderLink, link_from_config
from actionflow.server.app import build_runtime
from actionflow.server.cli import main
from tests.conftest import LiveServer, server_settings
from tests.stripe_events import event, stripe_object

SHOP_LINK = OrderLink(
    table="shop_order",
    columns={
        "id": "order_no",
        "price": "total",
        "currency": "money_code",
        "user_id": "customer_ref",
        "status": "state",
    },
)


@pytest.fixture
def shop(database_url: str) -> Iterator[str]:
    """A database with the app's own order table, named its own way."""
    engine = db.create_db_engine(database_url)
    key = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE shop_order (order_no {key} PRIMARY KEY, "
                "total NUMERIC(12, 2) NOT NULL, money_code VARCHAR(3) NOT NULL, "
                "customer_ref VARCHAR(64) NOT NULL, "
                "state VARCHAR(32) NOT NULL DEFAULT 'new', note TEXT DEFAULT '')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO shop_order (total, money_code, customer_ref, state) "
                "VALUES (12.50, 'eur', 'carol', 'pending')"
            )
        )
    engine.dispose()
    yield database_url


def test_a_linked_table_with_other_column_names_is_paid_through_the_flows(
    shop: str,
) -> None:
    runtime = build_runtime(server_settings(shop, order_link=SHOP_LINK))
    with LiveServer(runtime) as server, server.client() as admin:
        order = admin.get("/orders/1").json()
        assert (order["price"], order["currency"], order["userId"]) == (
            "12.50",
            "eur",
            "carol",
        )
        created = admin.post(
            "/orders", json={"price": "3.00", "currency": "eur", "userId": "dave"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["id"] == 2

    intent = stripe_object("payment_intent")
    intent.update(id="pi_shop", amount=1250, amount_received=1250, currency="eur")
    with db.write(runtime.engine) as connection:
        connection.execute(
            text(
                "INSERT INTO payment (order_id, amount, currency, status, "
                "callback_processed, stripe_payment_intent_id, refunded_amount, "
                "created_at, updated_at) VALUES (1, 1250, 'eur', 'pending', false, "
                "'pi_shop', 0, :now, :now)"
            ),
            {"now": "2026-01-01 00:00:00+00"},
        )
    body = event("payment_intent.succeeded", intent)
    store_event(runtime.engine, body, json.dumps(body))
    processor = Processor(
        runtime.engine, load_project([EXAMPLE_FLOWS]), services=runtime.services
    )
    while processor.process_next_event() or processor.process_next_run():
        pass

    with runtime.engine.connect() as connection:
        state = connection.execute(
            text("SELECT state, total FROM shop_order WHERE order_no = 1")
        ).one()
    assert (state.state, Decimal(str(state.total))) == ("paid", Decimal("12.50"))
    runtime.engine.dispose()


def test_changing_the_link_after_a_payment_stops_the_start(shop: str) -> None:
    first = build_runtime(server_settings(shop, order_link=SHOP_LINK))
    with db.write(first.engine) as connection:
        connection.execute(
            text(
                "INSERT INTO payment (order_id, amount, currency, status, "
                "callback_processed, refunded_amount, created_at, updated_at) "
                "VALUES (1, 1250, 'eur', 'pending', false, 0, :now, :now)"
            ),
            {"now": "2026-01-01 00:00:00+00"},
        )
    first.engine.dispose()

    with pytest.raises(ConfigError) as refused:
        build_runtime(server_settings(shop))

    assert str(refused.value) == (
        "the order table link cannot change once payments reference it: the "
        "database is linked to table shop_order (id=order_no, price=total, "
        "currency=money_code, user_id=customer_ref, status=state), the "
        "configuration asks for table order (id=id, price=price, "
        "currency=currency, user_id=user_id, status=status); restore the "
        "previous order_table setting (or start with a new database)"
    )


def test_the_link_may_change_while_no_payment_uses_it(shop: str) -> None:
    build_runtime(server_settings(shop, order_link=SHOP_LINK)).engine.dispose()

    runtime = build_runtime(server_settings(shop))

    assert runtime.order_table.name == "order"
    runtime.engine.dispose()


def test_serve_stops_with_a_clear_message_when_the_link_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'actionflow.db'}"
    runtime = build_runtime(server_settings(url))
    with db.write(runtime.engine) as connection:
        connection.execute(
            text(
                "INSERT INTO payment (order_id, amount, currency, status, "
                "callback_processed, refunded_amount, created_at, updated_at) "
                "VALUES (1, 1000, 'usd', 'pending', 0, 0, '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "CREATE TABLE shop (id INTEGER PRIMARY KEY, "
                "price TEXT, currency TEXT, user_id TEXT, status TEXT)"
            )
        )
    runtime.engine.dispose()
    config = tmp_path / "actionflow.yaml"
    config.write_text("order_table:\n  table: shop\n")
    monkeypatch.setenv("ACTIONFLOW_DATABASE_URL", url)

    result = CliRunner().invoke(main, ["serve", "--config", str(config)])

    assert result.exit_code == 1
    assert "the order table link cannot change once payments reference it" in (
        result.output
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"table": "shop", "columns": {"amount": "x"}},
            "names unknown field(s) amount",
        ),
        ({"columns": {}}, "has no table name"),
        ("shop", "order_table takes `table: NAME`"),
    ],
)
def test_a_malformed_order_table_setting_says_what_is_wrong(
    value: object, message: str
) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        link_from_config(value, "actionflow.yaml")


def test_a_linked_table_that_does_not_exist_is_named(database_url: str) -> None:
    link = OrderLink(table="nowhere", columns=dict(SHOP_LINK.columns))

    with pytest.raises(ConfigError, match="the linked order table 'nowhere' does not"):
        build_runtime(server_settings(database_url, order_link=link))


# Schema --------------------------------------------------------------------


def _at_revision(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.upgrade(db._alembic_config(connection), revision)


def test_upgrade_brings_a_0001_database_to_the_domain_schema(
    database_url: str,
) -> None:
    engine = db.create_db_engine(database_url)
    _at_revision(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO payment (order_id, amount, currency, status, "
                "callback_processed, refunded_amount, created_at, updated_at) "
                "VALUES (1, 1000, 'usd', 'succeeded', true, 0, :now, :now)"
            ),
            {"now": "2026-01-01 00:00:00+00"},
        )

    db.upgrade(engine)

    assert db.current_revision(engine) == db.head_revision()
    columns = {column["name"] for column in inspect(engine).get_columns("payment")}
    assert {"stripe_invoice_id", "recurring_payment_id"} <= columns
    assert {"stripe_customer", "user_feature"} <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT amount, status FROM payment")).one()
    assert tuple(kept) == (1000, "succeeded")
    engine.dispose()


def test_serve_refuses_a_schema_that_is_out_of_date(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_db_engine(database_url)
    _at_revision(engine, "0001")
    engine.dispose()
    monkeypatch.setenv("ACTIONFLOW_DATABASE_URL", database_url)

    result = CliRunner().invoke(main, ["serve", "--port", "1"])

    assert result.exit_code == 1
    assert (
        "the database schema is at revision 0001, this version of actionflow "
        f"needs {db.head_revision()}; run `actionflow db upgrade` first"
    ) in result.output
