"""The errors actionflow raises, one tree with one root.

    ActionflowError            anything the user can act on; never a traceback
    +-- ConfigError            bad configuration or environment
    +-- FlowError              a flow file is wrong (load, schema, check)
    +-- RunError               a step failed while a flow ran
    |   +-- ExpressionError    an expression failed (undefined name, sandbox)
    |   +-- InputError         a step's or a flow's inputs do not fit their schema
    |   +-- AssertionFailed    an `assert` step found its condition false
    |   +-- StepFailed         a `fail` step ended the run on purpose
    |   +-- StepTimeout        a step ran longer than its `timeout_ms`
    |   +-- DatabaseError      the database refused a statement
    +-- PaymentError           a payment action was refused (bad input, state)
    +-- StripeCallError        Stripe refused a request or could not be reached

Every error may carry where it happened: a file, a line and column, a step id
and a JSON pointer into the flow. `str(error)` gives the one-line form
`file:line:col: message [step]` that the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .redact import MASK, SECRET_SHAPES


@dataclass(frozen=True)
class Position:
    """Where in a flow file something is: file, 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class ActionflowError(Exception):
    """The root of every error a user can act on."""

    def __init__(
        self,
        message: str,
        *,
        position: Position | None = None,
        step: str | None = None,
        pointer: str | None = None,
    ) -> None:
        # Messages are printed and logged; a secret quoted from a file or an
        # answer must not go with them.
        message = SECRET_SHAPES.sub(MASK, message)
        super().__init__(message)
        self.message = message
        self.position = position
        self.step = step
        self.pointer = pointer

    def __str__(self) -> str:
        text = self.message
        if self.position is not None:
            text = f"{self.position}: {text}"
        if self.step:
            text = f"{text} [{self.step}]"
        return text


class ConfigError(ActionflowError):
    """The configuration or the environment is wrong."""


class FlowError(ActionflowError):
    """A flow file cannot be loaded or fails a check.

    `problems` holds every problem the checker found (this error is the first).
    """

    problems: list[FlowError]

    def __init__(self, message: str, **where: Any) -> None:
        super().__init__(message, **where)
        self.problems = [self]


class RunError(ActionflowError):
    """A step failed while a flow ran; `kind` is what `retry.errors` matches."""

    kind = "step"


class ExpressionError(RunError):
    """An expression could not be evaluated."""

    kind = "input"


class InputError(RunError):
    """A step's `with` or a flow's inputs do not fit their JSON Schema."""

    kind = "input"


class AssertionFailed(RunError):
    """An `assert` step found its condition false."""

    kind = "assert"


class StepFailed(RunError):
    """A `fail` step ended the run on purpose."""

    kind = "fail"


class StepTimeout(RunError):
    """A step ran longer than its `timeout_ms`."""

    kind = "timeout"


class DatabaseError(RunError):
    """The database refused a statement a step made."""

    kind = "database"


class PaymentError(ActionflowError):
    """A payment action was refused; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class StripeCallError(ActionflowError):
    """Stripe refused a request or could not be reached."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status
