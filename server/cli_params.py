"""Parameter types and error handling shared by every `actionflow` command.

Numbers on a command line are read strictly: ASCII digits only (click's INT
would take "1_000" or another script's digits), and only within the range the
database can hold, so a mistyped id is a usage error (exit 2) instead of a
traceback from the database driver. Errors raised while a command runs that a
user can act on become `Error: …` lines with exit status 1.
"""

from __future__ import annotations

from typing import Any

import click

from actionflow.engine.errors import ActionflowError

# Row ids are 32-bit integers on PostgreSQL (the server's MAX_ID is the same).
MAX_ID = 2**31 - 1
# Stripe's largest amount in any currency has twelve digits.
MAX_AMOUNT = 999_999_999_999


class StrictInt(click.ParamType):  # type: ignore[type-arg]
    """A whole number written with ASCII digits, from `least` to `most`."""

    name = "integer"

    def __init__(self, least: int, most: int, what: str) -> None:
        self.least = least
        self.most = most
        self.what = what

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not (text.isascii() and text.isdigit()):
                self.fail(f"{self._expected()}, got {text[:40]!r}", param, ctx)
            number = int(text)
        if not self.least <= number <= self.most:
            self.fail(f"{self._expected()}, got {str(number)[:40]}", param, ctx)
        return number

    def _expected(self) -> str:
        return f"{self.what} must be a whole number from {self.least} to {self.most}"


ROW_ID = StrictInt(1, MAX_ID, "a row id")
LIMIT = StrictInt(1, MAX_ID, "a limit")
AMOUNT = StrictInt(1, MAX_AMOUNT, "an amount in minor units")
PORT = StrictInt(1, 65_535, "a TCP port")


def parse_row_id(text: str) -> int | None:
    """`text` as a row id if it is written as one; None if it is not a number."""
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    if not 0 < number <= MAX_ID:
        raise click.BadParameter(
            f"{ROW_ID._expected()}, got {text[:40]}", param_hint="ID"
        )
    return number


class ErrorReportingGroup(click.Group):
    """A command group that reports the errors a user can act on, not tracebacks.

    Every subcommand runs inside the top group's invoke, so translating here
    covers them all: an ActionflowError (bad config, unreachable database,
    refused input) becomes `Error: message`, exit 1.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ActionflowError as exc:
            raise click.ClickException(str(exc)) from None
