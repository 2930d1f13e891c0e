"""Helpers for the delivery tests: payments made in the database, their events,
`actionflow serve` and `worker` as subprocesses, and what the runs add up to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, insert, select

from actionflow.engine import db
from actionflow.engine.inbox import EVENTS, RUNS
from actionflow.engine.tables import Order, Payment, utcnow
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, free_port
from tests.stripe_events import event, stripe_object

ORDERS = Order.__table__  # type: ignore[attr-defined]
PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
PROGRAM = str(Path(sys.executable).parent / "actionflow")


def intent_id(index: int, tag: str = "dlv") -> str:
    """The PaymentIntent id of the index-th payment a test makes."""
    return f"pi_{tag}{index:06d}"


def make_payments(engine: Engine, count: int, tag: str = "dlv") -> None:
    """`count` pending orders, each with a pending payment of 10.99 usd."""
    now = utcnow()
    with db.write(engine) as connection:
        orders = [
            {
                "price": Decimal("10.99"),
                "currency": "usd",
                "user_id": f"user-{index}",
                "status": "pending",
                "description": "",
                "created_at": now,
                "updated_at": now,
            }
            for index in range(count)
        ]
        connection.execute(insert(ORDERS), orders)
        ids = connection.execute(select(ORDERS.c.id).order_by(ORDERS.c.id)).scalars()
        payments = [
            {
                "order_id": order_id,
                "amount": 1099,
                "currency": "usd",
                "status": "pending",
                "callback_processed": False,
                "stripe_payment_intent_id": intent_id(index, tag),
                "refunded_amount": 0,
                "created_at": now,
                "updated_at": now,
            }
            for index, order_id in enumerate(list(ids)[-count:])
        ]
        connection.execute(insert(PAYMENTS), payments)


def succeeded_event(index: int, tag: str = "dlv") -> dict[str, Any]:
    """A payment_intent.succeeded for the index-th payment."""
    intent = stripe_object("payment_intent")
    intent.update(id=intent_id(index, tag), status="succeeded", amount_received=1099)
    return event("payment_intent.succeeded", intent, event_id=f"evt_{tag}{index:06d}")


# The flows whose runs these tests count: the system flow and the extension that
# pays the order. Other example extensions may run too; they are not counted.
WATCHED_FLOWS = ("StripePaymentCallback", "MarkOrderPaid")


def runs_per_event(engine: Engine) -> dict[str, Counter[tuple[str, str]]]:
    """Per stored Stripe event id: how many runs of each watched flow and status."""
    query = (
        select(EVENTS.c.stripe_event_id, RUNS.c.flow, RUNS.c.status)
        .join(RUNS, RUNS.c.event_id == EVENTS.c.id)
        .where(RUNS.c.flow.in_(WATCHED_FLOWS))
    )
    found: dict[str, Counter[tuple[str, str]]] = {}
    with db.read(engine) as connection:
        for stripe_id, flow, status in connection.execute(query):
            found.setdefault(stripe_id, Counter())[(flow, status)] += 1
    return found


PROCESSED_ONCE = Counter(
    {("StripePaymentCallback", "succeeded"): 1, ("MarkOrderPaid", "succeeded"): 1}
)


def event_statuses(engine: Engine) -> Counter[str]:
    """How many stored events have each status."""
    with db.read(engine) as connection:
        rows = connection.execute(
            select(EVENTS.c.status, func.count()).group_by(EVENTS.c.status)
        )
        return Counter({status: count for status, count in rows})


def environment(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server or worker under test: known secrets, no Stripe."""
    variables = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ACTIONFLOW_", "STRIPE_"))
    }
    variables.update(
        ACTIONFLOW_DATABASE_URL=database_url,
        ACTIONFLOW_ADMIN_TOKEN=ADMIN_TOKEN,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    variables.update(extra)
    return variables


class Process:
    """An `actionflow` command running in a subprocess, its output in a file."""

    def __init__(self, arguments: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as output:
            self.popen = subprocess.Popen(
                [PROGRAM, *arguments],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=log.parent,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait; the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        self.popen.kill()
        self.popen.wait(30)


class Serve(Process):
    """`actionflow serve` on a free loopback port, waited for until it answers."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            ["serve", "--host", "127.0.0.1", "--port", str(self.port)], env, log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(
                    f"serve exited with {self.popen.returncode}:\n{self.output()}"
                )
            try:
                httpx.get(f"{self.url}/healthz", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        pytest.fail(f"serve did not answer at {self.url}:\n{self.output()}")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
