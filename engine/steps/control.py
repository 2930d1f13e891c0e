"""Control steps: set, assert, fail, stop, dedup, goto, switch, call, foreach.

Jumps (`goto`, `switch`) and sub-flow calls (`call`, `foreach`) ask the runner
through the step context; the checker reads their literal targets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from ..errors import AssertionFailed, RunError, StepFailed
from ..tables import DedupKey, utcnow
from . import builtin

if TYPE_CHECKING:
    from ..runner import StepContext

_DEDUP = DedupKey.__table__  # type: ignore[attr-defined]


@builtin(
    "assert",
    "Fail the run with `message` unless `that` is true.",
    inputs={
        "type": "object",
        "required": ["that", "message"],
        "properties": {
            "that": {"description": "The condition that must hold."},
            "message": {"type": "string", "description": "Why the run failed."},
        },
        "additionalProperties": False,
    },
    outputs={"type": "object", "properties": {}, "additionalProperties": False},
)
def assert_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    if args["that"] is not True:
        raise AssertionFailed(args["message"])
    return {}


@builtin(
    "stop",
    "End the run here, successfully, recording `reason`; extensions do not run.",
    inputs={
        "type": "object",
        "required": ["reason"],
        "properties": {
            "reason": {"type": "string", "description": "Why nothing more is done."}
        },
        "additionalProperties": False,
    },
    outputs={"type": "object", "properties": {}, "additionalProperties": False},
)
def stop_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    context.stop(args["reason"])
    return {}


@builtin(
    "dedup",
    "Stop the run if `key` was seen before; otherwise remember it.",
    inputs={
        "type": "object",
        "required": ["key"],
        "properties": {
            "key": {
                "type": "string",
                "minLength": 1,
                "maxLength": 400,
                "description": (
                    "What makes this run unique, e.g. the object and outcome."
                ),
            }
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["duplicate"],
        "properties": {"duplicate": {"type": "boolean"}},
        "additionalProperties": False,
    },
)
def dedup_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    key = f"{context.flow_name}:{args['key']}"
    seen = context.connection.execute(
        select(_DEDUP.c.key).where(_DEDUP.c.key == key)
    ).first()
    if seen is not None:
        context.stop(f"duplicate: {args['key']} was already handled")
        return {"duplicate": True}
    context.connection.execute(
        insert(_DEDUP).values(key=key, flow=context.flow_name, created_at=utcnow())
    )
    context.note_change("dedup_key", None, {"key": key, "flow": context.flow_name})
    return {"duplicate": False}


@builtin(
    "set",
    "Name values for later steps: its outputs are exactly its inputs.",
    inputs={
        "type": "object",
        "description": "Names and the values they take.",
        "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"},
    },
    outputs={"type": "object", "description": "The same names as `with`."},
)
def set_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    return args


_STEP_ID = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 64}
_FLOW_NAME = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"}


@builtin(
    "fail",
    "Fail the run here with `message`; an `on_error` of an earlier step is not used.",
    inputs={
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "description": "Why the run failed."}
        },
        "additionalProperties": False,
    },
    outputs={"type": "object", "properties": {}, "additionalProperties": False},
)
def fail_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    raise StepFailed(args["message"])


@builtin(
    "goto",
    "Jump to the step `step`. A jump back (a loop) must say `max`: after `max` "
    "jumps the run goes on with the next step and `exhausted` is true.",
    inputs={
        "type": "object",
        "required": ["step"],
        "properties": {
            "step": {**_STEP_ID, "description": "The id of the step to run next."},
            "max": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "How many times this jump may be taken in one run.",
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "properties": {
            "taken": {"type": "integer", "description": "Jumps taken so far."},
            "exhausted": {"type": "boolean", "description": "`max` was reached."},
        },
        "additionalProperties": False,
    },
)
def goto_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    taken = context.jumps.get(context.step_id, 0)
    if "max" in args and taken >= args["max"]:
        return {"taken": taken, "exhausted": True}
    context.jumps[context.step_id] = taken + 1
    context.jump(args["step"])
    return {"taken": taken + 1, "exhausted": False}


@builtin(
    "switch",
    "Jump to the step named by the case that equals `value`, else to `default`, "
    "else go on with the next step. Jumps go forward only.",
    inputs={
        "type": "object",
        "required": ["value", "cases"],
        "properties": {
            "value": {
                "type": ["string", "integer", "boolean"],
                "description": "The value to match against the case names.",
            },
            "cases": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": _STEP_ID,
                "description": "Case value (as text) to the id of the step to run.",
            },
            "default": {
                **_STEP_ID,
                "description": "The step to run when no case matches.",
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "properties": {
            "case": {
                "type": ["string", "null"],
                "description": "The case that matched, or null.",
            },
            "target": {
                "type": ["string", "null"],
                "description": "The step jumped to, or null to go on.",
            },
        },
        "additionalProperties": False,
    },
)
def switch_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    value = args["value"]
    key = str(value).lower() if isinstance(value, bool) else str(value)
    case = key if key in args["cases"] else None
    target = args["cases"][case] if case is not None else args.get("default")
    if target is not None:
        context.jump(target)
    return {"case": case, "target": target}


@builtin(
    "call",
    "Run the flow `flow` with `inputs` inside this run; its outputs are this "
    "step's outputs. A called flow that stops gives no outputs.",
    inputs={
        "type": "object",
        "required": ["flow"],
        "properties": {
            "flow": {**_FLOW_NAME, "description": "The name of the flow to run."},
            "inputs": {
                "type": "object",
                "description": "Values for the called flow's declared inputs.",
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "description": "The called flow's outputs, key by key.",
    },
)
def call_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    outputs = context.call_flow(args["flow"], args.get("inputs", {}))
    return outputs if isinstance(outputs, dict) else {}


@builtin(
    "foreach",
    "Run the flow `flow` once per item of `items` (at most `max` items), the "
    "item given as the input named by `as`; collects each run's outputs.",
    inputs={
        "type": "object",
        "required": ["flow", "items", "max"],
        "properties": {
            "flow": {**_FLOW_NAME, "description": "The flow to run per item."},
            "items": {"type": "array", "description": "The items, in order."},
            "as": {
                **_STEP_ID,
                "default": "item",
                "description": "The input of the called flow that gets the item.",
            },
            "inputs": {
                "type": "object",
                "description": "Further inputs, the same for every item.",
            },
            "max": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "The most items allowed; more fails the step.",
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "description": "Each run's outputs, in the order of the items.",
            },
            "count": {"type": "integer", "description": "How many items ran."},
        },
        "additionalProperties": False,
    },
)
def foreach_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    items = args["items"]
    if len(items) > args["max"]:
        raise RunError(
            f"foreach got {len(items)} items, more than its max of {args['max']}; "
            "raise max or pass fewer items"
        )
    name = args.get("as", "item")
    extra = args.get("inputs", {})
    results = [context.call_flow(args["flow"], {**extra, name: item}) for item in items]
    return {"results": results, "count": len(results)}
