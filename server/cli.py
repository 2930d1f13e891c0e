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
from actionflow.engine.jsonvalues import parse as parse_json

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
    "flow_file",
    required=False,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
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
@click.option(
    "--replay",
    "replay_key",
    metavar="EVENT_ID",
    help="Run a stored event (evt_... or our numeric id) through the current "
    "flows and show how it differs from what was recorded.",
)
@click.option(
    "--action",
    "action_name",
    help="Instead of an event: dry-run this action (stripe-payment, stripe-refund, "
    "stripe-subscription, stripe-subscription-cancel).",
)
@click.option(
    "--input",
    "action_input",
    help='With --action: its JSON body, e.g. {"paymentId": 1, "refundAmount": 500}.',
)
@click.option(
    "--user", "user_id", help="With --action: act as this user (default: an admin)."
)
@click.option(
    "--fixtures",
    "fixtures_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Stripe's answers by step and attempt (YAML, or JSON).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_config_option
def dry_run(
    flow_file: Path | None,
    event_file: Path | None,
    event_type: str | None,
    order_id: int | None,
    payment_id: int | None,
    replay_key: str | None,
    action_name: str | None,
    action_input: str | None,
    user_id: str | None,
    fixtures_file: Path | None,
    as_json: bool,
    config: Path | None,
) -> None:
    """Run an event (or an action), print the plan, roll every write back.

    Without FLOW, the event takes the whole path processing would: the flows it
    triggers, then their extensions from the project's flows folders. With
    FLOW (a file), only the path through that flow: the flows it runs after,
    itself, and its extensions. With --action, the payment action's own code
    runs on --input. Stripe is never called: each request is shown, answered
    from --fixtures or with an answer built from the request. Exit 1 when a
    run of the plan fails.
    """
    from actionflow.engine import db
    from actionflow.engine.stripe_standin import load_fixtures

    from . import dryrun, replay

    if action_name is not None:
        _check_action_usage(flow_file, event_file, event_type, replay_key, action_input)
        from .actions import ACTIONS

        if action_name not in ACTIONS:
            raise click.UsageError(
                f"unknown action {action_name!r}; actions are: "
                f"{', '.join(sorted(ACTIONS))}"
            )
    else:
        given = [event_file, event_type, replay_key]
        if sum(source is not None for source in given) != 1:
            raise click.UsageError(
                "give either --event FILE, --event-type TYPE, --replay EVENT_ID "
                "or --action NAME"
            )
        if action_input is not None or user_id is not None:
            raise click.UsageError("--input and --user go with --action")
    settings = _settings(config)
    try:
        fixtures = load_fixtures(fixtures_file) if fixtures_file else None
        data = _action_data(action_input) if action_name is not None else None
        flows, target = (None, None)
        if action_name is None:
            flows, target = _dry_run_flows(settings, flow_file)
        event = _event(event_file) if event_file else None
    except FlowError as exc:
        for problem in exc.problems or [exc]:
            click.echo(_problem_line(problem), err=True)
        sys.exit(1)
    except ValueError as exc:
        raise click.ClickException(f"{event_file} is not valid JSON: {exc}") from None
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    fixtures_name = str(fixtures_file)
    engine = db.create_db_engine(settings.database_url)
    try:
        db.prepare(engine)
        services = _dry_run_services(engine, settings)
        secrets = _secret_values(settings)
        if action_name is not None:
            from .auth import Principal
            from .dryrun_action import ADMIN, dry_run_action

            assert data is not None
            ok = dry_run_action(
                engine,
                settings,
                services,
                action_name,
                data,
                principal=Principal(user_id, "user") if user_id else ADMIN,
                fixtures=fixtures,
                fixtures_name=fixtures_name,
                as_json=as_json,
            )
            sys.exit(0 if ok else 1)
        assert flows is not None
        if replay_key is not None:
            plan = replay.replay_event(
                engine,
                flows,
                services,
                replay_key,
                target=target,
                secrets=secrets,
                fixtures=fixtures,
                fixtures_name=fixtures_name,
            )
        else:
            if event is None:
                assert event_type is not None
                event = dryrun.event_for_row(engine, event_type, order_id, payment_id)
            path = dryrun.path_for(flows, str(event.get("type")), target)
            plan = dryrun.plan_event(
                engine,
                flows,
                event,
                services,
                path,
                secrets=secrets,
                fixtures=fixtures,
                fixtures_name=fixtures_name,
            )
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    _show_plan(plan, as_json)
    sys.exit(1 if plan["status"] == "failed" else 0)


def _check_action_usage(
    flow_file: Path | None,
    event_file: Path | None,
    event_type: str | None,
    replay_key: str | None,
    action_input: str | None,
) -> None:
    if flow_file is not None:
        raise click.UsageError("give a FLOW file or --action NAME, not both")
    if event_file is not None or event_type is not None or replay_key is not None:
        raise click.UsageError("an action takes --input JSON, not an event")
    if action_input is None:
        raise click.UsageError("--action needs --input JSON, the action's body")


def _action_data(action_input: str | None) -> dict[str, Any]:
    try:
        data = parse_json(action_input or "", exact=True)
    except ValueError as exc:
        raise click.UsageError(f"--input is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.UsageError("--input must be a JSON object, e.g. '{\"orderId\": 1}'")
    return data


def _event(file: Path) -> dict[str, Any]:
    event = parse_json(file.read_text("utf-8"))
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ActionflowError(
            f"{file} is not a Stripe event: it needs an object with a `type`, "
            "like Stripe's Dashboard shows for an event"
        )
    return event


def _dry_run_flows(settings: Settings, flow_file: Path | None) -> tuple[Any, Any]:
    """The project's flows (as serve loads them), with FLOW's file in its place."""
    from actionflow.engine.flow import SYSTEM_FLOWS, FlowSet, load_project

    project = load_project(settings.flows)
    if flow_file is None:
        return project, None
    path = flow_file.resolve()
    system = path.parent == SYSTEM_FLOWS.resolve()
    target = load_flow(path, system=system)
    known = project.by_name.get(target.name)
    if known is not None and known.system and not system:
        target = load_flow(path, system=True)
    others = [flow for flow in project.by_name.values() if flow.name != target.name]
    return FlowSet([*others, target]), target


def _dry_run_services(engine: Any, settings: Settings) -> Any:
    """What a dry run's flows may use: no Stripe; the configured notifications."""
    from actionflow.engine.notifyconfig import NotifySettings
    from actionflow.engine.orderlink import order_table
    from actionflow.engine.services import Services

    notify = NotifySettings(
        templates=settings.templates,
        smtp=settings.smtp,
        webhooks=settings.outbound_webhooks,
        retry=settings.retry,
    )
    return Services(None, order_table(engine, settings.order_link), notify)


def _secret_values(settings: Settings) -> list[str | None]:
    smtp_password = settings.smtp.password if settings.smtp else None
    return [
        settings.stripe_secret_key,
        settings.admin_token,
        settings.token_secret,
        *settings.webhook_secrets,
        smtp_password,
        settings.outbound_webhooks.secret,
        _url_password(settings.database_url),
    ]


def _show_plan(plan: dict[str, Any], as_json: bool) -> None:
    from actionflow.engine.jsonvalues import dumps

    from .plan import render

    if as_json:
        click.echo(json.dumps(json.loads(dumps(plan)), indent=2))
    else:
        render(plan)


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
