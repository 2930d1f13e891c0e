"""Notification steps: notify.email, notify.webhook (through the outbox), notify.log.

The email and webhook steps send nothing themselves. They check and render
what is to be sent, then add it to the outbox in the run's transaction under
the idempotency key `<run key>:<flow>:<step>` (plus the step's own `key`, for
a step that sends more than one message per run). The outbox sender sends it
after the run commits, at most once; see engine/outbox.py.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from ..errors import RunError
from ..jsonvalues import dumps
from ..mailtemplates import MailTemplates
from ..notifyconfig import NotifySettings
from ..outbox import DeliveryError, Queued, enqueue
from ..services import DryRunCapture
from ..webhooksend import check_destination
from . import builtin

if TYPE_CHECKING:
    from ..runner import StepContext

log = logging.getLogger("actionflow.notify")

ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
SECRET_FIELD = re.compile(r"password|secret|token|authorization", re.IGNORECASE)

_QUEUED = {
    "type": "object",
    "required": ["key", "outbox_id", "status", "duplicate"],
    "properties": {
        "key": {"type": "string", "description": "The message's idempotency key."},
        "outbox_id": {"type": "integer"},
        "status": {
            "type": "string",
            "description": "pending, or the state of the message queued before.",
        },
        "duplicate": {
            "type": "boolean",
            "description": "True when a run with this key queued it already.",
        },
    },
}
_KEY = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._:-]{1,100}$",
    "description": "Tells apart several messages of one step in one run.",
}


@builtin(
    "notify.email",
    "Queue a mail rendered from the project's templates; sent once, after commit.",
    inputs={
        "type": "object",
        "required": ["to"],
        "properties": {
            "to": {
                "description": "One address or a list of addresses.",
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ],
            },
            "template": {
                "type": "string",
                "description": "NAME: NAME.subject.txt, and NAME.txt and/or NAME.html.",
            },
            "subject_template": {"type": "string"},
            "body_template": {
                "type": "string",
                "description": "A .txt file, or .html (values are escaped).",
            },
            "data": {
                "type": "object",
                "description": "The templates' variables; values are never templates.",
            },
            "key": _KEY,
        },
        "additionalProperties": False,
    },
    outputs=_QUEUED,
    effect=True,
)
def email_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    settings = _settings(context, "notify.email")
    if settings.templates is None:
        raise RunError(
            "notify.email needs a templates folder; set `templates` in actionflow.yaml"
        )
    recipients = _recipients(args["to"])
    templates = MailTemplates(settings.templates)
    subject_name, bodies = _template_names(args, templates)
    data = json.loads(dumps(args.get("data") or {}))
    mail: dict[str, Any] = {"to": recipients, "text": None, "html": None}
    mail["subject"] = " ".join(templates.render(subject_name, data).split())
    for name in bodies:
        kind = "html" if name.endswith((".html", ".htm")) else "text"
        mail[kind] = templates.render(name, data)
    return _queue(context, args, "email", ", ".join(recipients), mail)


@builtin(
    "notify.webhook",
    "Queue a signed JSON POST to an allowed URL; sent once, after commit.",
    inputs={
        "type": "object",
        "required": ["url", "body"],
        "properties": {
            "url": {"type": "string", "minLength": 1},
            "body": {"description": "Any JSON value, posted as the request body."},
            "key": _KEY,
        },
        "additionalProperties": False,
    },
    outputs=_QUEUED,
    effect=True,
)
def webhook_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    settings = _settings(context, "notify.webhook")
    note = None
    try:
        check_destination(args["url"], settings.webhooks)
    except DeliveryError as exc:
        capture = _capture(context)
        if capture is None or capture.webhooks_configured:
            raise RunError(exc.message) from None
        note = (
            "outbound_webhooks.allow_hosts is not configured: the dry run let "
            f"this through, a real run would fail: {exc.message}"
        )
    call = {"url": args["url"], "body": dumps(args["body"])}
    return _queue(context, args, "webhook", args["url"], call, note=note)


@builtin(
    "notify.log",
    "Write `message` and `fields` (sorted key=value) as one line to the log.",
    inputs={
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "minLength": 1},
            "fields": {
                "type": "object",
                "description": "Values logged as sorted key=value pairs.",
                "additionalProperties": {
                    "type": ["string", "integer", "boolean", "null"]
                },
            },
        },
        "additionalProperties": False,
    },
    outputs={
        "type": "object",
        "required": ["line"],
        "properties": {"line": {"type": "string"}},
    },
)
def log_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
    fields = args.get("fields") or {}
    pairs = [f"message={_logged(args['message'])}"]
    for name in sorted(fields):
        value = "***" if SECRET_FIELD.search(name) else _logged(fields[name])
        pairs.append(f"{_logged(name)}={value}")
    line = " ".join(pairs)
    capture = _capture(context)
    if capture is not None:
        capture.notifications.append(
            {"kind": "log", "flow": context.flow_name, "step": context.step_id}
            | {"line": line}
        )
        return {"line": line}
    log.info("flow=%s step=%s %s", context.flow_name, context.step_id, line)
    return {"line": line}


def _capture(context: StepContext) -> DryRunCapture | None:
    capture = getattr(context.services, "dry_run", None)
    return capture if isinstance(capture, DryRunCapture) else None


def _settings(context: StepContext, step: str) -> NotifySettings:
    settings = getattr(context.services, "notify", None)
    if not isinstance(settings, NotifySettings):
        raise RunError(
            f"{step} cannot run here: this run was started without notification "
            "settings (a test without services)"
        )
    return settings


def _recipients(to: str | list[str]) -> list[str]:
    recipients = [to] if isinstance(to, str) else to
    for address in recipients:
        if not ADDRESS.match(address):
            raise RunError(
                f"to: {address!r} is not an email address; give one address "
                "per item, like buyer@example.com"
            )
    return recipients


def _template_names(
    args: dict[str, Any], templates: MailTemplates
) -> tuple[str, list[str]]:
    if "template" in args:
        if "subject_template" in args or "body_template" in args:
            raise RunError(
                "give either `template` or `subject_template` and `body_template`, "
                "not both"
            )
        name = args["template"]
        bodies = [
            candidate
            for candidate in (f"{name}.txt", f"{name}.html")
            if templates.exists(candidate)
        ]
        if not bodies:
            raise RunError(
                f"template {name!r} has no body: add {name}.txt or {name}.html to "
                f"the templates folder {templates.folder}"
            )
        return f"{name}.subject.txt", bodies
    if "subject_template" not in args or "body_template" not in args:
        raise RunError(
            "give `template` (a name), or both `subject_template` and `body_template`"
        )
    return args["subject_template"], [args["body_template"]]


def _queue(
    context: StepContext,
    args: dict[str, Any],
    kind: str,
    destination: str,
    payload: dict[str, Any],
    *,
    note: str | None = None,
) -> dict[str, Any]:
    if not context.run_key:
        raise RunError(
            f"notify.{kind} needs the run's key (the event or action it is for) to "
            "send at most once; this run has none"
        )
    key = f"{context.run_key}:{context.flow_name}:{context.step_id}"
    if "key" in args:
        key += f":{args['key']}"
    queued = enqueue(
        context.connection,
        key=key,
        kind=kind,
        flow=context.flow_name,
        step=context.step_id,
        destination=destination,
        payload=payload,
    )
    capture = _capture(context)
    if capture is not None:
        capture.notifications.append(
            _described(context, kind, key, payload, queued, note)
        )
    return {
        "key": key,
        "outbox_id": queued.id,
        "status": queued.status,
        "duplicate": queued.duplicate,
    }


def _described(
    context: StepContext,
    kind: str,
    key: str,
    payload: dict[str, Any],
    queued: Queued,
    note: str | None,
) -> dict[str, Any]:
    """What a dry run shows of a queued message: everything but secrets."""
    entry: dict[str, Any] = {
        "kind": kind,
        "flow": context.flow_name,
        "step": context.step_id,
        "key": key,
    }
    if kind == "email":
        entry |= {name: payload[name] for name in ("to", "subject", "text", "html")}
    else:
        entry |= {"url": payload["url"], "payload": json.loads(payload["body"])}
    if queued.duplicate:
        entry["duplicate"] = True
        note = (
            f"a run before queued this key already (status {queued.status}); "
            "it is not queued or sent again"
        )
    if note:
        entry["note"] = note
    return entry


def _logged(value: Any) -> str:
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if text == "" or re.search(r"[\s\"=]", text):
        return json.dumps(text)
    return text
