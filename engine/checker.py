"""The static checker: every mistake a machine can find, before a flow runs.

`check_document` checks one loaded file and returns every problem it finds
(not only the first) plus the facts other flows need; `check_flows` checks what
spans files (names, `trigger.after`, `call`, `trigger.outputs`); `check_paths`
does both for files and folders. A problem is a FlowError with the file, line
and column, the step id and a JSON pointer. The loader (engine/flow.py) runs the
same checks and refuses a flow with any problem, so nothing the checker finds
can reach a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError

from .errors import FlowError, Position
from .graph import jump_target, reachable, step_edges
from .references import ROOTS, Reference, is_helper, scan
from .schemaerrors import schema_problems
from .steps import Builtin, load_builtins
from .stripe_event_types import STRIPE_EVENT_TYPES
from .yamlfile import YamlDocument, load_yaml, pointer_join

_SECRET_NAME = r"^[A-Z][A-Z0-9_]*$"
_JUMPS_FORWARD_ONLY = (
    "switch and on_error jump forward only; for a loop use goto with max"
)


@dataclass
class Deferred:
    """A reference that needs another flow to resolve: trigger.outputs, a call."""

    reference: Reference
    step: str | None
    position: Position
    pointer: str
    callee: str | None = None  # the flow a `call` step runs, for steps.<call>.x


@dataclass
class CallSite:
    """A `call` or `foreach` step naming a flow, with the inputs it passes."""

    step: str
    flow: str
    pointer: str
    position: Position
    inputs: list[str] | None  # None: computed, cannot be checked
    item: str | None = None  # the input foreach fills with each item


@dataclass
class FlowFacts:
    """What other flows need to know about one checked flow."""

    document: YamlDocument
    name: str
    after: str | None
    inputs: dict[str, Any]
    outputs: list[str] | None
    system: bool = False
    calls: list[CallSite] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)


def check_text(
    text: str, file: str, *, system: bool = False
) -> tuple[FlowFacts | None, list[FlowError]]:
    """Load and check one flow's text."""
    try:
        document = load_yaml(text, file)
    except FlowError as error:
        return None, [error]
    return check_document(document, system=system)


def check_document(
    document: YamlDocument, *, system: bool = False
) -> tuple[FlowFacts | None, list[FlowError]]:
    """Every problem of one flow that can be found without the other flows."""
    if document.data is None:
        empty = FlowError(
            "the file is empty; a flow needs at least name and steps",
            position=Position(document.file, 1, 1),
            pointer="",
        )
        return None, [empty]
    problems = schema_problems(document)
    if problems:
        return None, problems
    return _FlowChecker(document, system).run()


