"""Settings: an optional actionflow.yaml, overridden by environment variables.

Secrets (Stripe keys, webhook secrets, the admin token) are read from the
environment or the file and are never printed, logged or put in an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from actionflow.engine.errors import ConfigError
from actionflow.engine.flow import EXAMPLE_FLOWS
from actionflow.engine.inbox import RetryPolicy
from actionflow.engine.notifyconfig import SmtpSettings, WebhookSettings
from actionflow.engine.orderlink import OrderLink, link_from_config

from . import config_notify

CONFIG_FILE = "actionflow.yaml"
EXAMPLE_TEMPLATES = EXAMPLE_FLOWS / "templates"
DEFAULT_DATABASE = "sqlite:///actionflow.db"
ENVIRONMENT = {
    "ACTIONFLOW_DATABASE_URL": "database_url",
    "ACTIONFLOW_ADMIN_TOKEN": "admin_token",
    "ACTIONFLOW_TOKEN_SECRET": "token_secret",
    "STRIPE_SECRET_KEY": "stripe_secret_key",
    "STRIPE_PUBLISHABLE_KEY": "stripe_publishable_key",
    "STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
    "STRIPE_API_BASE": "stripe_api_base",
}


@dataclass
class Settings:
    """Everything the server and the CLI are configured with."""

    database_url: str = DEFAULT_DATABASE
    admin_token: str | None = None
    # The key that signs user and admin tokens (`actionflow token`).
    token_secret: str | None = None
    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    # Several secrets, comma-separated, while a rotated secret is phased out.
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    flows: list[Path] = field(default_factory=lambda: [EXAMPLE_FLOWS])
    webhook_max_bytes: int = 1_048_576
    webhook_tolerance_seconds: int = 300
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    order_link: OrderLink = field(default_factory=OrderLink)
    templates: Path = EXAMPLE_TEMPLATES
    smtp: SmtpSettings | None = None
    outbound_webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    source: Path | None = None

    @property
    def webhook_secrets(self) -> list[str]:
        """The webhook signing secrets that are valid now."""
        raw = self.stripe_webhook_secret or ""
        return [part.strip() for part in raw.split(",") if part.strip()]


def load_settings(path: Path | None = None) -> Settings:
    """Settings from `path` (or ./actionflow.yaml if present), then the environment."""
    settings = Settings()
    file = path or Path(CONFIG_FILE)
    if path is not None and not file.exists():
        raise ConfigError(f"config file {file} does not exist")
    if file.exists():
        _apply_file(settings, file)
    for variable, name in ENVIRONMENT.items():
        value = os.environ.get(variable)
        if value:
            setattr(settings, name, value)
    settings.retry = _retry_from_environment(settings.retry)
    settings.smtp = config_notify.smtp_from_environment(settings.smtp)
    settings.outbound_webhooks = config_notify.webhooks_from_environment(
        settings.outbound_webhooks
    )
    return settings


RETRY_ENVIRONMENT = {
    "ACTIONFLOW_RETRY_ATTEMPTS": "attempts",
    "ACTIONFLOW_RETRY_BASE_SECONDS": "base_seconds",
    "ACTIONFLOW_RETRY_CAP_SECONDS": "cap_seconds",
}


_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _retry_from_environment(policy: RetryPolicy) -> RetryPolicy:
    """`policy` with any ACTIONFLOW_RETRY_* variable applied over it."""
    changes: dict[str, Any] = {}
    for variable, name in RETRY_ENVIRONMENT.items():
        raw = os.environ.get(variable)
        if not raw:
            continue
        # Plain digits only: float() would also take "nan", "inf" and "1_0".
        pattern = _WHOLE if name == "attempts" else _DECIMAL
        value: float = -1
        if pattern.fullmatch(raw.strip()):
            value = int(raw) if name == "attempts" else float(raw)
        if value <= 0 and not (name == "base_seconds" and value == 0):
            raise ConfigError(f"{variable} must be a positive number, got {raw!r}")
        changes[name] = value
    return replace(policy, **changes) if changes else policy


def _apply_file(settings: Settings, file: Path) -> None:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must be a mapping of settings")
    settings.source = file
    base = file.parent
    known = {
        *ENVIRONMENT.values(),
        "flows",
        "webhook_max_bytes",
        "retry",
        "order_table",
        *config_notify.NOTIFY_SETTINGS,
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in {file}: {', '.join(unknown)}; "
            f"known settings are: {', '.join(sorted(known))}"
        )
    for name in ENVIRONMENT.values():
        if name in data:
            setattr(settings, name, _string(data[name], name, file))
    settings.database_url = _beside(settings.database_url, base)
    if "flows" in data:
        settings.flows = [
            base / _string(item, "flows", file) for item in _list(data["flows"])
        ]
    if "webhook_max_bytes" in data:
        settings.webhook_max_bytes = _positive(
            data["webhook_max_bytes"], "webhook_max_bytes"
        )
    if "retry" in data:
        settings.retry = _retry(data["retry"], file)
    if "order_table" in data:
        settings.order_link = link_from_config(data["order_table"], str(file))
    if "templates" in data:
        settings.templates = base / _string(data["templates"], "templates", file)
    if "smtp" in data:
        settings.smtp = config_notify.smtp_from_file(data["smtp"], file)
    if "outbound_webhooks" in data:
        settings.outbound_webhooks = config_notify.webhooks_from_file(
            data["outbound_webhooks"], file
        )


def _beside(url: str, base: Path) -> str:
    """A relative SQLite path in a config file is relative to that file."""
    prefix = "sqlite:///"
    path = url.removeprefix(prefix)
    if not url.startswith(prefix) or path.startswith("/") or path in ("", ":memory:"):
        return url
    return f"{prefix}{(base / path).resolve()}"


def _string(value: Any, name: str, file: Path) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"setting {name} in {file} must be a string")
    return value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _positive(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"setting {name} must be a positive integer, got {value!r}")
    return value


def _retry(value: Any, file: Path) -> RetryPolicy:
    if not isinstance(value, dict) or set(value) - {
        "attempts",
        "base_seconds",
        "cap_seconds",
    }:
        raise ConfigError(
            f"setting retry in {file} takes attempts, base_seconds and cap_seconds"
        )
    return RetryPolicy(
        attempts=_positive(value.get("attempts", 8), "retry.attempts"),
        base_seconds=_positive(value.get("base_seconds", 2), "retry.base_seconds"),
        cap_seconds=_positive(value.get("cap_seconds", 3600), "retry.cap_seconds"),
    )
