"""A payment's refunded total stays the sum of its refunds when they settle at once.

PostgreSQL only: SQLite runs one writer at a time, so two settlements cannot
interleave there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select

from actionflow.engine import db
from actionflow.engine.tables import Refund, utcnow
from actionflow.server.refunds import update_refunded_amount
from tests.conftest import BACKENDS, postgres_schema_url
from tests.engine.test_inbox import PAYMENTS, _order_and_payment

REFUNDS = Refund.__table__  # type: ignore[attr-defined]


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL tests are switched off (ACTIONFLOW_TEST_POSTGRES)")
    for url in postgres_schema_url():
        created = db.create_db_engine(url)
        db.prepare(created)
        yield created
        created.dispose()


def test_two_refunds_settling_at_once_both_count(postgres_engine: Engine) -> None:
    _, payment_id = _order_and_payment(postgres_engine, amount=1000)
    both_inserted = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def settle(amount: int) -> None:
        try:
            with db.write(postgres_engine) as connection:
                now = utcnow()
                connection.execute(
                    insert(REFUNDS).values(
                        payment_id=payment_id,
                        amount=amount,
                        currency="usd",
                        status="succeeded",
                        created_at=now,
                        updated_at=now,
                    )
                )
                # Both transactions hold an uncommitted refund before either
                # sums: the interleaving that loses one without a lock.
                both_inserted.wait()
                update_refunded_amount(connection, payment_id)
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=settle, args=(a,)) for a in (300, 400)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with db.read(postgres_engine) as connection:
        total = connection.execute(
            select(PAYMENTS.c.refunded_amount).where(PAYMENTS.c.id == payment_id)
        ).scalar_one()
    assert total == 700