class _FlowChecker:
    """Checks one schema-valid flow; collects problems instead of raising."""

    def __init__(self, document: YamlDocument, system: bool) -> None:
        self.document = document
        self.data: dict[str, Any] = document.data
        self.steps: list[dict[str, Any]] = self.data["steps"]
        self.builtins = load_builtins()
        self.problems: list[FlowError] = []
        trigger = self.data.get("trigger") or {}
        self.facts = FlowFacts(
            document=document,
            name=self.data["name"],
            after=trigger.get("after"),
            inputs=self.data.get("inputs") or {},
            outputs=list(self.data["outputs"]) if "outputs" in self.data else None,
            system=system,
        )
        self.stripe = bool(trigger.get("stripe"))
        self.index: dict[str, int] = {}
        self.broken_jumps = False

    def run(self) -> tuple[FlowFacts, list[FlowError]]:
        self._check_event_types()
        self._check_ids()
        for position, step in enumerate(self.steps):
            self._check_step(position, step)
        self._check_graph()
        for position, step in enumerate(self.steps):
            self._check_expressions(position, step)
        if "outputs" in self.data:
            self._walk_templates(
                self.data["outputs"], "/outputs", None, len(self.steps)
            )
        return self.facts, self.problems

    def problem(
        self, message: str, pointer: str, step: str | None = None, *, key: bool = False
    ) -> None:
        self.problems.append(
            FlowError(
                message,
                position=self.document.position(pointer, key=key),
                step=step,
                pointer=pointer,
            )
        )

    def _check_event_types(self) -> None:
        trigger = self.data.get("trigger") or {}
        for number, kind in enumerate(trigger.get("stripe", [])):
            if kind not in STRIPE_EVENT_TYPES:
                self.problem(
                    f"unknown Stripe event type '{kind}'"
                    f"{near(kind, STRIPE_EVENT_TYPES)}",
                    f"/trigger/stripe/{number}",
                )

    def _check_ids(self) -> None:
        for position, step in enumerate(self.steps):
            if step["id"] in self.index:
                self.problem(
                    f"step id '{step['id']}' is used twice; give each step its own id",
                    f"/steps/{position}/id",
                    step["id"],
                )
                continue
            self.index[step["id"]] = position

    def _check_step(self, position: int, step: dict[str, Any]) -> None:
        pointer = f"/steps/{position}"
        builtin = self.builtins.get(step["use"])
        if builtin is None:
            self.problem(
                f"unknown step type '{step['use']}'{near(step['use'], self.builtins)}",
                f"{pointer}/use",
                step["id"],
            )
            return
        self._check_with(position, step, builtin)
        self._check_jumps(position, step)
        if step["use"] in ("call", "foreach"):
            self._note_call(position, step)

    def _check_with(
        self, position: int, step: dict[str, Any], builtin: Builtin
    ) -> None:
        pointer = f"/steps/{position}/with"
        if "with" not in step:
            required = builtin.inputs.get("required", [])
            if required:
                self.problem(
                    f"{builtin.name} needs `with` with: {', '.join(required)}",
                    f"/steps/{position}",
                    step["id"],
                )
            return
        args = step["with"]
        for error in builtin.validator.iter_errors(args):
            for message, where, key in _with_problems(error, args, builtin):
                self.problem(message, pointer + where, step["id"], key=key)

    def _check_jumps(self, position: int, step: dict[str, Any]) -> None:
        args = step.get("with", {})
        pointer = f"/steps/{position}"
        targets: list[tuple[Any, str, bool]] = []
        if step["use"] == "goto" and "step" in args:
            targets.append((args["step"], f"{pointer}/with/step", "max" in args))
        cases = args.get("cases")
        if step["use"] == "switch" and isinstance(cases, dict):
            # A `cases` that is not a mapping is reported by the input check.
            for case, target in cases.items():
                case_pointer = pointer_join(f"{pointer}/with/cases", case)
                targets.append((target, case_pointer, False))
        if step["use"] == "switch" and "default" in args:
            targets.append((args["default"], f"{pointer}/with/default", False))
        on_error = step.get("on_error")
        if isinstance(on_error, dict):
            targets.append((on_error["goto"], f"{pointer}/on_error/goto", False))
        for target, where, bounded in targets:
            before = len(self.problems)
            self._check_target(position, step, target, where, bounded)
            self.broken_jumps |= len(self.problems) > before

    def _check_target(
        self,
        position: int,
        step: dict[str, Any],
        target: Any,
        where: str,
        bounded: bool,
    ) -> None:
        name = jump_target(target)
        if name is None:
            self.problem(
                "a jump target must be a step id written out, not an expression",
                where,
                step["id"],
            )
            return
        if name not in self.index:
            self.problem(
                f"jump target '{name}' is not a step of this flow"
                f"{near(name, self.index)}",
                where,
                step["id"],
            )
            return
        if self.index[name] > position:
            return
        if step["use"] != "goto":
            self.problem(
                f"jump back to '{name}': {_JUMPS_FORWARD_ONLY}", where, step["id"]
            )
        elif not bounded:
            self.problem(
                f"goto jumps back to '{name}' without a bound, so the loop could run "
                "forever; add max: N to the goto's with",
                where,
                step["id"],
            )

    def _note_call(self, position: int, step: dict[str, Any]) -> None:
        args = step.get("with", {})
        flow = args.get("flow")
        if flow is None:
            return  # reported as a missing `with` key
        if not isinstance(flow, str) or "{" in flow:
            self.problem(
                "the flow a step calls must be a flow name written out, "
                "not an expression",
                f"/steps/{position}/with/flow",
                step["id"],
            )
            return
        inputs = args.get("inputs", {})
        keys = list(inputs) if isinstance(inputs, dict) else None
        item = args.get("as", "item") if step["use"] == "foreach" else None
        pointer = f"/steps/{position}/with/flow"
        self.facts.calls.append(
            CallSite(
                step["id"], flow, pointer, self.document.position(pointer), keys, item
            )
        )

    def _check_graph(self) -> None:
        if len(self.index) != len(self.steps) or self.broken_jumps:
            return  # the graph is not known; the cause is reported already
        edges = step_edges(self.steps)
        seen = reachable(edges)
        for position, step in enumerate(self.steps):
            if position not in seen:
                self.problem(
                    f"step '{step['id']}' can never run: the steps before it always "
                    "stop, fail or jump past it",
                    f"/steps/{position}/id",
                    step["id"],
                )

    def _check_expressions(self, position: int, step: dict[str, Any]) -> None:
        pointer = f"/steps/{position}"
        if isinstance(step.get("if"), str):
            self._walk_templates(step["if"], f"{pointer}/if", step["id"], position)
        if "with" in step:
            self._walk_templates(step["with"], f"{pointer}/with", step["id"], position)

    def _walk_templates(
        self, value: Any, pointer: str, step: str | None, position: int
    ) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self._walk_templates(item, pointer_join(pointer, key), step, position)
        elif isinstance(value, list):
            for number, item in enumerate(value):
                self._walk_templates(item, f"{pointer}/{number}", step, position)
        elif isinstance(value, str) and ("{{" in value or "{%" in value):
            self._check_template(value, pointer, step, position)

    def _check_template(
        self, source: str, pointer: str, step: str | None, position: int
    ) -> None:
        found = scan(source)
        for unsafe in found.problems:
            self.problem(unsafe, pointer, step)
        for reference in found.references:
            message, depth = self._resolve(reference, position, pointer, step, source)
            if message is None:
                continue
            where = self._locate(pointer, source, reference.text(depth))
            self.problems.append(
                FlowError(message, position=where, step=step, pointer=pointer)
            )

    def _locate(self, pointer: str, source: str, needle: str) -> Position:
        return locate(self.document, pointer, source, needle)

    def _resolve(
        self,
        reference: Reference,
        here: int,
        pointer: str,
        step: str | None,
        source: str,
    ) -> tuple[str | None, int | None]:
        """A message for a reference that cannot work, and how much of it to show."""
        root, parts = reference.root, reference.parts
        if root == "secret":
            return _check_secret(reference), 0
        if is_helper(root):
            return None, None
        if root not in ROOTS:
            hint = near(root, ROOTS) or (
                "; expressions may use event, flow, inputs, secret(), steps, trigger"
            )
            return f"unknown name '{root}'{hint}", 0
        if root == "event":
            if not self.stripe:
                return (
                    "event: this flow is not triggered by Stripe events, so there is "
                    "no event; use trigger.outputs or inputs",
                    0,
                )
            return None, None
        if root == "flow":
            if parts and parts[0] != "name":
                return f"{reference.text(1)}: flow has only 'name'", 1
            return None, None
        if root == "inputs":
            return self._check_input(reference)
        if root == "trigger":
            return self._check_trigger(reference, step, pointer, source)
        return self._check_step_reference(reference, here, step, pointer, source)

    def _check_input(self, reference: Reference) -> tuple[str | None, int | None]:
        if not reference.parts:
            return None, None
        name = reference.parts[0]
        declared = self.facts.inputs
        if not declared:
            return (
                f"{reference.text(1)}: the flow declares no inputs; add an "
                "`inputs:` section",
                1,
            )
        if name not in declared:
            return (
                f"{reference.text(1)}: the flow declares no input '{name}'"
                f"{near(str(name), declared) or _listing('inputs', declared)}",
                1,
            )
        return None, None

    def _check_trigger(
        self, reference: Reference, step: str | None, pointer: str, source: str
    ) -> tuple[str | None, int | None]:
        parts = reference.parts
        if parts and parts[0] not in ("outputs", "flow"):
            return (
                f"{reference.text(1)}: trigger has only 'outputs' and 'flow'"
                f"{near(str(parts[0]), ['outputs', 'flow'])}",
                1,
            )
        if self.facts.after is None:
            return (
                "trigger: this flow does not run after another flow (trigger.after), "
                "so trigger.outputs is empty",
                0,
            )
        if len(parts) >= 2 and parts[0] == "outputs":
            self._defer(reference, step, pointer, source, None)
        return None, None

    def _check_step_reference(
        self,
        reference: Reference,
        here: int,
        step: str | None,
        pointer: str,
        source: str,
    ) -> tuple[str | None, int | None]:
        parts = reference.parts
        if not parts:
            return "steps must be followed by a step id, e.g. steps.payment.row", 0
        name = parts[0]
        if name not in self.index:
            return (
                f"{reference.text(1)}: no step '{name}' in this flow"
                f"{near(str(name), self.index)}",
                1,
            )
        target = self.index[name]
        if target == here:
            return f"{reference.text(1)}: a step cannot read its own outputs", 1
        if target > here:
            return (
                f"{reference.text(1)}: step '{name}' runs after this one, so its "
                "outputs are not there yet",
                1,
            )
        if len(parts) < 2:
            return None, None
        used = self.steps[target]
        if used.get("use") not in self.builtins:
            return None, None  # its unknown step type is reported on its own
        if used["use"] == "call":
            if parts[1] != "error":
                callee = (used.get("with") or {}).get("flow")
                self._defer(reference, step, pointer, source, callee)
            return None, None
        schema = self._declared_outputs(used)
        return check_fields(reference, schema, 1, f"step '{name}' ({used['use']})")

    def _declared_outputs(self, step: dict[str, Any]) -> dict[str, Any]:
        builtin = self.builtins[step["use"]]
        args: dict[str, Any] = (
            step["with"] if isinstance(step.get("with"), dict) else {}
        )
        if step["use"] == "set":
            properties: dict[str, Any] = {key: {} for key in args}
            schema: dict[str, Any] = {"properties": properties}
        else:
            schema = builtin.declared_outputs(args)
            schema = {**schema, "properties": dict(schema.get("properties", {}))}
        schema["additionalProperties"] = False
        if step.get("on_error") in ("continue",) or isinstance(
            step.get("on_error"), dict
        ):
            schema["properties"]["error"] = _ERROR_OUTPUT
        return schema

    def _defer(
        self,
        reference: Reference,
        step: str | None,
        pointer: str,
        source: str,
        callee: str | None,
    ) -> None:
        where = self._locate(pointer, source, reference.text(2))
        self.facts.deferred.append(Deferred(reference, step, where, pointer, callee))


