"""The `actionflow` command. Exit codes: 0 success, 1 bad input, 2 usage error."""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from actionflow.engine.errors import ActionflowError, FlowError
from actionflow.engine.flow import load_flow

from . import logs
from .cli_params import PORT, ROW_ID, ErrorReportingGroup

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("actionflow")


def setup_logging() -> None:
    """One line per record, key=value, to stderr; only the entry point does this."""
    logs.setup()


def _protect(settings: Settings, runtime: Any) -> None:
    """Mask the configured and generated secrets in every later log line."""
    logs.protect(
        [
            settings.stripe_secret_key,
            runtime.admin_token,
            *runtime.webhook_secrets,
            _url_password(settings.database_url),
        ]
    )


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password  # type: ignore[return-value]
    except Exception:
        return None


def _settings(config: Path | None) -> Settings:
    # Imported here: config pulls in the database layer, which `validate` and
    # `graph` do not need (they start in a pre-commit hook, on every commit).
    from .config import load_settings

    try:
        return load_settings(config)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None


class _LazyGroup(ErrorReportingGroup):
    """A group whose listed LAZY_COMMANDS are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attribute = LAZY_COMMANDS[name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="actionflow")
def main() -> None:
    """actionflow: Stripe payments, webhooks and YAML flows, self-hosted."""


_config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: ./actionflow.yaml if it exists).",
)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=PORT)
@click.option(
    "--no-worker", is_flag=True, help="Only receive; run `actionflow worker` apart."
)
@_config_option
def serve(host: str, port: int, no_worker: bool, config: Path | None) -> None:
    """Run the HTTP server (and, unless --no-worker, the worker)."""
    import uvicorn

    from .app import build_runtime, create_app

    setup_logging()
    settings = _settings(config)
    try:
        runtime = build_runtime(settings)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    _protect(settings, runtime)
    _announce_generated(settings, runtime)
    app = create_app(runtime, run_worker=not no_worker)
    # log_config=None: uvicorn's records go through our redacting handler too.
    # On SIGTERM uvicorn stops accepting, finishes the requests in progress,
    # then the app's shutdown lets the worker finish its current run.
    # uvicorn handles SIGTERM and SIGINT while it runs and, once shut down, raises
    # them again against the handlers that were there before: these make that a
    # clean exit with status 0 instead of a death by signal.
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    uvicorn.run(
        app, host=host, port=port, log_level="info", access_log=False, log_config=None
    )


def _stopped(signum: int, _frame: Any) -> None:
    log.info("serve stopped signal=%s", signum)


def _announce_generated(settings: Settings, runtime: Any) -> None:
    """Show generated secrets once, on the terminal of the first start only."""
    from .app import first_announcement

    generated = []
    if not settings.admin_token:
        generated.append(("admin token (ACTIONFLOW_ADMIN_TOKEN)", runtime.admin_token))
    if not settings.webhook_secrets:
        secret = runtime.webhook_secrets[0]
        generated.append(("webhook signing secret (STRIPE_WEBHOOK_SECRET)", secret))
    if not generated:
        return
    # Logs outlive terminals: a secret is written only to a terminal, and only
    # the first time; later starts say where to find it.
    if sys.stderr.isatty() and first_announcement(runtime.engine):
        for name, value in generated:
            click.echo(f"Generated {name}, kept in the database: {value}", err=True)
        return
    names = ", ".join(name for name, _ in generated)
    click.echo(f"Using generated {names}; `actionflow secrets` shows them.", err=True)


@main.command()
@_config_option
def secrets(config: Path | None) -> None:
    """Print the secrets serve generated (those not set in the environment)."""
    from actionflow.engine import db

    from .app import generated_secret

    settings = _settings(config)
    configured = {
        "ACTIONFLOW_ADMIN_TOKEN": settings.admin_token,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "ACTIONFLOW_WEBHOOK_SIGNING_SECRET": settings.outbound_webhooks.secret,
    }
    stored = {
        "ACTIONFLOW_ADMIN_TOKEN": ("admin_token", "aft_"),
        "STRIPE_WEBHOOK_SECRET": ("webhook_secret", "whsec_"),
        "ACTIONFLOW_WEBHOOK_SIGNING_SECRET": ("notify_webhook_secret", "afwh_"),
    }
    engine = db.create_db_engine(settings.database_url)
    try:
        db.prepare(engine)
        for variable, (name, prefix) in stored.items():
            if configured[variable]:
                click.echo(f"{variable} is set in the configuration; not shown")
                continue
            click.echo(f"{variable}={generated_secret(engine, name, prefix)}")
    finally:
        engine.dispose()


@main.command()
@_config_option
def worker(config: Path | None) -> None:
    """Process stored events until SIGTERM or Ctrl-C; the run in progress finishes."""
    from .app import build_runtime
    from .worker import Worker

    setup_logging()
    settings = _settings(config)
    try:
        runtime = build_runtime(settings)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    _protect(settings, runtime)
    loop = Worker(runtime.processor, runtime.wake, sender=runtime.sender)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker stopping signal=%s", signum)
        loop.stopping.set()
        runtime.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("worker started")
    loop.run()
    log.info("worker stopped")


@main.group(name="db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command()
@_config_option
def upgrade(config: Path | None) -> None:
    """Bring the database schema to this version's revision."""
    from actionflow.engine import db

    settings = _settings(config)
    engine = db.create_db_engine(settings.database_url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"database schema at revision {db.head_revision()}")


