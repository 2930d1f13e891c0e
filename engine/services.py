"""What a flow run may use beyond its database connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .notifyconfig import NotifySettings


@dataclass
class Services:
    """Stripe (None when no secret key is set) and the notification settings."""

    gateway: Any = None
    notify: NotifySettings | None = None