_ERROR_OUTPUT = {
    "type": "object",
    "title": "the step's error",
    "properties": {"kind": {}, "message": {}},
    "additionalProperties": False,
}


def check_fields(
    reference: Reference, schema: dict[str, Any], start: int, label: str
) -> tuple[str | None, int | None]:
    """Walk `reference.parts[start:]` through `schema`; a message at the first miss."""
    parts = reference.parts
    for depth in range(start, len(parts)):
        part = parts[depth]
        properties = schema.get("properties")
        if isinstance(part, str) and isinstance(properties, dict):
            if schema.get("additionalProperties") is not False:
                return None, None
            if part not in properties:
                what = (
                    label
                    if depth == start
                    else schema.get("title") or (f"'{reference.text(depth)}'")
                )
                noun = "output" if depth == start else "field"
                listing = ", ".join(sorted(properties)) or "none"
                hint = near(part, properties) or f"; its {noun}s are: {listing}"
                return (
                    f"{reference.text(depth + 1)}: {what} has no {noun} '{part}'{hint}",
                    depth + 1,
                )
            schema = properties[part]
        elif isinstance(part, int) and isinstance(schema.get("items"), dict):
            schema = schema["items"]
        else:
            return None, None
    return None, None


def _check_secret(reference: Reference) -> str | None:
    import re

    arguments = reference.arguments
    if (
        not reference.in_call
        or len(arguments) != 1
        or not isinstance(arguments[0], str)
        or not re.match(_SECRET_NAME, arguments[0])
    ):
        return "secret() takes one quoted name in capitals, e.g. secret('CRM_TOKEN')"
    return None


