"""Secrets in flows: reachable only through secret('NAME'), redacted when shown.

A flow reads a secret with `{{ secret('CRM_TOKEN') }}`; the value comes from
the environment variable ACTIONFLOW_SECRET_CRM_TOKEN (or the mapping the
caller passes). Every value handed out is remembered for the run, and the
run's error, trace, outputs and recorded changes have it replaced by
[redacted] before anyone sees them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ExpressionError

ENV_PREFIX = "ACTIONFLOW_SECRET_"
REDACTED = "[redacted]"
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class Secrets:
    """The secrets one run may read, and the values it has read."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = values
        self.revealed: set[str] = set()

    def lookup(self, name: Any) -> str:
        """The secret `name`; an ExpressionError when it is not set."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ExpressionError(
                "secret() takes one quoted name in capitals, e.g. secret('CRM_TOKEN')"
            )
        if self.values is not None:
            value = self.values.get(name)
        else:
            value = os.environ.get(ENV_PREFIX + name)
        if not value:
            raise ExpressionError(
                f"secret '{name}' is not set; set the environment variable "
                f"{ENV_PREFIX}{name}"
            )
        self.revealed.add(value)
        return value

    def redact(self, value: Any) -> Any:
        """`value` with every revealed secret replaced, inside strings at any depth."""
        if not self.revealed:
            return value
        if isinstance(value, str):
            for secret in sorted(self.revealed, key=len, reverse=True):
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {key: self.redact(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(item) for item in value]
        return value
