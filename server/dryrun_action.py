"""Dry runs of the payment actions: the action's own code, with nothing kept.

The action runs as it does behind POST /actions/<name>, with two differences:
its Stripe is the dry-run stand-in, and every transaction it opens becomes a
savepoint inside one outer transaction that is rolled back at the end
(engine/db.py `rolled_back`). The rows it wrote are read back from the change
log before the rollback, and compared with the same rows afterwards.

The stand-in names each Stripe call of an action after the gateway method
(`create_payment_intent`, `create_refund`, ...); fixtures use those names.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import Engine, select

from actionflow.engine import changes as change_log
from actionflow.engine import db
from actionflow.engine.errors import ActionflowError
from actionflow.engine.jsonvalues import dumps
from actionflow.engine.orderlink import labelled
from actionflow.engine.runner import Change, RunResult
from actionflow.engine.services import Services
from actionflow.engine.stripe_objects import (
    CUSTOMER,
    PAYMENT_INTENT,
    REFUND,
    SUBSCRIPTION,
)
from actionflow.engine.stripe_standin import DryRunStripe, Fixtures, check_fixtures
from actionflow.engine.tables import FLOW_TABLES

from .actions import ACTIONS
from .auth import Principal
from .config import Settings
from .dryrun import show
from .dryrun_stripe import database_lookup, installation
from .http import ApiError
from .runtime import Runtime

# The Stripe calls each action can make, and the schema of each one's answer.
ACTION_CALLS: dict[str, dict[str, dict[str, Any]]] = {
    "stripe-payment": {
        "create_payment_intent": PAYMENT_INTENT,
        "retrieve_payment_intent": PAYMENT_INTENT,
    },
    "stripe-refund": {"create_refund": REFUND},
    "stripe-subscription": {
        "create_customer": CUSTOMER,
        "create_subscription": SUBSCRIPTION,
    },
    "stripe-subscription-cancel": {"cancel_subscription": SUBSCRIPTION},
}
ADMIN = Principal("admin", "admin")


def dry_run_action(
    engine: Engine,
    settings: Settings,
    services: Services,
    name: str,
    data: dict[str, Any],
    *,
    principal: Principal = ADMIN,
    fixtures: Fixtures | None = None,
    fixtures_name: str = "fixtures",
    as_json: bool = False,
) -> bool:
    """Run the action `name` on `data`, print what it did, keep nothing.

    False when the action refused (its HTTP status and reason are the error).
    """
    action = ACTIONS.get(name)
    if action is None:
        raise ActionflowError(
            f"unknown action {name!r}; actions are: {', '.join(sorted(ACTIONS))}"
        )
    check_fixtures(fixtures or {}, ACTION_CALLS.get(name, {}), fixtures_name)
    stripe = DryRunStripe(fixtures, lookup=database_lookup(engine))
    runtime = _runtime(engine, settings, services, stripe)
    result = RunResult(flow=name, status="succeeded")
    with db.rolled_back(engine) as connection:
        head = change_log.head(connection)
        try:
            result.outputs = action(runtime, principal, data)
        except ApiError as exc:
            result.status = "failed"
            result.error = ActionflowError(f"refused with {exc.status}: {exc.message}")
        except ActionflowError as exc:
            result.status, result.error = "failed", exc
        written = _written(connection, head)
    result.changes = [
        Change(table, _committed(engine, services, table, row["id"]), row)
        for table, row in written
    ]
    show(result, stripe.requests, as_json=as_json, kind="action")
    return result.status != "failed"


def _runtime(
    engine: Engine, settings: Settings, services: Services, stripe: DryRunStripe
) -> Runtime:
    """What the action reads of a server's runtime; no flows, worker or tokens."""
    key = installation(engine)
    return Runtime(
        settings,
        engine,
        flows=cast(Any, None),
        processor=cast(Any, None),
        admin_token="",
        webhook_secrets=[],
        gateway=cast(Any, stripe),
        services=Services(stripe, services.order_table, None, key),
        installation=key,
    )


def _written(connection: Any, head: int) -> list[tuple[str, dict[str, Any]]]:
    """Each row the action wrote, as it last wrote it, in the order first written."""
    rows = connection.execute(
        select(change_log.CHANGES)
        .where(change_log.CHANGES.c.id > head)
        .order_by(change_log.CHANGES.c.id)
    ).mappings()
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        latest[(row["table_name"], row["row_id"])] = json.loads(row["data"])
    return [(table, data) for (table, _), data in latest.items()]


def _committed(
    engine: Engine, services: Services, table: str, row_id: int
) -> dict[str, Any] | None:
    """The row as the database holds it (after the rollback); None if absent."""
    source = (
        services.order_table if table == "order" else FLOW_TABLES[table].__table__  # type: ignore[attr-defined]
    )
    with db.read(engine) as connection:
        row = (
            connection.execute(select(*labelled(source)).where(source.c.id == row_id))
            .mappings()
            .first()
        )
    return json.loads(dumps(dict(row))) if row is not None else None
