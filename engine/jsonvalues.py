"""JSON for values that flows produce: exact decimals, timestamps as ISO text."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} cannot be stored as JSON")


def dumps(value: Any) -> str:
    """Compact JSON for storing `value`; decimals keep every digit."""
    return json.dumps(value, default=_default, separators=(",", ":"), sort_keys=True)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(text: str | bytes, *, exact: bool = False) -> Any:
    """JSON text as values; ValueError for anything that is not plain JSON.

    NaN and Infinity (which Python's parser takes by default) are refused, and
    so is nesting too deep for the parser (a RecursionError, turned into a
    ValueError). With `exact`, numbers with a fraction become Decimal.
    """
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=Decimal if exact else None,
        )
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
