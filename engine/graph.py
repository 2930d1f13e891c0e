"""The step graph of a flow: which step can run after which.

Built from the flow's plain data (literal jump targets only), so the checker
can use it on files that do not compile, and `actionflow graph` can draw it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

END = -1  # the target of an edge that ends the run


@dataclass(frozen=True)
class Edge:
    """A way from step `source` to step `target` (END: the run ends)."""

    source: int
    target: int
    label: str = ""


def jump_target(value: Any) -> str | None:
    """A literal step id, or None for anything else (a template, a number)."""
    if isinstance(value, str) and "{" not in value:
        return value
    return None


def step_edges(steps: list[dict[str, Any]]) -> list[Edge]:
    """Every edge of the graph, in step order."""
    index = {step.get("id"): position for position, step in enumerate(steps)}
    edges: list[Edge] = []
    for position, step in enumerate(steps):
        edges.extend(_edges_of(position, step, index, len(steps)))
    return edges


def _edges_of(
    position: int, step: dict[str, Any], index: dict[Any, int], count: int
) -> Iterable[Edge]:
    use = step.get("use")
    args: dict[str, Any] = step["with"] if isinstance(step.get("with"), dict) else {}
    guarded = "if" in step and step["if"] is not True
    after = position + 1 if position + 1 < count else END
    falls_through = True

    def to(target: Any, label: str) -> Iterable[Edge]:
        name = jump_target(target)
        if name in index:
            yield Edge(position, index[name], label)

    if use in ("stop", "fail"):
        yield Edge(position, END, use)
        falls_through = guarded
    elif use == "goto":
        yield from to(
            args.get("step"), f"goto (max {args['max']})" if "max" in args else "goto"
        )
        falls_through = guarded or "max" in args
    elif use == "switch":
        cases: dict[str, Any] = args.get("cases") or {}
        if not isinstance(cases, dict):
            cases = {}
        for case, target in cases.items():
            yield from to(target, f"case {case}")
        if "default" in args:
            yield from to(args["default"], "default")
        falls_through = guarded or "default" not in args
    on_error = step.get("on_error")
    if isinstance(on_error, dict):
        yield from to(on_error.get("goto"), "on error")
    if falls_through:
        yield Edge(position, after, "")


def reachable(edges: list[Edge]) -> set[int]:
    """The steps a run can reach from the first one."""
    following: dict[int, list[int]] = {}
    for edge in edges:
        following.setdefault(edge.source, []).append(edge.target)
    seen = {0}
    todo = [0]
    while todo:
        for target in following.get(todo.pop(), []):
            if target != END and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def mermaid(name: str, steps: list[dict[str, Any]], extensions: list[str]) -> str:
    """The flow as a Mermaid flowchart."""
    lines = ["flowchart TD", f'  start(["{name}"])']
    for position, step in enumerate(steps):
        lines.append(f'  s{position}["{_label(step)}"]')
    lines.append("  finish([end])")
    if steps:
        lines.append("  start --> s0")
    for edge in step_edges(steps):
        target = "finish" if edge.target == END else f"s{edge.target}"
        arrow = "-.->" if edge.label == "on error" else "-->"
        text = f"|{edge.label}|" if edge.label else ""
        lines.append(f"  s{edge.source} {arrow}{text} {target}")
    for extension in extensions:
        node = f"ext_{extension}"
        lines.append(f'  {node}[["after: {extension}"]]')
        lines.append(f"  finish -.->|succeeded| {node}")
    return "\n".join(lines) + "\n"


def dot(name: str, steps: list[dict[str, Any]], extensions: list[str]) -> str:
    """The flow as a Graphviz digraph."""
    lines = [
        f'digraph "{name}" {{',
        "  rankdir=TB;",
        '  start [shape=oval, label="' + name + '"];',
    ]
    for position, step in enumerate(steps):
        lines.append(f'  s{position} [shape=box, label="{_label(step)}"];')
    lines.append('  finish [shape=oval, label="end"];')
    if steps:
        lines.append("  start -> s0;")
    for edge in step_edges(steps):
        target = "finish" if edge.target == END else f"s{edge.target}"
        style = ", style=dashed" if edge.label == "on error" else ""
        lines.append(f'  s{edge.source} -> {target} [label="{edge.label}"{style}];')
    for extension in extensions:
        lines.append(
            f'  "ext_{extension}" [shape=box, peripheries=2, '
            f'label="after: {extension}"];'
        )
        lines.append(
            f'  finish -> "ext_{extension}" [label="succeeded", style=dashed];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(step: dict[str, Any]) -> str:
    text = f"{step.get('id')}: {step.get('use')}"
    if "if" in step:
        text += " (if)"
    if "retry" in step:
        text += " (retry)"
    return text.replace('"', "'")
