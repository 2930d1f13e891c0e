"""Control steps: assert, stop, dedup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from ..errors import AssertionFailed
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
                "description": "What makes this run unique, e.g. the object and outcome.",
            }
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["duplicate"],
        "properties": {"duplicate": {"type": "boolean"}},
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
    return {"duplicate": False}


@builtin(
    "set",
    "Name values for later steps: its outputs are exactly its inputs.",
    inputs={"type": "object", "description": "Names and the values they take."},
    outputs={"type": "object"},
)
def set_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    return args
