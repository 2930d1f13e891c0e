"""Dry runs: an event takes the whole path the worker would, then everything rolls back.

The plan runs the flows an event triggers (system flows first), and after each
flow that succeeds, the project's extensions of it (`trigger.after`), in one
transaction that is rolled back at the end. It mirrors processing: a system
flow that fails fails the whole event (nothing of it would be written), while
an extension that fails is rolled back alone (production retries it later) and
the flows before it stand. Either failure fails the plan: the exit code says
so, and the plan names the flow, the step and the reason.

Nothing leaves the process. Stripe is the dry-run stand-in
(engine/stripe_standin.py): every request a run would make is recorded and
answered from the fixtures, or built from the request; nothing is sent,
whatever keys are configured. Notifications are queued in the rolled-back
transaction and noted in the plan: mail, webhook calls and log lines are
shown, not sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import click
from sqlalchemy import Connection, Engine, select

from actionflow.engine import db, sample_events
from actionflow.engine.errors import ActionflowError
from actionflow.engine.flow import Flow, FlowSet
from actionflow.engine.inbox import older_than_applied
from actionflow.engine.jsonvalues import dumps
from actionflow.engine.notifyconfig import NotifySettings
from actionflow.engine.redact import redact
from actionflow.engine.runner import RunResult, run_flow
from actionflow.engine.secrets import ENV_PREFIX
from actionflow.engine.services import DryRunCapture, Services
from actionflow.engine.stripe_standin import (
    DryRunStripe,
    Fixtures,
    StripeRequest,
    check_fixtures,
)
from actionflow.engine.tables import Payment

from . import plan as plan_text
from .dryrun_stripe import database_lookup, installation, redacted, stripe_steps

PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
DRY_RUN_KEY = "dry-run"  # the run key of an event that has no id


class _RollBack(Exception):
    """Unwinds the dry run's transaction after the plan."""


@dataclass
class Part:
    """One run of the plan: a flow, the flow it ran after, and how it ended."""

    result: RunResult
    after: str | None = None
    requests: list[StripeRequest] = field(default_factory=list)


@dataclass
class EventPath:
    """Which flows a plan runs: the first ones, and the extensions allowed."""

    roots: list[Flow]
    only: set[str] | None = None  # None: every extension
    notes: list[str] = field(default_factory=list)

    def extensions(self, flows: FlowSet, name: str) -> list[Flow]:
        found = flows.extensions(name)
        return [flow for flow in found if self.only is None or flow.name in self.only]


def path_for(flows: FlowSet, event_type: str, target: Flow | None) -> EventPath:
    """The flows an event takes, or only the path through `target` and after it."""
    if target is None:
        return EventPath(flows.for_event(event_type))
    chain = [target]
    while chain[-1].trigger.after is not None:
        parent = flows.by_name.get(chain[-1].trigger.after)
        if parent is None or parent in chain:
            break
        chain.append(parent)
    root = chain[-1]
    if not root.trigger.stripe:
        raise ActionflowError(
            f"flow {target.name} has no trigger: it runs when another flow calls "
            "it; dry-run a flow that calls it"
        )
    only = {flow.name for flow in chain} | _descendants(flows, target.name)
    notes = []
    if event_type not in root.trigger.stripe:
        notes.append(
            f"{root.name} is not triggered by {event_type}: processing would not "
            "run it for this event"
        )
    return EventPath([root], only, notes)


def _descendants(flows: FlowSet, name: str) -> set[str]:
    found: set[str] = set()
    waiting = [name]
    while waiting:
        for flow in flows.extensions(waiting.pop()):
            if flow.name not in found:
                found.add(flow.name)
                waiting.append(flow.name)
    return found


def plan_event(
    engine: Engine,
    flows: FlowSet,
    event: dict[str, Any],
    services: Services,
    path: EventPath,
    *,
    check_order: bool = True,
    prepare: Callable[[Connection], None] | None = None,
    secrets: list[str | None] | None = None,
    fixtures: Fixtures | None = None,
    fixtures_name: str = "fixtures",
) -> dict[str, Any]:
    """Run `event` along `path` in a transaction that is rolled back; the plan.

    `prepare` runs first in the same transaction (a replay puts back the rows
    the event changed when it was processed). Stripe steps talk to the dry-run
    stand-in, answered from `fixtures`, which are checked first against the
    declared outputs of the steps they name (FixtureError).
    """
    schemas: dict[str, dict[str, Any]] = {}
    for flow in [*flows.by_name.values(), *path.roots]:
        schemas.update(stripe_steps(flow))
    check_fixtures(fixtures or {}, schemas, fixtures_name)
    stripe = DryRunStripe(fixtures, lookup=database_lookup(engine))
    capture = DryRunCapture(
        webhooks_configured=bool(
            services.notify and services.notify.webhooks.allow_hosts
        )
    )
    services = replace(
        services,
        dry_run=capture,
        notify=_notify(services.notify),
        gateway=stripe,
        installation=installation(engine),
    )
    walk = _Walk(flows, event, services, capture, path, stripe)
    try:
        with db.write(engine) as connection:
            if prepare is not None:
                prepare(connection)
            skipped = older_than_applied(connection, event) if check_order else None
            if skipped is not None:
                walk.skipped = skipped
            else:
                walk.run(connection)
            raise _RollBack
    except _RollBack:
        pass
    plan: dict[str, Any] = _scrubbed(walk.plan(event, services.notify), secrets or [])
    return plan