def _with_problems(
    error: ValidationError, args: dict[str, Any], builtin: Builtin
) -> Iterable[tuple[str, str, bool]]:
    """(message, pointer below `with`, at the key?) for one `with` schema error."""
    path = list(error.absolute_path)
    if _under_template(args, path):
        return
    where = "".join(pointer_join("", part) for part in path)
    field_name = ".".join(["with", *map(str, path)])
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        for key in error.instance:
            if key not in allowed:
                hint = near(key, allowed) or (
                    f"; {builtin.name} takes: {', '.join(allowed)}"
                )
                yield (
                    f"unknown key '{key}' in {field_name}{hint}",
                    pointer_join(where, key),
                    True,
                )
        return
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        for name in missing:
            yield f"{builtin.name} needs {field_name}.{name}", where, False
        return
    yield f"{field_name}: {error.message}", where, False


def _under_template(args: Any, path: list[Any]) -> bool:
    """True when the value at `path` (or one it sits in) is a template string."""
    value = args
    for part in [None, *path]:
        if part is not None:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return False
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            return True
    return False


def _listing(noun: str, names: Iterable[str]) -> str:
    return f"; {noun} are: {', '.join(names)}"


def near(name: str, known: Iterable[Any]) -> str:
    """ "; did you mean 'x'?" for the closest of `known`, else ""."""
    close = get_close_matches(name, [str(item) for item in known], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def locate(document: YamlDocument, pointer: str, source: str, needle: str) -> Position:
    """The position of `needle` inside the string at `pointer`, else of the string."""
    position = document.position(pointer)
    if not needle or "\n" in source or not document.text or not position.line:
        return position
    lines = document.text.splitlines()
    if position.line > len(lines):
        return position
    line = lines[position.line - 1]
    start = position.column - 1
    if line[start : start + 1] in ("'", '"'):
        start += 1
    found = line.find(needle, start)
    if found < 0 or found - start > len(source):
        return position
    return Position(position.file, position.line, found + 1)


# Cross-flow checks.


def check_flows(facts: list[FlowFacts]) -> list[FlowError]:
    """Problems that span flows: names, trigger.after, calls, trigger.outputs."""
    problems: list[FlowError] = []
    by_name: dict[str, FlowFacts] = {}
    # System flows first, so a clash is reported in the user's file.
    for flow in sorted(facts, key=lambda item: not item.system):
        if flow.name in by_name:
            problems.append(
                FlowError(
                    f"two flows are named '{flow.name}' "
                    f"({by_name[flow.name].document.file} and {flow.document.file}); "
                    "rename one",
                    position=flow.document.position("/name"),
                    pointer="/name",
                )
            )
            continue
        by_name[flow.name] = flow
    for flow in by_name.values():
        problems.extend(_check_after(flow, by_name))
        problems.extend(_check_calls(flow, by_name))
        problems.extend(_check_deferred(flow, by_name))
    problems.extend(_check_call_cycles(by_name))
    return problems


def _check_after(flow: FlowFacts, by_name: dict[str, FlowFacts]) -> list[FlowError]:
    if flow.after is None or flow.after in by_name:
        if flow.after is not None and _after_cycle(flow, by_name):
            return [
                FlowError(
                    f"trigger.after makes a cycle: {_after_cycle(flow, by_name)}; "
                    "a flow cannot run after itself",
                    position=flow.document.position("/trigger/after"),
                    pointer="/trigger/after",
                )
            ]
        return []
    return [
        FlowError(
            f"trigger.after names '{flow.after}', which is not a flow"
            f"{near(flow.after, by_name)}",
            position=flow.document.position("/trigger/after"),
            pointer="/trigger/after",
        )
    ]


def _after_cycle(flow: FlowFacts, by_name: dict[str, FlowFacts]) -> str | None:
    chain = [flow.name]
    current = flow.after
    while current is not None and current in by_name:
        chain.append(current)
        if current == flow.name:
            return " → ".join(chain)
        if current in chain[:-1]:
            return None  # a cycle that does not pass through `flow`
        current = by_name[current].after
    return None


def _check_calls(flow: FlowFacts, by_name: dict[str, FlowFacts]) -> list[FlowError]:
    problems = []
    for call in flow.calls:
        callee = by_name.get(call.flow)

        def problem(message: str, site: CallSite = call) -> FlowError:
            return FlowError(
                message, position=site.position, step=site.step, pointer=site.pointer
            )

        if callee is None:
            problems.append(
                problem(f"no flow named '{call.flow}'{near(call.flow, by_name)}")
            )
            continue
        given = set(call.inputs or [])
        if call.item is not None:
            given.add(call.item)
            if call.item not in callee.inputs:
                problems.append(
                    problem(
                        f"{call.flow} declares no input '{call.item}' for the items; "
                        "declare it or set `as`"
                    )
                )
        for name in sorted(given - set(callee.inputs)):
            if name != call.item:
                problems.append(
                    problem(
                        f"{call.flow} declares no input '{name}'"
                        f"{near(name, callee.inputs)}"
                    )
                )
        if call.inputs is None:
            continue
        for name, schema in callee.inputs.items():
            if name not in given and "default" not in schema:
                problems.append(problem(f"{call.flow} needs the input '{name}'"))
    return problems


def _check_deferred(flow: FlowFacts, by_name: dict[str, FlowFacts]) -> list[FlowError]:
    problems = []
    for deferred in flow.deferred:
        other_name = deferred.callee if deferred.callee is not None else flow.after
        other = by_name.get(other_name or "")
        if other is None:
            continue  # reported as a missing flow
        start = 1  # trigger.outputs.<key> and steps.<call>.<key> alike
        outputs = other.outputs or []
        schema = {
            "properties": {key: {} for key in outputs},
            "additionalProperties": False,
        }
        label = f"{other.name}"
        message, _ = check_fields(deferred.reference, schema, start, label)
        if message is not None:
            if not outputs:
                message = (
                    f"{deferred.reference.text(start + 1)}: {other.name} declares no "
                    "outputs; add an `outputs:` section to it"
                )
            problems.append(
                FlowError(
                    message,
                    position=deferred.position,
                    step=deferred.step,
                    pointer=deferred.pointer,
                )
            )
    return problems


def _check_call_cycles(by_name: dict[str, FlowFacts]) -> list[FlowError]:
    problems = []
    for flow in by_name.values():
        for call in flow.calls:
            path = _call_path(call.flow, flow.name, by_name, [flow.name])
            if path is not None:
                problems.append(
                    FlowError(
                        f"calls make a cycle: {' → '.join(path)}; a flow cannot call "
                        "itself, since nothing would bound the depth",
                        position=call.position,
                        step=call.step,
                        pointer=call.pointer,
                    )
                )
    return problems


def _call_path(
    current: str, goal: str, by_name: dict[str, FlowFacts], path: list[str]
) -> list[str] | None:
    if current == goal:
        return [*path, current]
    if current in path or current not in by_name:
        return None
    for call in by_name[current].calls:
        found = _call_path(call.flow, goal, by_name, [*path, current])
        if found is not None:
            return found
    return None


def flow_files(paths: Iterable[Path]) -> list[Path]:
    """The flow files in `paths` (files, or folders searched for *.yaml, *.yml)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]))
        else:
            files.append(path)
    return files


def check_paths(
    paths: Iterable[Path], system_dir: Path | None = None
) -> tuple[int, list[FlowError]]:
    """Check files and folders (with the system flows as context): count, problems."""
    problems: list[FlowError] = []
    facts: list[FlowFacts] = []
    files = flow_files(paths)
    seen = {file.resolve() for file in files}
    context = (
        [file for file in flow_files([system_dir]) if file.resolve() not in seen]
        if system_dir
        else []
    )
    for file, is_context in [
        *((f, False) for f in files),
        *((f, True) for f in context),
    ]:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(
                FlowError(
                    f"cannot read the flow file: {exc}", position=Position(str(file))
                )
            )
            continue
        found, file_problems = check_text(text, str(file), system=is_context)
        if not is_context:
            problems.extend(file_problems)
        if found is not None:
            facts.append(found)
    problems.extend(check_flows(facts))
    return len(files), problems
