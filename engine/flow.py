"""Flows: load a YAML file, check it, compile its templates.

A `Flow` is immutable once loaded and is shared by every run; its templates are
compiled here, once. Loading runs the whole checker (engine/checker.py) and
refuses a flow with any problem, so a run never meets a mistake the checker
could have found. `FlowSet` holds every flow of a project, checks what spans
flows, and answers which flows run for a Stripe event type and which
extensions run after a flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from .checker import FlowFacts, check_document, check_flows
from .errors import ConfigError, FlowError, Position
from .expressions import Compiled, compile_value, is_constant
from .schemaerrors import SCHEMA_FILE, flow_schema
from .steps import Builtin, load_builtins
from .yamlfile import YamlDocument, load_yaml

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SYSTEM_FLOWS = PACKAGE_ROOT / "flows" / "system"
EXAMPLE_FLOWS = PACKAGE_ROOT / "flows" / "examples"
DEFAULT_RETRY_ON = frozenset({"timeout", "database", "stripe", "step"})

__all__ = [
    "EXAMPLE_FLOWS",
    "SCHEMA_FILE",
    "SYSTEM_FLOWS",
    "Flow",
    "FlowSet",
    "Retry",
    "Step",
    "Trigger",
    "flow_schema",
    "load_directory",
    "load_flow",
    "load_project",
    "parse_flow",
]


@dataclass(frozen=True)
class Retry:
    """How a failing step is run again: attempts, waits, which error kinds."""

    attempts: int
    delay_ms: int = 0
    backoff: int = 2
    max_delay_ms: int = 10_000
    on: frozenset[str] = DEFAULT_RETRY_ON

    def delay_ms_before(self, attempt: int) -> int:
        """The wait before attempt number `attempt` (2 is the first retry)."""
        grown: int = self.delay_ms * self.backoff ** (attempt - 2)
        return min(self.max_delay_ms, grown)


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
    retry: Retry | None = None
    timeout_ms: int | None = None
    on_error: str = "fail"  # fail, continue or goto
    error_target: str | None = None
    # `with` needs no check at run time: the checker saw all of it.
    checked_args: bool = False


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
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)
    index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    input_validator: Draft202012Validator | None = field(
        default=None, compare=False, repr=False
    )
    facts: FlowFacts | None = field(default=None, compare=False, repr=False)


def load_flow(path: Path, *, system: bool = False) -> Flow:
    """Load, check and compile the flow in `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(
            f"cannot read the flow file: {exc}", position=Position(str(path))
        ) from None
    return parse_flow(text, str(path), system=system)


def parse_flow(text: str, file: str, *, system: bool = False) -> Flow:
    """Check and compile the flow in `text`, which came from `file`.

    Raises the first problem as a FlowError whose `problems` lists them all.
    """
    document = load_yaml(text, file)
    facts, problems = check_document(document, system=system)
    if problems or facts is None:
        raise _all_of(problems)
    data = document.data
    builtins = load_builtins()
    steps = tuple(
        _step(document, builtins, index, raw) for index, raw in enumerate(data["steps"])
    )
    trigger = data.get("trigger") or {}
    outputs = data.get("outputs")
    inputs = data.get("inputs") or {}
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
        inputs=inputs,
        index={step.id: number for number, step in enumerate(steps)},
        input_validator=_input_validator(inputs) if inputs else None,
        facts=facts,
    )


def _all_of(problems: list[FlowError]) -> FlowError:
    first = problems[0]
    if len(problems) > 1:
        first.message += f" (and {len(problems) - 1} more problems in this file)"
    first.problems = problems
    return first


def _input_validator(inputs: dict[str, Any]) -> Draft202012Validator:
    schema = {
        "type": "object",
        "properties": inputs,
        "required": [name for name, spec in inputs.items() if "default" not in spec],
        "additionalProperties": False,
    }
    return Draft202012Validator(schema)


def _step(
    document: YamlDocument,
    builtins: dict[str, Builtin],
    index: int,
    raw: dict[str, Any],
) -> Step:
    pointer = f"/steps/{index}"
    condition = raw.get("if")
    on_error = raw.get("on_error", "fail")
    args = compile_value(raw.get("with", {}), f"{pointer}/with", document.position)
    builtin = builtins[raw["use"]]
    return Step(
        id=raw["id"],
        use=raw["use"],
        builtin=builtin,
        args=args,
        condition=compile_value(condition, f"{pointer}/if", document.position)
        if condition is not None
        else None,
        pointer=pointer,
        position=document.position(pointer),
        retry=_retry(raw["retry"]) if "retry" in raw else None,
        timeout_ms=raw.get("timeout_ms"),
        on_error="goto" if isinstance(on_error, dict) else on_error,
        error_target=on_error["goto"] if isinstance(on_error, dict) else None,
        checked_args=builtin.values_free or is_constant(args),
    )


def _retry(raw: dict[str, Any]) -> Retry:
    return Retry(
        attempts=raw["attempts"],
        delay_ms=raw.get("delay_ms", 0),
        backoff=raw.get("backoff", 2),
        max_delay_ms=raw.get("max_delay_ms", 10_000),
        on=frozenset(raw.get("errors", DEFAULT_RETRY_ON)),
    )


class FlowSet:
    """Every flow of a project, checked together and indexed for dispatch."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        self.by_name: dict[str, Flow] = {}
        facts = []
        for flow in flows:
            self.by_name.setdefault(flow.name, flow)
            if flow.facts is not None:
                facts.append(flow.facts)
        problems = check_flows(facts)  # two flows with one name among them
        if problems:
            raise _all_of(problems)

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


def load_directory(directory: Path, *, system: bool = False) -> list[Flow]:
    """Every flow file (*.yaml, *.yml) in `directory`, in name order."""
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return [load_flow(path, system=system) for path in files]


def load_project(extra_directories: Iterable[Path]) -> FlowSet:
    """The system flows plus the flows in each of `extra_directories`."""
    flows = load_directory(SYSTEM_FLOWS, system=True)
    for directory in extra_directories:
        if not directory.is_dir():
            raise ConfigError(
                f"the flows folder {directory} does not exist; fix `flows` in the "
                "config file (paths are relative to it)"
            )
        flows.extend(load_directory(directory))
    return FlowSet(flows)