class _Walk:
    """The runs of one plan, in the order processing would make them."""

    def __init__(
        self,
        flows: FlowSet,
        event: dict[str, Any],
        services: Services,
        capture: DryRunCapture,
        path: EventPath,
        stripe: DryRunStripe,
    ) -> None:
        self.stripe = stripe
        self.flows = flows
        self.event = event
        self.services = services
        self.capture = capture
        self.path = path
        self.parts: list[Part] = []
        self.skipped: str | None = None
        self.run_key = str(event.get("id") or DRY_RUN_KEY)

    def run(self, connection: Connection) -> None:
        for flow in self.path.roots:
            if flow.system:
                result = self._run(connection, flow, event=self.event)
                if result.status == "failed":
                    return  # the whole event rolls back and is retried
            else:
                # Processing queues these as runs of their own: each stands alone.
                result = self._isolated(connection, flow, None, event=self.event)
            if result.status == "succeeded":
                self._extensions(connection, flow, result)

    def _extensions(
        self, connection: Connection, parent: Flow, done: RunResult
    ) -> None:
        for extension in self.path.extensions(self.flows, parent.name):
            result = self._isolated(
                connection,
                extension,
                parent.name,
                trigger_outputs=done.outputs,
                trigger_flow=parent.name,
            )
            if result.status == "succeeded":
                self._extensions(connection, extension, result)

    def _isolated(
        self, connection: Connection, flow: Flow, after: str | None, **given: Any
    ) -> RunResult:
        savepoint = connection.begin_nested()
        result = self._run(connection, flow, after=after, **given)
        if result.status == "failed":
            savepoint.rollback()
        else:
            savepoint.commit()
        return result

    def _run(
        self, connection: Connection, flow: Flow, after: str | None = None, **given: Any
    ) -> RunResult:
        noted = len(self.capture.notifications)
        asked = len(self.stripe.requests)
        result = run_flow(
            flow,
            connection,
            services=self.services,
            flows=self.flows,
            run_key=self.run_key,
            **given,
        )
        requests = redacted(self.stripe.requests[asked:])
        self.parts.append(Part(result, after, requests))
        if result.status == "failed":
            # Its queued mail and webhook calls roll back with it; log lines
            # were written as the steps ran.
            notes = self.capture.notifications
            notes[noted:] = [note for note in notes[noted:] if note["kind"] == "log"]
        return result

    def plan(
        self, event: dict[str, Any], notify: NotifySettings | None
    ) -> dict[str, Any]:
        runs = [_run_report(part) for part in self.parts]
        failed = [run for run in runs if run["status"] == "failed"]
        if self.skipped is not None:
            status = "skipped"
        elif not runs:
            status = "ignored"
        else:
            status = "failed" if failed else "succeeded"
        return {
            "event": {"id": event.get("id"), "type": event.get("type")},
            "status": status,
            "reason": self.skipped
            or ("no flow handles this event type" if not runs else None),
            "runs": runs,
            "notifications": self.capture.notifications,
            "notes": self.path.notes + _notes(self.capture, notify),
        }


def _run_report(part: Part) -> dict[str, Any]:
    data = report(part.result, part.requests)
    data["after"] = part.after
    if part.result.status == "failed":
        # Its writes roll back with it: they would not happen.
        data["changes"] = []
        data["rolled_back"] = True
    return data


def show(
    result: RunResult,
    requests: Sequence[StripeRequest],
    *,
    as_json: bool,
    kind: str = "flow",
    color: bool | None = None,
) -> None:
    """Print one run's plan (an action's, say), as text or as JSON."""
    data = _scrubbed(report(result, redacted(list(requests)), kind=kind), [])
    if as_json:
        click.echo(json.dumps(json.loads(dumps(data)), indent=2))
    else:
        plan_text.render(data, color=color)


def report(
    result: RunResult,
    requests: Sequence[StripeRequest] = (),
    *,
    kind: str = "flow",
) -> dict[str, Any]:
    """What one run of a dry run did, as data.

    `kind` is flow, or action for a dry run of an action (whose name is then
    under `action`, and whose answer is its `outputs`).
    """
    return {
        kind: result.flow,
        "status": result.status,
        "reason": result.reason,
        "error": str(result.error) if result.error is not None else None,
        "steps": [step.as_dict() for step in result.trace],
        "changes": [change.as_dict() for change in result.changes],
        "outputs": result.outputs,
        "stripe_requests": [request.as_dict() for request in requests],
    }


def _notify(settings: NotifySettings | None) -> NotifySettings:
    """Notification settings for a dry run: the configured ones, or placeholders."""
    return settings if settings is not None else NotifySettings()


def _notes(capture: DryRunCapture, notify: NotifySettings | None) -> list[str]:
    kinds = {note["kind"] for note in capture.notifications}
    notes = []
    if "email" in kinds and (notify is None or notify.smtp is None):
        notes.append(
            "smtp is not configured: the mail above would wait in the outbox "
            "until smtp.host is set (ACTIONFLOW_SMTP_HOST)"
        )
    if "webhook" in kinds and not capture.webhooks_configured:
        notes.append(
            "outbound_webhooks.allow_hosts is not configured: the dry run let the "
            "webhook calls above through; a real run refuses every host not listed"
        )
    return notes


def _scrubbed(value: Any, known: list[str | None]) -> Any:
    """`value` with every secret masked: configured ones, flow secrets, shapes."""
    values = [secret for secret in known if secret]
    values += [
        value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)
    ]
    return _mask(value, values)


def _mask(value: Any, known: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, dict):
        return {key: _mask(item, known) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item, known) for item in value]
    return value


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
