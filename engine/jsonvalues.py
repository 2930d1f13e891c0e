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
