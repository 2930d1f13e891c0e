"""Notification steps. `notify.log` writes one line to the operator's log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import builtin

if TYPE_CHECKING:
    from ..runner import StepContext

log = logging.getLogger("actionflow.notify")


@builtin(
    "notify.log",
    "Write `message` and `fields` (key=value) as one line to the log.",
    inputs={
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "minLength": 1},
            "fields": {
                "type": "object",
                "description": "Values logged as sorted key=value pairs.",
                "additionalProperties": {
                    "type": ["string", "integer", "boolean", "null"]
                },
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["line"],
        "properties": {"line": {"type": "string"}},
    },
)
def log_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    fields = args.get("fields") or {}
    pairs = " ".join(f"{key}={fields[key]}" for key in sorted(fields))
    line = f"{args['message']} {pairs}".strip()
    log.info("flow=%s step=%s %s", context.flow_name, context.step_id, line)
    return {"line": line}
