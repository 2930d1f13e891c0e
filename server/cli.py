"""The `actionflow` command. Exit codes: 0 success, 1 bad input, 2 usage error."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click
from actionflow.engine import db
from actionflow.engine.errors import ActionflowError, FlowError
from actionflow.engine.flow import (
    SYSTEM_FLOWS,
    Flow,
    FlowSet,
    load_directory,
    load_flow,
)

from .config import Settings, load_settings

log = logging.getLogger("actionflow")


def setup_logging() -> None:
    """One line per record, key=value, to stderr; only the entry point does this."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
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
@click.option("--port", default=8000, show_default=True, type=int)
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
    _announce_generated(settings, runtime.admin_token, runtime.webhook_secrets)
    app = create_app(runtime, run_worker=not no_worker)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def _announce_generated(
    settings: Settings, admin_token: str, secrets: list[str]
) -> None:
    generated = []
    if not settings.admin_token:
        generated.append(("admin token (ACTIONFLOW_ADMIN_TOKEN)", admin_token))
    if not settings.webhook_secrets:
        generated.append(("webhook signing secret (STRIPE_WEBHOOK_SECRET)", secrets[0]))
    if not generated:
        return
    if not sys.stderr.isatty():
        # Logs outlive terminals: never write a secret where it may be collected.
        names = ", ".join(name for name, _ in generated)
        click.echo(
            f"Using generated {names}; `actionflow secrets` shows them.", err=True
        )
        return
    for name, value in generated:
        click.echo(f"Generated {name}, kept in the database: {value}", err=True)


@main.command()
@_config_option
def secrets(config: Path | None) -> None:
    """Print the admin token and webhook secret that serve generated."""
    from .app import generated_secret

    settings = _settings(config)
    engine = db.create_db_engine(settings.database_url)
    db.prepare(engine)
    click.echo(
        f"ACTIONFLOW_ADMIN_TOKEN={generated_secret(engine, 'admin_token', 'aft_')}"
    )
    click.echo(
        f"STRIPE_WEBHOOK_SECRET={generated_secret(engine, 'webhook_secret', 'whsec_')}"
    )
    signing = generated_secret(engine, "notify_webhook_secret", "afwh_")
    click.echo(f"ACTIONFLOW_WEBHOOK_SIGNING_SECRET={signing}")


@main.command()
@_config_option
def worker(config: Path | None) -> None:
    """Process stored events until SIGTERM or Ctrl-C; the run in progress finishes."""
    from .app import build_runtime
    from .worker import Worker

    setup_logging()
    try:
        runtime = build_runtime(_settings(config))
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
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
    settings = _settings(config)
    engine = db.create_db_engine(settings.database_url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"database schema at revision {db.head_revision()}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check flow files (or folders of them); print one line per problem."""
    problems: list[str] = []
    flows: list[Flow] = load_directory(SYSTEM_FLOWS, system=True)
    system_files = {flow.file for flow in flows}
    for file in _flow_files(paths):
        if str(file) in system_files:
            continue
        try:
            flows.append(load_flow(file))
        except FlowError as exc:
            problems.append(_problem_line(exc))
    if not problems:
        try:
            FlowSet(flows)
        except FlowError as exc:
            problems.append(_problem_line(exc))
    for line in problems:
        click.echo(line)
    if problems:
        sys.exit(1)
    click.echo(f"{len(flows)} flows checked, no problems")


def _flow_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]))
        elif path.exists():
            files.append(path)
        else:
            raise click.BadParameter(f"{path} does not exist", param_hint="PATHS")
    return [file.resolve() for file in files]


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
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A Stripe event as JSON.",
)
@_config_option
def dry_run(flow_file: Path, event_file: Path, config: Path | None) -> None:
    """Run one flow on an event against the database, then roll every write back."""
    from .dryrun import dry_run_flow

    settings = _settings(config)
    try:
        flow = load_flow(flow_file.resolve())
        event = json.loads(event_file.read_text(encoding="utf-8"))
    except FlowError as exc:
        click.echo(_problem_line(exc), err=True)
        sys.exit(1)
    except ValueError as exc:
        raise click.ClickException(f"{event_file} is not valid JSON: {exc}") from None
    engine = db.create_db_engine(settings.database_url)
    try:
        db.prepare(engine)
        ok = dry_run_flow(engine, flow, event)
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    sys.exit(0 if ok else 1)


def _register() -> None:
    from .cli_init import init
    from .cli_trigger import trigger

    main.add_command(trigger)
    main.add_command(init)


_register()
