"""Expressions in flows: Jinja2 in its immutable sandbox, compiled once per load.

A string that is exactly one `{{ ... }}` evaluates to a native value (an int, a
dict, a bool); any other string containing `{{` or `{%` renders to a string;
everything else is a constant. Undefined names and keys are errors, never an
empty string. Values produced by a render are never rendered again, so text
that arrives in an event or an action stays data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ExpressionError, FlowError, Position
from .yamlfile import pointer_join

_WHOLE = re.compile(r"^\s*\{\{(?P<body>.*)\}\}\s*$", re.DOTALL)


class _Undefined(StrictUndefined):
    """Strict: any use of an undefined value raises; `is defined` still works."""

    __slots__ = ()


class FlowSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with one convenience: `a.b` on a dict prefers the key `b`.

    Stripe objects have keys such as `items` and `values` that would otherwise
    resolve to the dict's methods.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        if isinstance(obj, Mapping) and not hasattr(dict, attribute):
            return self.undefined(
                hint=f"no key '{attribute}'; {_keys_hint(obj)}",
                obj=obj,
                name=attribute,
            )
        return super().getattr(obj, attribute)


def _keys_hint(obj: Mapping[str, Any]) -> str:
    keys = sorted(str(key) for key in obj)
    if not keys:
        return "the mapping is empty"
    shown = ", ".join(keys[:12])
    more = f", … ({len(keys)} keys)" if len(keys) > 12 else ""
    return f"keys are: {shown}{more}"


SANDBOX = FlowSandbox(undefined=_Undefined, autoescape=False)
# Jinja's helper objects are a known route to Python internals; flows need none.
for _name in ("cycler", "joiner", "lipsum", "namespace"):
    SANDBOX.globals.pop(_name, None)


class Compiled:
    """A value from a flow with its templates compiled; `render` evaluates it."""

    def __init__(self, pointer: str) -> None:
        self.pointer = pointer

    def render(self, context: Mapping[str, Any]) -> Any:
        raise NotImplementedError


class Constant(Compiled):
    def __init__(self, pointer: str, value: Any) -> None:
        super().__init__(pointer)
        self.value = value

    def render(self, context: Mapping[str, Any]) -> Any:
        return self.value


class Expression(Compiled):
    """One whole `{{ ... }}`: evaluates to a native value."""

    def __init__(self, pointer: str, source: str, body: str) -> None:
        super().__init__(pointer)
        self.source = source
        self.body = body
        self._call: Callable[..., Any] = SANDBOX.compile_expression(
            body, undefined_to_none=False
        )
        # What Jinja's expression call does, less its per-call copies of the
        # globals (a ChainMap it walks twice): the hot path of every run.
        # (`_template` is Jinja's own attribute; without it, call as usual.)
        self._template = getattr(self._call, "_template", None)
        self._globals = dict(self._template.globals) if self._template else {}

    def render(self, context: Mapping[str, Any]) -> Any:
        value = _guarded(self, lambda: self._evaluate(context))
        if isinstance(value, Undefined):
            _guarded(self, lambda: str(value))
        return value

    def _evaluate(self, context: Mapping[str, Any]) -> Any:
        template = self._template
        if template is None:
            return self._call(**context)
        state = SANDBOX.context_class(
            SANDBOX,
            {**self._globals, **context},
            template.name,
            template.blocks,
            globals=self._globals,
        )
        for _ in template.root_render_func(state):
            pass
        return state.vars["result"]


class Template(Compiled):
    """A string with templates inside: renders to a string."""

    def __init__(self, pointer: str, source: str) -> None:
        super().__init__(pointer)
        self.source = source
        self._template = SANDBOX.from_string(source)
        self._globals = dict(self._template.globals)

    def render(self, context: Mapping[str, Any]) -> Any:
        return _guarded(self, lambda: self._evaluate(context))

    def _evaluate(self, context: Mapping[str, Any]) -> str:
        # Template.render, less its per-call copies of the globals.
        template = self._template
        state = SANDBOX.context_class(
            SANDBOX,
            {**self._globals, **context},
            template.name,
            template.blocks,
            globals=self._globals,
        )
        return str(SANDBOX.concat(template.root_render_func(state)))


class MappingValue(Compiled):
    def __init__(self, pointer: str, items: dict[str, Compiled]) -> None:
        super().__init__(pointer)
        self.items = items

    def render(self, context: Mapping[str, Any]) -> Any:
        return {key: value.render(context) for key, value in self.items.items()}


class ListValue(Compiled):
    def __init__(self, pointer: str, items: list[Compiled]) -> None:
        super().__init__(pointer)
        self.items = items

    def render(self, context: Mapping[str, Any]) -> Any:
        return [value.render(context) for value in self.items]


def is_constant(compiled: Compiled) -> bool:
    """True when `compiled` holds no template at any depth."""
    if isinstance(compiled, MappingValue):
        return all(is_constant(item) for item in compiled.items.values())
    if isinstance(compiled, ListValue):
        return all(is_constant(item) for item in compiled.items)
    return isinstance(compiled, Constant)


def compile_value(
    value: Any, pointer: str, position: Callable[[str], Position]
) -> Compiled:
    """Compile every template inside `value`; syntax errors carry their position."""
    if isinstance(value, dict):
        return MappingValue(
            pointer,
            {
                key: compile_value(item, pointer_join(pointer, key), position)
                for key, item in value.items()
            },
        )
    if isinstance(value, list):
        return ListValue(
            pointer,
            [
                compile_value(item, pointer_join(pointer, index), position)
                for index, item in enumerate(value)
            ],
        )
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return _compile_string(value, pointer, position)
    return Constant(pointer, value)


def _compile_string(
    value: str, pointer: str, position: Callable[[str], Position]
) -> Compiled:
    whole = _WHOLE.match(value)
    try:
        if whole and "{{" not in whole["body"] and "}}" not in whole["body"]:
            return Expression(pointer, value, whole["body"])
        return Template(pointer, value)
    except TemplateSyntaxError as exc:
        raise FlowError(
            f"expression syntax error: {exc.message}",
            position=position(pointer),
            pointer=pointer,
        ) from None
    except RecursionError:
        raise FlowError(
            "expression is nested too deeply; split it over several steps",
            position=position(pointer),
            pointer=pointer,
        ) from None


def _guarded(compiled: Compiled, call: Callable[[], Any]) -> Any:
    """Run `call`, turning Jinja's errors into an ExpressionError at `compiled`."""
    try:
        return call()
    except UndefinedError as exc:
        raise ExpressionError(
            f"undefined value: {exc.message}", pointer=compiled.pointer
        ) from None
    except SecurityError as exc:
        raise ExpressionError(
            f"expression refused by the sandbox: {exc}", pointer=compiled.pointer
        ) from None
    except ExpressionError as exc:  # raised by a flow function, e.g. secret()
        if exc.pointer is None:
            exc.pointer = compiled.pointer
        raise
    except Exception as exc:  # an expression may raise anything: 1/0, int('x')
        raise ExpressionError(
            f"expression failed: {type(exc).__name__}: {exc}", pointer=compiled.pointer
        ) from None
