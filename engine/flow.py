"""Flows: load a YAML file, check it against the schema, compile its templates.

A `Flow` is immutable once loaded and is shared by every run; its templates are
compiled here, once. `FlowSet` holds every flow of a project and answers which
flows run for a Stripe event type and which extensions run after a flow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import FlowError, Position
from .expressions import Compiled, compile_value
from .steps import Builtin, load_builtins
from .yamlfile import YamlDocument, load_yaml, pointer_join

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = PACKAGE_ROOT / "schemas" / "flow.schema.json"
SYSTEM_FLOWS = PACKAGE_ROOT / "flows" / "system"
EXAMPLE_FLOWS = PACKAGE_ROOT / "flows" / "examples"


@dataclass(frozen=True)
class Step:
    """One step of a flow, its templates compiled."""

    id: str
    use: str
    builtin: Builtin
    args: Compiled
    condition: Compiled | None
    pointer: str
    position: Position


@dataclass(frozen=True)
class Trigger:
    """What starts a flow: Stripe event types, or another flow's success."""

    stripe: tuple[str, ...] = ()
    after: str | None = None


@dataclass(frozen=True)
class Flow:
    """A loaded, checked flow."""

    name: str
    description: str
    trigger: Trigger
    steps: tuple[Step, ...]
    outputs: Compiled | None
    file: str
    system: bool = False
    document: YamlDocument | None = field(default=None, compare=False, repr=False)


@cache
def flow_schema() -> Draft202012Validator:
    """The validator for flow files, built from schemas/flow.schema.json."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def load_flow(path: Path, *, system: bool = False) -> Flow:
    """Load, validate and compile the flow in `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(
            f"cannot read the flow file: {exc}", position=Position(str(path))
        ) from None
    return parse_flow(text, str(path), system=system)


def parse_flow(text: str, file: str, *, system: bool = False) -> Flow:
    """Validate and compile the flow in `text`, which came from `file`."""
    document = load_yaml(text, file)
    check_schema(document)
    data = document.data
    builtins = load_builtins()
    steps = tuple(
        _step(document, builtins, index, raw) for index, raw in enumerate(data["steps"])
    )
    _check_unique_ids(document, steps)
    trigger = data["trigger"]
    outputs = data.get("outputs")
    return Flow(
        name=data["name"],
        description=data.get("description", ""),
        trigger=Trigger(
            stripe=tuple(trigger.get("stripe", ())), after=trigger.get("after")
        ),
        steps=steps,
        outputs=compile_value(outputs, "/outputs", document.position)
        if outputs
        else None,
        file=file,
        system=system,
        document=document,
    )


def check_schema(document: YamlDocument) -> None:
    """Raise FlowError at the first schema violation, with its position."""
    errors = sorted(flow_schema().iter_errors(document.data), key=_error_order)
    if not errors:
        return
    error = _most_specific(errors[0])
    pointer = "".join(pointer_join("", part) for part in error.absolute_path)
    unknown_key = error.validator == "additionalProperties"
    raise FlowError(
        _schema_message(error),
        position=document.position(pointer, key=unknown_key),
        pointer=pointer or "/",
    )


def _error_order(error: ValidationError) -> tuple[int, ...]:
    return tuple(part if isinstance(part, int) else 0 for part in error.absolute_path)


def _most_specific(error: ValidationError) -> ValidationError:
    while error.context:
        error = max(error.context, key=lambda item: len(item.absolute_path))
    return error


def _schema_message(error: ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "the flow"
    if error.validator == "additionalProperties":
        return f"{where}: {error.message}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def _step(
    document: YamlDocument,
    builtins: dict[str, Builtin],
    index: int,
    raw: dict[str, Any],
) -> Step:
    pointer = f"/steps/{index}"
    position = document.position(pointer)
    use = raw["use"]
    if use not in builtins:
        known = ", ".join(sorted(builtins))
        raise FlowError(
            f"unknown step type '{use}'; known types are: {known}",
            position=document.position(f"{pointer}/use"),
            step=raw["id"],
            pointer=f"{pointer}/use",
        )
    condition = raw.get("if")
    return Step(
        id=raw["id"],
        use=use,
        builtin=builtins[use],
        args=compile_value(raw.get("with", {}), f"{pointer}/with", document.position),
        condition=compile_value(condition, f"{pointer}/if", document.position)
        if condition is not None
        else None,
        pointer=pointer,
        position=position,
    )


def _check_unique_ids(document: YamlDocument, steps: Iterable[Step]) -> None:
    seen: set[str] = set()
    for step in steps:
        if step.id in seen:
            raise FlowError(
                f"step id '{step.id}' is used twice; give each step its own id",
                position=document.position(f"{step.pointer}/id"),
                step=step.id,
                pointer=f"{step.pointer}/id",
            )
        seen.add(step.id)


class FlowSet:
    """Every flow of a project, indexed for dispatch."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        self.by_name: dict[str, Flow] = {}
        for flow in flows:
            if flow.name in self.by_name:
                raise FlowError(
                    f"two flows are named '{flow.name}' "
                    f"({self.by_name[flow.name].file} and {flow.file}); rename one",
                    position=Position(flow.file),
                )
            self.by_name[flow.name] = flow
        for flow in self.by_name.values():
            if flow.trigger.after and flow.trigger.after not in self.by_name:
                raise FlowError(
                    f"trigger.after names '{flow.trigger.after}', which is not a loaded flow",
                    position=_trigger_position(flow),
                    pointer="/trigger/after",
                )

    def for_event(self, event_type: str) -> list[Flow]:
        """Flows triggered by a Stripe event type, system flows first, then by name."""
        matching = [
            flow for flow in self.by_name.values() if event_type in flow.trigger.stripe
        ]
        return sorted(matching, key=lambda flow: (not flow.system, flow.name))

    def extensions(self, name: str) -> list[Flow]:
        """Flows that run after the flow `name` succeeds, in name order."""
        matching = [
            flow for flow in self.by_name.values() if flow.trigger.after == name
        ]
        return sorted(matching, key=lambda flow: flow.name)

    def event_types(self) -> set[str]:
        """Every Stripe event type some flow is triggered by."""
        return {kind for flow in self.by_name.values() for kind in flow.trigger.stripe}


def _trigger_position(flow: Flow) -> Position:
    if flow.document is None:
        return Position(flow.file)
    return flow.document.position("/trigger/after")


def load_directory(directory: Path, *, system: bool = False) -> list[Flow]:
    """Every flow file (*.yaml, *.yml) in `directory`, in name order."""
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return [load_flow(path, system=system) for path in files]


def load_project(extra_directories: Iterable[Path]) -> FlowSet:
    """The system flows plus the flows in each of `extra_directories`."""
    flows = load_directory(SYSTEM_FLOWS, system=True)
    for directory in extra_directories:
        flows.extend(load_directory(directory))
    return FlowSet(flows)
