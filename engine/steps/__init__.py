"""Built-in steps: each declares the JSON Schema of its `with` and its outputs.

A step is a function `run(context, args) -> outputs`. It reads and writes only
through `context`: the flow's database connection, the services (Stripe), and
`context.stop(reason)` to end the run early without failing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

if TYPE_CHECKING:
    from ..runner import StepContext

StepFunction = Callable[["StepContext", dict[str, Any]], dict[str, Any]]


@dataclass
class Builtin:
    """A built-in step: its name in `use`, its contracts and its function."""

    name: str
    summary: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    run: StepFunction
    effect: bool = False
    validator: Draft202012Validator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.validator = Draft202012Validator(self.inputs)


REGISTRY: dict[str, Builtin] = {}


def builtin(
    name: str,
    summary: str,
    *,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    effect: bool = False,
) -> Callable[[StepFunction], StepFunction]:
    """Register the decorated function as the built-in step `name`."""

    def register(function: StepFunction) -> StepFunction:
        REGISTRY[name] = Builtin(name, summary, inputs, outputs, function, effect)
        return function

    return register


def load_builtins() -> dict[str, Builtin]:
    """Import every module of built-in steps and return the registry."""
    from . import control, notify, table  # noqa: F401  (modules register themselves)

    return REGISTRY
