"""Run a flow: its steps in order, each with its condition, inside one transaction.

The caller owns the transaction. A run never commits or rolls back; it returns
a `RunResult`, and the caller commits the writes together with the record of
the run, or rolls both back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from . import changes as change_log
from .errors import ActionflowError, RunError
from .flow import Flow, Step


@dataclass
class Change:
    """A row a run inserted or changed: before is None for an insert."""

    table: str
    before: dict[str, Any] | None
    after: dict[str, Any]


@dataclass
class StepTrace:
    """What happened to one step."""

    step: str
    use: str
    outcome: str  # ok, skipped, stopped, failed
    ms: float
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "step": self.step,
            "use": self.use,
            "outcome": self.outcome,
            "ms": round(self.ms, 3),
        }
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass
class RunResult:
    """The outcome of a run: succeeded, stopped (ended early on purpose) or failed."""

    flow: str
    status: str
    outputs: Any = None
    error: ActionflowError | None = None
    reason: str | None = None
    trace: list[StepTrace] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


class _Stop(Exception):
    """Raised by a step to end the run early without failing it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class StepContext:
    """What a built-in step may use while it runs."""

    connection: Connection
    flow_name: str
    step_id: str
    services: Any
    changes: list[Change]
    stopped: str | None = None
    run_key: str | None = None  # what the run is for (an event id): idempotency keys

    def stop(self, reason: str) -> None:
        """End the run after this step, successfully, with `reason`."""
        self.stopped = reason

    def record_change(
        self, table: str, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        """Note a row this step wrote: for subscribers, traces and dry runs."""
        self.changes.append(Change(table, before, after))
        change_log.record(self.connection, table, after)


def run_flow(
    flow: Flow,
    connection: Connection,
    *,
    event: dict[str, Any] | None = None,
    trigger_outputs: Any = None,
    trigger_flow: str | None = None,
    services: Any = None,
    run_key: str | None = None,
) -> RunResult:
    """Run `flow` on `connection`; the caller commits or rolls back."""
    scope: dict[str, Any] = {
        "event": event,
        "trigger": {"flow": trigger_flow, "outputs": trigger_outputs},
        "steps": {},
        "flow": {"name": flow.name},
    }
    result = RunResult(flow=flow.name, status="succeeded")
    for step in flow.steps:
        started = time.perf_counter()
        try:
            outcome, reason = _run_step(
                flow, step, scope, connection, services, result, run_key
            )
        except ActionflowError as error:
            _locate(error, flow, step)
            result.trace.append(_trace(step, "failed", started, error.message))
            result.status, result.error = "failed", error
            return result
        result.trace.append(_trace(step, outcome, started, reason))
        if outcome == "stopped":
            result.status, result.reason = "stopped", reason
            return result
    if flow.outputs is not None:
        try:
            result.outputs = flow.outputs.render(scope)
        except ActionflowError as error:
            _locate(error, flow, None)
            result.status, result.error = "failed", error
    return result


def _run_step(
    flow: Flow,
    step: Step,
    scope: dict[str, Any],
    connection: Connection,
    services: Any,
    result: RunResult,
    run_key: str | None = None,
) -> tuple[str, str | None]:
    if step.condition is not None:
        condition = step.condition.render(scope)
        if not isinstance(condition, bool):
            raise RunError(
                f"`if` must be true or false, got {type(condition).__name__} {condition!r}",
                pointer=f"{step.pointer}/if",
            )
        if not condition:
            return "skipped", "`if` was false"
    args = step.args.render(scope)
    _validate(step, args)
    context = StepContext(
        connection, flow.name, step.id, services, result.changes, run_key=run_key
    )
    try:
        scope["steps"][step.id] = step.builtin.run(context, args)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise RunError(f"database error: {detail}") from None
    if context.stopped is not None:
        return "stopped", context.stopped
    return "ok", None


def _validate(step: Step, args: Any) -> None:
    error = next(step.builtin.validator.iter_errors(args), None)
    if error is None:
        return
    where = "/".join(str(part) for part in error.absolute_path)
    field_name = f"with.{where.replace('/', '.')}" if where else "with"
    raise RunError(
        f"{field_name}: {error.message}",
        pointer=f"{step.pointer}/with" + (f"/{where}" if where else ""),
    )


def _locate(error: ActionflowError, flow: Flow, step: Step | None) -> None:
    """Fill in where an error happened, if the raiser did not know."""
    if step is not None and error.step is None:
        error.step = step.id
    if error.pointer is None:
        error.pointer = step.pointer if step is not None else "/outputs"
    if error.position is None and flow.document is not None:
        error.position = flow.document.position(error.pointer)


def _trace(step: Step, outcome: str, started: float, reason: str | None) -> StepTrace:
    elapsed = (time.perf_counter() - started) * 1000
    return StepTrace(step.id, step.use, outcome, elapsed, reason)
