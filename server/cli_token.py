"""`actionflow token`: issue a signed bearer token for a user or an admin."""

from __future__ import annotations

import time
from pathlib import Path

import click

from actionflow.engine import db
from actionflow.engine.errors import ActionflowError

from .auth import ROLES, issue_token
from .config import load_settings


@click.command(name="token")
@click.option("--user", "user_id", required=True, help="The user id the token carries.")
@click.option("--role", type=click.Choice(ROLES), default="user", show_default=True)
@click.option(
    "--expires-in",
    type=click.IntRange(min=1),
    help="Seconds until the token expires (default: it does not expire).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: ./actionflow.yaml if it exists).",
)
def token(user_id: str, role: str, expires_in: int | None, config: Path | None) -> None:
    """Print a bearer token signed with ACTIONFLOW_TOKEN_SECRET."""
    from .app import generated_secret

    try:
        settings = load_settings(config)
        secret = settings.token_secret
        if not secret:
            engine = db.create_db_engine(settings.database_url)
            db.prepare(engine)
            secret = generated_secret(engine, "token_secret", "afk_")
            engine.dispose()
        expires = int(time.time()) + expires_in if expires_in else None
        click.echo(issue_token(secret, user_id, role, expires))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--user") from None
    except ActionflowError as exc:
        raise click.ClickException(str(exc)) from None
