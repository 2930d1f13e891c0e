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
# Given a step's literal `with`, narrower schemas for some output properties.
OutputsFor = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass
class Builtin:
    """A built-in step: its name in `use`, its contracts and its function."""

    name: str
    summary: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    run: StepFunction
    effect: bool = False
    outputs_for: OutputsFor | None = None
    validator: Draft202012Validator = field(init=False, repr=False)
    values_free: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.validator = Draft202012Validator(self.inputs)
        # A schema that only names its keys (like `set`'s) is fully checked
        # before the run: the keys are written out in the flow, values are free.
        self.values_free = set(self.inputs) <= _KEYS_ONLY

    def declared_outputs(self, literal_with: dict[str, Any]) -> dict[str, Any]:
        """The output schema for a step whose literal `with` is `literal_with`."""
        narrowed = self.outputs_for(literal_with) if self.outputs_for else None
        if not narrowed:
            return self.outputs
        properties = {**self.outputs.get("properties", {}), **narrowed}
        return {**self.outputs, "properties": properties}


_KEYS_ONLY = {"type", "description", "propertyNames"}
REGISTRY: dict[str, Builtin] = {}


def builtin(
    name: str,
    summary: str,
    *,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    effect: bool = False,
    outputs_for: OutputsFor | None = None,
) -> Callable[[StepFunction], StepFunction]:
    """Register the decorated function as the built-in step `name`."""

    def register(function: StepFunction) -> StepFunction:
        REGISTRY[name] = Builtin(
            name, summary, inputs, outputs, function, effect, outputs_for
        )
        return function

    return register


def load_builtins() -> dict[str, Builtin]:
    """Import every module of built-in steps and return the registry."""
    from . import control, money, notify, stripe, table  # noqa: F401  (they register)

    return REGISTRY
