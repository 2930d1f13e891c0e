"""`actionflow init DIR`: scaffold a project that runs as it is."""

from __future__ import annotations

from pathlib import Path

import click

from actionflow.engine.flow import EXAMPLE_FLOWS, SCHEMA_FILE

from .config import EXAMPLE_TEMPLATES

SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/flow.schema.json"

CONFIG = """\
# actionflow configuration. Environment variables override every setting here;
# keep secrets (Stripe keys, webhook secret, admin token) in the environment.

# The database: a SQLite file next to this config, or PostgreSQL for several
# processes, e.g. postgresql://actionflow@127.0.0.1/actionflow
database_url: sqlite:///actionflow.db

# Folders of your flows. They run after the system flows (trigger.after) or on
# Stripe events of their own (trigger.stripe).
flows:
  - flows

# Where the Stripe API is; leave unset for Stripe itself, or point it at a
# stand-in such as localstripe while developing.
# stripe_api_base: http://localhost:8420

# Failed flow runs are retried with exponential backoff, then parked as failed
# (see `actionflow events list --status failed`). Mail and outbound webhooks
# that fail are retried the same way.
retry:
  attempts: 8
  base_seconds: 2
  cap_seconds: 3600

# Mail templates (notify.email): NAME.subject.txt, NAME.txt and/or NAME.html.
templates: templates

# Where notify.email sends mail. This one is a catcher on this machine for
# development (e.g. `python -m aiosmtpd -n -l 127.0.0.1:1025`); mail that
# cannot be sent is retried, then parked as failed. Without an smtp section,
# mail waits in the outbox and the log says so. tls: none, starttls or ssl.
# The password comes from ACTIONFLOW_SMTP_PASSWORD, never from this file.
smtp:
  host: 127.0.0.1
  port: 1025
  tls: none
  from: "Shop <shop@example.com>"

# Hosts notify.webhook may post to. Private, loopback and link-local addresses
# are refused unless allow_private is true. Requests are signed with
# ACTIONFLOW_WEBHOOK_SIGNING_SECRET (generated when unset: `actionflow secrets`).
outbound_webhooks:
  allow_hosts: []
  allow_private: false
"""

PRE_COMMIT = """\
# Check every flow before it is committed: pre-commit install
repos:
  - repo: local
    hooks:
      - id: actionflow-validate
        name: actionflow validate
        entry: actionflow validate
        language: system
        files: ^flows/.*\\.ya?ml$
"""


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, force: bool) -> None:
    """Create a project in DIRECTORY: config, example flows, schema, pre-commit."""
    files = _scaffold()
    existing = [name for name in files if (directory / name).exists()]
    if existing and not force:
        raise click.ClickException(
            f"{', '.join(existing)} already exist in {directory}; "
            "use --force to overwrite"
        )
    for name, text in files.items():
        target = directory / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(
                f"cannot write {target}: {exc.strerror or exc}; choose a directory "
                "you can write to"
            ) from None
    click.echo(f"created {len(files)} files in {directory}")
    click.echo(f"next: cd {directory} && actionflow serve")


def _scaffold() -> dict[str, str]:
    files = {
        "actionflow.yaml": CONFIG,
        ".pre-commit-config.yaml": PRE_COMMIT,
        "schemas/flow.schema.json": SCHEMA_FILE.read_text(encoding="utf-8"),
    }
    for flow in sorted(EXAMPLE_FLOWS.glob("*.yaml")):
        files[f"flows/{flow.name}"] = _with_schema_line(
            flow.read_text(encoding="utf-8")
        )
    for template in sorted(EXAMPLE_TEMPLATES.iterdir()):
        files[f"templates/{template.name}"] = template.read_text(encoding="utf-8")
    return files


def _with_schema_line(text: str) -> str:
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("# yaml-language-server:"):
        lines = lines[1:]
    return SCHEMA_LINE + "\n" + "".join(lines)
