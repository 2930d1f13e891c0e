"""The generated part of schemas/flow.schema.json: one `with` schema per step type.

The built-in steps declare their inputs in Python; editors need them in the
schema file. `python -m actionflow.engine.flowschema` rewrites that part of the
file from the registry, and a test fails when the file is out of date.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from .steps import Builtin, load_builtins

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "flow.schema.json"
_EXPRESSION = {"$ref": "#/$defs/expression"}


def with_schema(builtin: Builtin) -> dict[str, Any]:
    """The schema of a step's `with`: its declared inputs, each also as a template."""
    inputs = copy.deepcopy(builtin.inputs)
    properties = inputs.get("properties", {})
    for name, schema in properties.items():
        described = {"description": schema.pop("description", name)}
        if "default" in schema:
            described["default"] = schema.pop("default")
        properties[name] = {**described, "anyOf": [schema, _EXPRESSION]}
    inputs["description"] = builtin.summary
    return inputs


def generated_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its step types and `with` schemas taken from the registry."""
    result = copy.deepcopy(schema)
    builtins = load_builtins()
    defs = result["$defs"]
    for key in [key for key in defs if key.startswith("with:")]:
        del defs[key]
    step = defs["step"]
    step["properties"]["use"]["enum"] = sorted(builtins)
    step["properties"]["use"]["description"] = "The built-in step type: " + "; ".join(
        f"{name}: {builtins[name].summary}" for name in sorted(builtins)
    )
    rules = []
    for name in sorted(builtins):
        defs[f"with:{name}"] = with_schema(builtins[name])
        then: dict[str, Any] = {
            "properties": {"with": {"$ref": f"#/$defs/with:{name}"}}
        }
        if builtins[name].inputs.get("required"):
            then["required"] = ["with"]
        rules.append(
            {
                "if": {"properties": {"use": {"const": name}}, "required": ["use"]},
                "then": then,
            }
        )
    step["allOf"] = rules
    return result


def render(schema: dict[str, Any]) -> str:
    """The schema as the file holds it."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Rewrite the schema file's generated part; print whether it changed."""
    current = SCHEMA_FILE.read_text(encoding="utf-8")
    updated = render(generated_schema(json.loads(current)))
    if updated == current:
        print(f"{SCHEMA_FILE} is up to date")
        return 0
    SCHEMA_FILE.write_text(updated, encoding="utf-8")
    print(f"{SCHEMA_FILE} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
