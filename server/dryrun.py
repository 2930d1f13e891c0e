"""Dry runs: a flow runs against the real database, and every write is rolled back.

Stripe is the dry-run stand-in (engine/stripe_standin.py): every request the
run would make is recorded and answered from the fixtures or built from the
request; nothing is sent, whatever keys are configured. The event is a file,
or one built for a row of the database (`--event-type TYPE --order N`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import click
from sqlalchemy import Engine, select

from actionflow.engine import db, sample_events
from actionflow.engine.errors import ActionflowError
from actionflow.engine.flow import Flow
from actionflow.engine.jsonvalues import dumps
from actionflow.engine.runner import RunResult, run_flow
from actionflow.engine.services import Services
from actionflow.engine.stripe_standin import (
    DryRunStripe,
    Fixtures,
    StripeRequest,
    check_fixtures,
)
from actionflow.engine.tables import Payment

from .dryrun_stripe import database_lookup, installation, redacted, stripe_steps

PAYMENTS = Payment.__table__  # type: ignore[attr-defined]


class _RollBack(Exception):
    """Unwinds the dry run's transaction after the run."""


def dry_run_flow(
    engine: Engine,
    flow: Flow,
    event: dict[str, Any],
    services: Services | None = None,
    *,
    as_json: bool = False,
    fixtures: Fixtures | None = None,
    fixtures_name: str = "fixtures",
) -> bool:
    """Run `flow` on `event`, print what happened, write nothing; False if it failed.

    Stripe steps talk to the dry-run stand-in, answered from `fixtures`, which
    are checked against the steps' declared outputs first (FixtureError).
    """
    check_fixtures(fixtures or {}, stripe_steps(flow), fixtures_name)
    stripe = DryRunStripe(fixtures, lookup=database_lookup(engine))
    services = replace(
        services or Services(), gateway=stripe, installation=installation(engine)
    )
    run_key = event.get("id") if isinstance(event.get("id"), str) else None
    result: RunResult | None = None
    try:
        with db.write(engine) as connection:
            result = run_flow(
                flow, connection, event=event, services=services, run_key=run_key
            )
            raise _RollBack
    except _RollBack:
        pass
    assert result is not None
    show(result, redacted(stripe.requests), as_json=as_json)
    return result.status != "failed"


def show(
    result: RunResult,
    requests: Sequence[StripeRequest],
    *,
    as_json: bool,
    kind: str = "flow",
) -> None:
    """Print the plan, as text or as JSON."""
    if as_json:
        data = report(result, requests, kind=kind)
        click.echo(json.dumps(json.loads(dumps(data)), indent=2))
    else:
        _print(result, requests, kind=kind)


def report(
    result: RunResult,
    requests: Sequence[StripeRequest] = (),
    *,
    kind: str = "flow",
) -> dict[str, Any]:
    """What a dry run did, as data: for `--json` and for scripts.

    `kind` is flow, or action for a dry run of an action (whose name is then
    under `action`, and whose answer is its `outputs`).
    """
    return {
        kind: result.flow,
        "status": result.status,
        "reason": result.reason,
        "error": str(result.error) if result.error is not None else None,
        "steps": [step.as_dict() for step in result.trace],
        "changes": [
            {"table": change.table, "before": change.before, "after": change.after}
            for change in result.changes
        ],
        "outputs": result.outputs,
        "stripe_requests": [request.as_dict() for request in requests],
    }


def event_for_row(
    engine: Engine, kind: str, order_id: int | None, payment_id: int | None
) -> dict[str, Any]:
    """A realistic `kind` event for a payment (or the newest of an order's)."""
    if sample_events.needs(kind) != "payment":
        raise ActionflowError(
            f"--event-type {kind} needs a recurring payment; pass --event FILE"
        )
    query = select(PAYMENTS).where(PAYMENTS.c.stripe_payment_intent_id.is_not(None))
    if payment_id is not None:
        query = query.where(PAYMENTS.c.id == payment_id)
    elif order_id is not None:
        query = query.where(PAYMENTS.c.order_id == order_id)
    else:
        raise ActionflowError("name the row: --order ID or --payment ID")
    with db.read(engine) as connection:
        row = (
            connection.execute(query.order_by(PAYMENTS.c.id.desc())).mappings().first()
        )
    if row is None:
        raise ActionflowError(
            "no payment with a PaymentIntent matches; create one with the payment "
            "action (or `actionflow trigger`), or pass --event FILE"
        )
    return sample_events.build(kind, dict(row))


def _print(
    result: RunResult, requests: Sequence[StripeRequest] = (), kind: str = "flow"
) -> None:
    click.echo(f"{kind} {result.flow}: {result.status} (dry run, nothing was written)")
    width = max((len(step.step) for step in result.trace), default=0)
    for step in result.trace:
        reason = f"  {step.reason}" if step.reason else ""
        click.echo(f"  {step.step:<{width}}  {step.outcome:<8} {step.use}{reason}")
    for change in result.changes:
        if change.before is None:
            click.echo(f"  would insert into {change.table}: {dumps(change.after)}")
            continue
        changed = {
            key: [change.before.get(key), value]
            for key, value in change.after.items()
            if change.before.get(key) != value and key != "updated_at"
        }
        click.echo(
            f"  would update {change.table} {change.after.get('id')}: {dumps(changed)}"
        )
    for request in requests:
        click.echo(f"  would call Stripe: {stripe_line(request)}")
    if result.error is not None:
        click.echo(f"  error: {result.error}")
    if result.outputs is not None:
        click.echo(
            f"  outputs: {json.dumps(json.loads(dumps(result.outputs)), indent=None)}"
        )


def stripe_line(request: StripeRequest) -> str:
    """One request to Stripe: method, path, idempotency key, parameters, answer."""
    key = request.idempotency_key or "-"
    answer = request.response.get("error", {}).get("type") or request.response.get(
        "status", "ok"
    )
    return (
        f"{request.method} {request.path} key={key} params={dumps(request.params)} "
        f"[{request.step} attempt {request.attempt}: {answer}, "
        f"{request.answered_from}]"
    )
