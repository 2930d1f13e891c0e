"""Run a flow inside the caller's transaction: steps, jumps, retries, error paths.

The caller owns the transaction. A run never commits or rolls back; it returns
a `RunResult`, and the caller commits the writes together with the record of
the run, or rolls both back. A step whose failure is handled (it has `retry`
or an `on_error` other than fail) runs inside a savepoint, so a failed attempt
leaves no writes behind.

A step's `timeout_ms` is enforced cooperatively: Python cannot safely
interrupt a running call, so the step gets the deadline (`context.deadline`,
for steps that do I/O to use as their own timeout), and a step found to have
run past it fails with a `timeout` error and its writes are rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from . import changes as change_log
from .errors import (
    ActionflowError,
    DatabaseError,
    InputError,
    RunError,
    StepTimeout,
    StripeCallError,
)
from .secrets import Secrets

if TYPE_CHECKING:
    from .flow import Flow, FlowSet, Step

MAX_STEPS_PER_RUN = 10_000  # a bound on every run, whatever its jumps say
MAX_CALL_DEPTH = 8


@dataclass
class Change:
    """A row a run inserted or changed: before is None for an insert."""

    table: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    step: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "table": self.table,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class StepTrace:
    """What happened to one step (one attempt of it, when it was retried)."""

    step: str
    use: str
    outcome: str  # ok, skipped, stopped, failed, retried, caught
    ms: float
    reason: str | None = None
    attempt: int = 1

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "step": self.step,
            "use": self.use,
            "outcome": self.outcome,
            "ms": round(self.ms, 3),
        }
        if self.reason:
            data["reason"] = self.reason
        if self.attempt > 1:
            data["attempt"] = self.attempt
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


@dataclass
class StepContext:
    """What a built-in step may use while it runs."""

    connection: Connection
    flow_name: str
    step_id: str
    services: Any
    changes: list[Change]
    stopped: str | None = None
    deadline: float | None = None  # time.monotonic() value; None: no timeout
    jumps: dict[str, int] = field(default_factory=dict)
    next_step: str | None = None
    caller: Callable[[str, dict[str, Any]], Any] | None = None
    run_key: str | None = None  # what the run is for (an event id): idempotency keys
    # Whether a change keeps the row as it was before (dry runs show it); when
    # False, an update does not read the row first and its `before` is None.
    keep_before: bool = True

    def stop(self, reason: str) -> None:
        """End the run after this step, successfully, with `reason`."""
        self.stopped = reason

    def jump(self, step_id: str) -> None:
        """Run the step `step_id` next instead of the following one."""
        self.next_step = step_id

    def call_flow(self, name: str, inputs: dict[str, Any]) -> Any:
        """Run the flow `name` with `inputs` in this run; its outputs."""
        if self.caller is None:
            raise RunError(
                f"flow '{name}' cannot be called: this run was started without "
                "the project's flows"
            )
        return self.caller(name, inputs)

    def record_change(
        self, table: str, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        """Note a row this step wrote: for subscribers, traces and dry runs."""
        self.changes.append(Change(table, before, after, self.step_id))
        orders = getattr(self.services, "order_table", None)
        change_log.record(self.connection, table, after, orders=orders)

    def note_change(
        self, table: str, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        """Note a write to a table subscribers do not see (a dedup key)."""
        self.changes.append(Change(table, before, after, self.step_id))


def run_flow(
    flow: Flow,
    connection: Connection,
    *,
    event: dict[str, Any] | None = None,
    trigger_outputs: Any = None,
    trigger_flow: str | None = None,
    services: Any = None,
    inputs: dict[str, Any] | None = None,
    flows: FlowSet | None = None,
    secrets: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    run_key: str | None = None,
    keep_before: bool = True,
) -> RunResult:
    """Run `flow` on `connection`; the caller commits or rolls back.

    With `keep_before` false, the changes the result lists have no `before`
    row, and updates save the read that would fetch it.
    """
    vault = Secrets(secrets)
    runner = _Runner(connection, services, flows, vault, sleep, clock)
    runner.run_key = run_key
    runner.keep_before = keep_before
    trigger = {"flow": trigger_flow, "outputs": trigger_outputs}
    result = RunResult(flow=flow.name, status="succeeded")
    runner.run(flow, result, event=event, trigger=trigger, inputs=inputs, depth=0)
    return _redacted(result, vault)


class _Runner:
    """The parts of a run that nested calls share."""

    def __init__(
        self,
        connection: Connection,
        services: Any,
        flows: FlowSet | None,
        secrets: Secrets,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.connection = connection
        self.services = services
        self.flows = flows
        self.secrets = secrets
        self.sleep = sleep
        self.clock = clock
        self.executed = 0
        self.run_key: str | None = None
        self.keep_before = True

    def run(
        self,
        flow: Flow,
        result: RunResult,
        *,
        event: Any,
        trigger: dict[str, Any],
        inputs: dict[str, Any] | None,
        depth: int,
    ) -> None:
        try:
            values = _check_inputs(flow, inputs)
        except ActionflowError as error:
            _locate(error, flow, None)
            result.status, result.error = "failed", error
            return
        scope: dict[str, Any] = {
            "event": event,
            "trigger": trigger,
            "steps": {},
            "flow": {"name": flow.name},
            "inputs": values,
            "secret": self.secrets.lookup,
        }
        jumps: dict[str, int] = {}
        position = 0
        while position < len(flow.steps):
            step = flow.steps[position]
            try:
                target = self._step(flow, step, scope, result, jumps, depth)
            except ActionflowError as error:
                _locate(error, flow, step)
                result.status, result.error = "failed", error
                return
            if result.status == "stopped":
                return
            position = position + 1 if target is None else flow.index[target]
        if flow.outputs is not None:
            try:
                result.outputs = flow.outputs.render(scope)
            except ActionflowError as error:
                _locate(error, flow, None)
                result.status, result.error = "failed", error

    def _step(
        self,
        flow: Flow,
        step: Step,
        scope: dict[str, Any],
        result: RunResult,
        jumps: dict[str, int],
        depth: int,
    ) -> str | None:
        """Run one step with its retries; the step to jump to, or None."""
        self.executed += 1
        if self.executed > MAX_STEPS_PER_RUN:
            raise RunError(
                f"the run took more than {MAX_STEPS_PER_RUN} steps; "
                "a loop in it does not end"
            )
        started = self.clock()
        if step.condition is not None and not _condition(step, scope):
            result.trace.append(_trace(step, "skipped", started, "`if` was false"))
            return None
        attempt = 1
        while True:
            try:
                context = self._attempt(flow, step, scope, result, jumps, depth)
                break
            except ActionflowError as error:
                _locate(error, flow, step)
                kind = error_kind(error)
                retry = step.retry
                if retry and attempt < retry.attempts and kind in retry.on:
                    result.trace.append(
                        _trace(step, "retried", started, error.message, attempt)
                    )
                    attempt += 1
                    self.sleep(retry.delay_ms_before(attempt) / 1000)
                    started = self.clock()
                    continue
                if step.on_error == "fail":
                    result.trace.append(
                        _trace(step, "failed", started, error.message, attempt)
                    )
                    raise
                scope["steps"][step.id] = {
                    "error": {"kind": kind, "message": error.message}
                }
                reason = f"{error.message}; on_error: {step.on_error}"
                if step.error_target:
                    reason += f" {step.error_target}"
                result.trace.append(_trace(step, "caught", started, reason, attempt))
                return step.error_target
        if context.stopped is not None:
            result.trace.append(
                _trace(step, "stopped", started, context.stopped, attempt)
            )
            result.status, result.reason = "stopped", context.stopped
            return None
        result.trace.append(_trace(step, "ok", started, None, attempt))
        return context.next_step

    def _attempt(
        self,
        flow: Flow,
        step: Step,
        scope: dict[str, Any],
        result: RunResult,
        jumps: dict[str, int],
        depth: int,
    ) -> StepContext:
        args = step.args.render(scope)
        if not step.checked_args:
            _validate(step, args)
        deadline = (
            self.clock() + step.timeout_ms / 1000
            if step.timeout_ms is not None
            else None
        )

        def call(name: str, inputs: dict[str, Any]) -> Any:
            return self.call(name, inputs, result, depth, step.id)

        context = StepContext(
            self.connection,
            flow.name,
            step.id,
            self.services,
            result.changes,
            deadline=deadline,
            jumps=jumps,
            caller=call,
            run_key=self.run_key,
            keep_before=self.keep_before,
        )
        handled = step.retry is not None or step.on_error != "fail"
        savepoint = self.connection.begin_nested() if handled else None
        written = len(result.changes)
        try:
            scope["steps"][step.id] = step.builtin.run(context, args)
            if deadline is not None and self.clock() > deadline:
                raise StepTimeout(
                    f"the step ran longer than its timeout_ms of {step.timeout_ms}; "
                    "its writes were rolled back"
                )
        except BaseException as exc:
            if savepoint is not None and savepoint.is_active:
                savepoint.rollback()
            del result.changes[written:]
            scope["steps"].pop(step.id, None)
            if isinstance(exc, SQLAlchemyError):
                detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                raise DatabaseError(f"database error: {detail}") from None
            raise
        if savepoint is not None:
            savepoint.commit()
        return context

    def call(
        self,
        name: str,
        inputs: dict[str, Any],
        result: RunResult,
        depth: int,
        caller: str,
    ) -> Any:
        """Run the flow `name` as part of this run; its outputs, or a RunError."""
        flow = self.flows.by_name.get(name) if self.flows is not None else None
        if flow is None:
            raise RunError(
                f"flow '{name}' cannot be called: it is not among the loaded flows"
            )
        if depth + 1 > MAX_CALL_DEPTH:
            raise RunError(f"calls are nested deeper than {MAX_CALL_DEPTH} flows")
        sub = RunResult(flow=name, status="succeeded", changes=result.changes)
        trigger = {"flow": None, "outputs": None}
        self.run(flow, sub, event=None, trigger=trigger, inputs=inputs, depth=depth + 1)
        for entry in sub.trace:
            entry.step = f"{caller}>{entry.step}"
        result.trace.extend(sub.trace)
        if sub.status == "failed":
            assert sub.error is not None
            error = RunError(f"flow {name} failed: {sub.error}")
            error.kind = error_kind(sub.error)
            raise error
        return sub.outputs if isinstance(sub.outputs, dict) else {}


def error_kind(error: ActionflowError) -> str:
    """The kind `retry.errors` matches: timeout, database, stripe, step, input, ..."""
    if isinstance(error, StripeCallError):
        return "stripe"
    return str(getattr(error, "kind", "step"))


def _condition(step: Step, scope: dict[str, Any]) -> bool:
    assert step.condition is not None
    condition = step.condition.render(scope)
    if not isinstance(condition, bool):
        raise InputError(
            f"`if` must be true or false, got {type(condition).__name__} {condition!r}",
            pointer=f"{step.pointer}/if",
        )
    return condition


def _check_inputs(flow: Flow, given: dict[str, Any] | None) -> dict[str, Any]:
    values = dict(given or {})
    if flow.input_validator is None:
        if values:
            raise InputError(
                f"flow {flow.name} declares no inputs, but got: {', '.join(values)}",
                pointer="/inputs",
            )
        return values
    error = next(flow.input_validator.iter_errors(values), None)
    if error is not None:
        path = [str(part) for part in error.absolute_path]
        where = ".".join(["inputs", *path])
        raise InputError(
            f"{where}: {error.message}",
            pointer="/inputs" + "".join(f"/{part}" for part in path[:1]),
        )
    for name, spec in flow.inputs.items():
        if name not in values and "default" in spec:
            values[name] = spec["default"]
    return values


def _validate(step: Step, args: Any) -> None:
    error = next(step.builtin.validator.iter_errors(args), None)
    if error is None:
        return
    where = "/".join(str(part) for part in error.absolute_path)
    field_name = f"with.{where.replace('/', '.')}" if where else "with"
    raise InputError(
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


def _trace(
    step: Step, outcome: str, started: float, reason: str | None, attempt: int = 1
) -> StepTrace:
    elapsed = (time.monotonic() - started) * 1000
    return StepTrace(step.id, step.use, outcome, elapsed, reason, attempt)


def _redacted(result: RunResult, secrets: Secrets) -> RunResult:
    """The result with every secret the run read replaced, wherever it shows."""
    if not secrets.revealed:
        return result
    if result.error is not None:
        result.error.message = secrets.redact(result.error.message)
        result.error.args = (result.error.message,)
    result.reason = secrets.redact(result.reason)
    for entry in result.trace:
        entry.reason = secrets.redact(entry.reason)
    result.outputs = secrets.redact(result.outputs)
    for change in result.changes:
        change.before = secrets.redact(change.before)
        change.after = secrets.redact(change.after)
    return result
