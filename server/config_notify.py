"""The notification settings of actionflow.yaml: templates, smtp, outbound_webhooks.

The SMTP password and the webhook signing secret come from the environment
only (ACTIONFLOW_SMTP_PASSWORD, ACTIONFLOW_WEBHOOK_SIGNING_SECRET); a config
file that holds one is refused, since config files end up in repositories.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from actionflow.engine.errors import ConfigError
from actionflow.engine.notifyconfig import TLS_MODES, SmtpSettings, WebhookSettings

NOTIFY_SETTINGS = ("templates", "smtp", "outbound_webhooks")
SMTP_KEYS = {"host", "port", "tls", "username", "from", "timeout_seconds"}
WEBHOOK_KEYS = {"allow_hosts", "allow_private", "timeout_seconds"}
SECRET_KEYS = {
    "password": "ACTIONFLOW_SMTP_PASSWORD",
    "secret": "ACTIONFLOW_WEBHOOK_SIGNING_SECRET",
    "signing_secret": "ACTIONFLOW_WEBHOOK_SIGNING_SECRET",
}


def smtp_from_file(value: Any, file: Path) -> SmtpSettings:
    """The `smtp` section of `file`."""
    section = _section(value, "smtp", SMTP_KEYS, file)
    if not isinstance(section.get("host"), str) or not section["host"]:
        raise ConfigError(f"setting smtp.host in {file} must be a host name")
    return _checked_smtp(
        SmtpSettings(
            host=section["host"],
            port=_port(section.get("port", 587)),
            tls=str(section.get("tls", "starttls")),
            username=_optional_string(section.get("username"), "smtp.username"),
            sender=str(section.get("from", "actionflow@localhost")),
            timeout_seconds=_seconds(section.get("timeout_seconds", 10), "smtp"),
        )
    )


def webhooks_from_file(value: Any, file: Path) -> WebhookSettings:
    """The `outbound_webhooks` section of `file`."""
    section = _section(value, "outbound_webhooks", WEBHOOK_KEYS, file)
    hosts = section.get("allow_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(
            f"setting outbound_webhooks.allow_hosts in {file} must be a list of "
            "host names, e.g. [hooks.example.com, '*.example.org']"
        )
    allow_private = section.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise ConfigError(
            f"setting outbound_webhooks.allow_private in {file} must be true or false"
        )
    return WebhookSettings(
        allow_hosts=tuple(host.lower() for host in hosts),
        allow_private=allow_private,
        timeout_seconds=_seconds(
            section.get("timeout_seconds", 10), "outbound_webhooks"
        ),
    )


def smtp_from_environment(smtp: SmtpSettings | None) -> SmtpSettings | None:
    """`smtp` with the ACTIONFLOW_SMTP_* variables applied."""
    env = os.environ
    host = env.get("ACTIONFLOW_SMTP_HOST") or (smtp.host if smtp else None)
    if host is None:
        return None
    smtp = smtp or SmtpSettings(host=host)
    changes: dict[str, Any] = {"host": host}
    if env.get("ACTIONFLOW_SMTP_PORT"):
        changes["port"] = _port(env["ACTIONFLOW_SMTP_PORT"])
    if env.get("ACTIONFLOW_SMTP_TLS"):
        changes["tls"] = env["ACTIONFLOW_SMTP_TLS"]
    if env.get("ACTIONFLOW_SMTP_USERNAME"):
        changes["username"] = env["ACTIONFLOW_SMTP_USERNAME"]
    if env.get("ACTIONFLOW_SMTP_FROM"):
        changes["sender"] = env["ACTIONFLOW_SMTP_FROM"]
    if env.get("ACTIONFLOW_SMTP_PASSWORD"):
        changes["password"] = env["ACTIONFLOW_SMTP_PASSWORD"]
    return _checked_smtp(replace(smtp, **changes))


def webhooks_from_environment(webhooks: WebhookSettings) -> WebhookSettings:
    """`webhooks` with ACTIONFLOW_WEBHOOK_SIGNING_SECRET applied."""
    secret = os.environ.get("ACTIONFLOW_WEBHOOK_SIGNING_SECRET")
    return replace(webhooks, secret=secret) if secret else webhooks


def _section(value: Any, name: str, keys: set[str], file: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting {name} in {file} must be a mapping")
    for key in sorted(set(value) & set(SECRET_KEYS)):
        raise ConfigError(
            f"setting {name}.{key} in {file} is refused: keep secrets out of "
            f"config files and set {SECRET_KEYS[key]} in the environment"
        )
    unknown = sorted(set(value) - keys)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in {name} in {file}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(keys))}"
        )
    return value


def _checked_smtp(smtp: SmtpSettings) -> SmtpSettings:
    if smtp.tls not in TLS_MODES:
        raise ConfigError(
            f"smtp tls mode {smtp.tls!r} is unknown; use one of {', '.join(TLS_MODES)}"
        )
    if "@" not in smtp.sender:
        raise ConfigError(
            f"smtp from address {smtp.sender!r} has no @; give an address such as "
            "'Shop <shop@example.com>'"
        )
    return smtp


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if isinstance(value, bool) or not 0 < port < 65536:
        raise ConfigError(f"smtp port must be a number from 1 to 65535, got {value!r}")
    return port


def _seconds(value: Any, section: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            f"setting {section}.timeout_seconds must be a positive number, "
            f"got {value!r}"
        )
    return float(value)


def _optional_string(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"setting {name} must be a string")