def _problem_line(error: FlowError) -> str:
    where = str(error.position) if error.position else "?"
    step = f" [{error.step}]" if error.step else ""
    return f"{where}: error: {error.message}{step}"


@main.command(name="dry-run")
@click.argument(
    "flow_file", type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option(
    "--event",
    "event_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A Stripe event as JSON.",
)
@click.option(
    "--event-type",
    help="Instead of --event: build this event (payment_intent.*, charge.refunded) "
    "for a payment of the database.",
)
@click.option("--order", "order_id", type=ROW_ID, help="With --event-type: the order.")
@click.option("--payment", "payment_id", type=ROW_ID, help="... or the payment.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_config_option
def dry_run(
    flow_file: Path,
    event_file: Path | None,
    event_type: str | None,
    order_id: int | None,
    payment_id: int | None,
    as_json: bool,
    config: Path | None,
) -> None:
    """Run one flow on an event against the database, then roll every write back."""
    from actionflow.engine import db
    from actionflow.engine.orderlink import order_table
    from actionflow.engine.services import Services

    from .dryrun import dry_run_flow, event_for_row

    if (event_file is None) == (event_type is None):
        raise click.UsageError("give either --event FILE or --event-type TYPE")
    settings = _settings(config)
    try:
        flow = load_flow(flow_file.resolve())
        event = json.loads(event_file.read_text("utf-8")) if event_file else None
    except FlowError as exc:
        click.echo(_problem_line(exc), err=True)
        sys.exit(1)
    except ValueError as exc:
        raise click.ClickException(f"{event_file} is not valid JSON: {exc}") from None
    engine = db.create_db_engine(settings.database_url)
    try:
        db.prepare(engine)
        if event is None:
            assert event_type is not None
            event = event_for_row(engine, event_type, order_id, payment_id)
        # No Stripe in a dry run: only the linked order table is handed over.
        services = Services(None, order_table(engine, settings.order_link))
        ok = dry_run_flow(engine, flow, event, services, as_json=as_json)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    sys.exit(0 if ok else 1)


# Commands kept in modules of their own are imported only when they are run:
# `validate` starts on every commit in a pre-commit hook and must start fast.
LAZY_COMMANDS = {
    "events": "actionflow.server.cli_events:events",
    "graph": "actionflow.server.cli_flows:graph",
    "init": "actionflow.server.cli_init:init",
    "runs": "actionflow.server.cli_events:runs",
    "token": "actionflow.server.cli_token:token",
    "trigger": "actionflow.server.cli_trigger:trigger",
    "validate": "actionflow.server.cli_flows:validate",
}
