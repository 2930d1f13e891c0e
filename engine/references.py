"""Read an expression without running it: its references and its unsafe parts.

The checker parses each template with Jinja's own parser and walks the tree.
A reference is a name followed by constant attributes or keys
(`steps.payment.row.amount`, `event.data['object']`); a key that is itself an
expression ends the part that can be checked. Anything that could walk out of
the data into Python internals is refused here, before a run, and again by the
sandbox while running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from jinja2 import TemplateSyntaxError, nodes

from .expressions import SANDBOX

# Names an expression may start from; `secret` only as secret('NAME').
ROOTS = ("event", "flow", "inputs", "secret", "steps", "trigger")
_HELPERS = {"range", "dict", "loop"}
# Attributes that reach interpreter internals without a leading underscore.
_UNSAFE_ATTRIBUTES = {
    "format": "str.format() is not allowed in expressions; join text with ~",
    "format_map": "str.format_map() is not allowed in expressions; join text with ~",
    "mro": "'.mro' is not allowed in expressions: it reaches Python internals",
    "func_globals": "'.func_globals' is not allowed in expressions",
    "f_globals": "'.f_globals' is not allowed in expressions",
    "gi_frame": "'.gi_frame' is not allowed in expressions",
    "gi_code": "'.gi_code' is not allowed in expressions",
    "cr_frame": "'.cr_frame' is not allowed in expressions",
    "tb_frame": "'.tb_frame' is not allowed in expressions",
}
TOO_DEEP = "expression is nested too deeply; split it over several steps"
_STATEMENTS = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_DEFINITIONS = (nodes.Macro, nodes.CallBlock, nodes.Block)


@dataclass(frozen=True)
class Reference:
    """A name and the constant attributes or keys that follow it."""

    root: str
    parts: tuple[str | int, ...]
    in_call: bool = False
    arguments: tuple[object, ...] = ()

    def text(self, depth: int | None = None) -> str:
        """`root.a.b[0]`, up to `depth` parts."""
        shown = self.parts if depth is None else self.parts[:depth]
        text = self.root
        for part in shown:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text


@dataclass
class Scan:
    """What one template holds: its references and its problems."""

    references: list[Reference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@lru_cache(maxsize=4096)
def scan(source: str) -> Scan:
    """Parse `source` and collect references and unsafe constructs.

    Cached: a project repeats the same expressions (`{{ steps.payment.row.id }}`)
    many times. Callers must not change the result.
    """
    result = Scan()
    try:
        tree = SANDBOX.parse(source)
    except TemplateSyntaxError as exc:
        result.problems.append(f"expression syntax error: {exc.message}")
        return result
    except RecursionError:
        result.problems.append(TOO_DEEP)
        return result
    local = {
        node.name
        for node in tree.find_all(nodes.Name)
        if node.ctx in ("store", "param")
    }
    _refuse_unsafe(tree, result.problems)
    if result.problems:
        # One attack is one mistake: report its first unsafe part, nothing more.
        del result.problems[1:]
        return result
    _walk(tree, result, local)
    return result


def _refuse_unsafe(tree: nodes.Template, problems: list[str]) -> None:
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Getattr):
            _check_attribute(node.attr, problems)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str):
                _check_attribute(node.arg.value, problems)
        elif isinstance(node, nodes.Filter):
            _check_filter(node.name, problems)
        elif isinstance(node, nodes.Test) and node.name not in SANDBOX.tests:
            problems.append(
                f"unknown test '{node.name}'{_near(node.name, SANDBOX.tests)}"
            )
        elif isinstance(node, _STATEMENTS):
            problems.append(
                "include, import and extends are not allowed in flow expressions"
            )
        elif isinstance(node, _DEFINITIONS):
            problems.append("macros and blocks are not allowed in flow expressions")


def _check_attribute(name: str, problems: list[str]) -> None:
    if name.startswith("_"):
        problems.append(
            f"'{name}' is a private attribute; expressions may read data, "
            "never Python internals"
        )
    elif name in _UNSAFE_ATTRIBUTES:
        problems.append(_UNSAFE_ATTRIBUTES[name])


def _check_filter(name: str, problems: list[str]) -> None:
    if name == "attr":
        problems.append("the attr filter is not allowed; write a.b or a['b']")
    elif name not in SANDBOX.filters:
        problems.append(f"unknown filter '{name}'{_near(name, SANDBOX.filters)}")


def _near(name: str, known: object) -> str:
    from difflib import get_close_matches

    close = get_close_matches(name, sorted(known), n=1)  # type: ignore[call-overload]
    return f"; did you mean '{close[0]}'?" if close else ""


def _walk(node: nodes.Node, result: Scan, local: set[str]) -> None:
    if isinstance(node, nodes.Call) and _is_name(node.node, "secret"):
        arguments = tuple(
            arg.value if isinstance(arg, nodes.Const) else arg for arg in node.args
        )
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            arguments = (*arguments, None)
        result.references.append(Reference("secret", (), True, arguments))
        for child in [*node.args, *node.kwargs]:
            _walk(child, result, local)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        root, parts, dynamic = _chain(node)
        if root is not None and root not in local:
            result.references.append(Reference(root, parts))
        for child in dynamic:
            _walk(child, result, local)
        return
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in local:
        result.references.append(Reference(node.name, ()))
        return
    for child in node.iter_child_nodes():
        _walk(child, result, local)


def _chain(
    node: nodes.Node,
) -> tuple[str | None, tuple[str | int, ...], list[nodes.Node]]:
    """The root name and constant parts of `a.b['c'][0]`; other nodes to walk."""
    parts: list[str | int] = []
    dynamic: list[nodes.Node] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(
            node.arg.value, str | int
        ):
            parts.append(node.arg.value)
        else:
            parts.clear()  # what follows a computed key cannot be checked
            dynamic.append(node.arg)
        node = node.node
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return node.name, tuple(reversed(parts)), dynamic
    return None, (), [*dynamic, node]


def _is_name(node: nodes.Node, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


def is_helper(name: str) -> bool:
    """True for the few harmless names the sandbox offers besides the roots."""
    return name in _HELPERS
