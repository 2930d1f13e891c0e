"""Dry runs: a flow runs against the real database, and every write is rolled back.

Stripe calls are refused (no Stripe service is given to the run).
"""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import Engine

from actionflow.engine import db
from actionflow.engine.flow import Flow
from actionflow.engine.jsonvalues import dumps
from actionflow.engine.runner import RunResult, run_flow


class _RollBack(Exception):
    """Unwinds the dry run's transaction after the run."""


def dry_run_flow(
    engine: Engine, flow: Flow, event: dict[str, Any], services: Any = None
) -> bool:
    """Run `flow` on `event`, print what happened, write nothing; False if it failed."""
    result: RunResult | None = None
    try:
        with db.write(engine) as connection:
            result = run_flow(flow, connection, event=event, services=services)
            raise _RollBack
    except _RollBack:
        pass
    assert result is not None
    _print(result)
    return result.status != "failed"


def _print(result: RunResult) -> None:
    click.echo(f"flow {result.flow}: {result.status} (dry run, nothing was written)")
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
    if result.error is not None:
        click.echo(f"  error: {result.error}")
    if result.outputs is not None:
        click.echo(
            f"  outputs: {json.dumps(json.loads(dumps(result.outputs)), indent=None)}"
        )
