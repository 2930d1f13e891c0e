"""Schema errors of a flow file, as problems a person can act on.

jsonschema's messages name the rule that failed; these name the key, the step
and what to write instead, each at its own line and column.
"""

from __future__ import annotations

import json
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import FlowError
from .yamlfile import YamlDocument, pointer_join

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "flow.schema.json"


@cache
def flow_schema() -> Draft202012Validator:
    """The validator for flow files, built from schemas/flow.schema.json."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


@cache
def _loader_schema() -> Draft202012Validator:
    """The flow schema without the per-step-type rules the checker applies itself.

    Their errors would be dropped anyway (see _checker_owns); leaving them out
    saves most of the validation time.
    """
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    step = schema["$defs"]["step"]
    step.pop("allOf", None)
    step["properties"]["use"].pop("enum", None)
    return Draft202012Validator(schema)


def schema_problems(document: YamlDocument) -> list[FlowError]:
    """Every schema violation of `document`, in file order."""
    problems: list[FlowError] = []
    for error in _loader_schema().iter_errors(document.data):
        if _checker_owns(error):
            continue  # the checker reports these with better words
        error = _most_specific(error)
        problems.extend(_problems(document, error))
    return sorted(
        problems,
        key=lambda item: (
            (item.position.line, item.position.column) if item.position else (0, 0)
        ),
    )


def _checker_owns(error: ValidationError) -> bool:
    """Errors about a step's `use` and `with`: the checker knows the step types."""
    return "allOf" in error.absolute_schema_path or (
        list(error.absolute_path)[2:] == ["use"] and error.validator == "enum"
    )


def _most_specific(error: ValidationError) -> ValidationError:
    while error.context:
        error = max(error.context, key=lambda item: len(item.absolute_path))
    return error


def _problems(document: YamlDocument, error: ValidationError) -> list[FlowError]:
    path = list(error.absolute_path)
    pointer = "".join(pointer_join("", part) for part in path)
    step, where = _where(document.data, path)

    def problem(message: str, at: str = pointer, *, key: bool = False) -> FlowError:
        return FlowError(
            message, position=document.position(at, key=key), step=step, pointer=at
        )

    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        return [
            problem(
                f"unknown key '{key}' in {where}{_hint(key, allowed)}",
                pointer_join(pointer, key),
                key=True,
            )
            for key in error.instance
            if key not in allowed
        ]
    if error.validator == "required":
        return [
            problem(f"{where} is missing the required key '{name}'")
            for name in error.validator_value
            if name not in error.instance
        ]
    if path == ["trigger"] and error.validator in ("maxProperties", "minProperties"):
        return [problem("trigger takes exactly one of stripe or after")]
    if path[-1:] == ["on_error"] or path[-2:-1] == ["on_error"]:
        return [
            problem(
                "on_error must be fail, continue or {goto: <step id>}, "
                f"got {_shown(error.instance)}"
            )
        ]
    if error.validator == "type" and (not path or _too_long(error.instance)):
        return [
            problem(f"{where} must be {_wanted(error)}, got {_kind(error.instance)}")
        ]
    return [problem(f"{where}: {_message(error)}")]


_JSON_KINDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
# A value quoted in a message longer than this is cut, and a whole file that is
# not a mapping is never quoted: a file that is not a flow at all (an .env file,
# say) would otherwise be printed whole.
_LONGEST_QUOTE = 60


def _message(error: ValidationError) -> str:
    """jsonschema's message, without quoting more of the file than helps."""
    message = str(error.message)
    quoted = repr(error.instance)
    if not _too_long(error.instance) or quoted not in message:
        return message
    return message.replace(quoted, quoted[: _LONGEST_QUOTE - 1] + "…")


def _too_long(value: Any) -> bool:
    return len(repr(value)) > _LONGEST_QUOTE


def _wanted(error: ValidationError) -> str:
    expected = error.validator_value
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_JSON_KINDS.get(str(name), str(name)) for name in names)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number"


def _where(data: Any, path: list[Any]) -> tuple[str | None, str]:
    """The step id (if inside a step) and a readable name for the place."""
    step = None
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        raw = data["steps"][path[1]]
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            step = raw["id"]
        rest = path[2:]
        return step, _dotted(rest) if rest else "the step"
    return step, _dotted(path) if path else "the flow"


def _dotted(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _hint(key: str, allowed: list[str]) -> str:
    close = get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; allowed keys are: {', '.join(allowed)}"


def _shown(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else f"a mapping {sorted(value)}"
