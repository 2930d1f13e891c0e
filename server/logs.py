"""Logging for operators: one key=value line per record, with secrets masked.

The mask is applied to the whole formatted record, tracebacks included, so a
library error that quotes a key, a URL with its password or an event's client
secret never reaches a log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from actionflow.engine.redact import redact

FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


class RedactingFormatter(logging.Formatter):
    """A formatter that masks secret values and secret-shaped strings."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self.known: set[str] = set()

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.known)


_formatter = RedactingFormatter()


def setup(level: int = logging.INFO) -> None:
    """Send every logger's records to stderr through the redacting formatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def protect(values: Iterable[str | None]) -> None:
    """Mask these values (the configured secrets) in every later log line."""
    _formatter.known.update(value for value in values if value)
