"""The Starlette application and everything it needs at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from sqlalchemy import Engine, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actionflow.engine import db
from actionflow.engine.flow import load_project
from actionflow.engine.inbox import Processor
from actionflow.engine.notifyconfig import NotifySettings
from actionflow.engine.orderlink import check_link, order_table
from actionflow.engine.sending import create_sender
from actionflow.engine.services import Services
from actionflow.engine.stripe_gateway import StripeGateway
from actionflow.engine.tables import Setting, utcnow

from . import actions, orders, realtime, webhooks
from .config import Settings
from .http import ApiError, error_response, json_response
from .runtime import Runtime
from .worker import Worker

log = logging.getLogger("actionflow.server")

SETTINGS = Setting.__table__  # type: ignore[attr-defined]


def build_runtime(settings: Settings) -> Runtime:
    """Connect, check the schema, load the flows: everything but starting work."""
    engine = db.create_db_engine(settings.database_url)
    try:
        return _build(settings, engine)
    except BaseException:
        engine.dispose()  # a refused start leaves no connection behind
        raise


def _build(settings: Settings, engine: Engine) -> Runtime:
    db.prepare(engine)
    flows = load_project(settings.flows)
    gateway = None
    if settings.stripe_secret_key:
        gateway = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)
    notify = _notify_settings(engine, settings)
    installation = generated_secret(engine, "installation_id", "")[:16]
    orders = order_table(engine, settings.order_link)
    services = Services(gateway, orders, notify, installation)
    check_link(engine, settings.order_link)
    processor = Processor(engine, flows, services=services, retry=settings.retry)
    admin_token = settings.admin_token or generated_secret(
        engine, "admin_token", "aft_"
    )
    secrets_ = settings.webhook_secrets or [
        generated_secret(engine, "webhook_secret", "whsec_")
    ]
    token_secret = settings.token_secret or generated_secret(
        engine, "token_secret", "afk_"
    )
    sender = create_sender(engine, notify)
    return Runtime(
        settings,
        engine,
        flows,
        processor,
        admin_token,
        secrets_,
        gateway,
        token_secret=token_secret,
        services=services,
        sender=sender,
        installation=installation,
    )


def _notify_settings(engine: Engine, settings: Settings) -> NotifySettings:
    webhooks = settings.outbound_webhooks
    if not webhooks.secret:
        secret = generated_secret(engine, "notify_webhook_secret", "afwh_")
        webhooks = replace(webhooks, secret=secret)
    return NotifySettings(
        templates=settings.templates,
        smtp=settings.smtp,
        webhooks=webhooks,
        retry=settings.retry,
    )


def generated_secret(engine: Engine, name: str, prefix: str) -> str:
    """The secret `name` kept in the database, generated on first use."""
    with db.write(engine) as connection:
        found = connection.execute(
            select(SETTINGS.c.value).where(SETTINGS.c.name == name)
        ).scalar_one_or_none()
        if found is not None:
            return str(found)
        value = prefix + secrets.token_urlsafe(32)
        try:
            connection.execute(
                insert(SETTINGS).values(name=name, value=value, created_at=utcnow())
            )
        except IntegrityError:  # another process generated it first
            connection.rollback()
            return generated_secret(engine, name, prefix)
        return value


def first_announcement(engine: Engine) -> bool:
    """True the first time it is asked for this database, False ever after."""
    with db.write(engine) as connection:
        postgres = connection.dialect.name == "postgresql"
        builder = pg_insert if postgres else sqlite_insert
        statement = (
            builder(SETTINGS)
            .values(name="secrets_announced", value="yes", created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(SETTINGS.c.name)
        )
        return connection.execute(statement).first() is not None


def create_app(runtime: Runtime, *, run_worker: bool = True) -> Starlette:
    """The HTTP application; with `run_worker`, the worker runs in the same process."""
    worker = Worker(runtime.processor, runtime.wake, sender=runtime.sender)

    hub = realtime.ChangeHub()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start(runtime.engine)
        listener = None
        if runtime.engine.dialect.name == "postgresql":
            listener = asyncio.create_task(
                realtime.listen_postgres(runtime.engine, hub)
            )
        if run_worker:
            worker.start()
        try:
            yield
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if run_worker:
                worker.stop()
            runtime.engine.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/webhooks/stripe", webhooks.receive, methods=["POST"]),
            Route("/orders", orders.create_order, methods=["POST"]),
            Route("/orders/{order_id}", orders.get_order, methods=["GET"]),
            Route("/payments", orders.list_payments, methods=["GET"]),
            Route("/refunds", orders.list_refunds, methods=["GET"]),
            Route(
                "/recurring-payments",
                orders.list_recurring_payments,
                methods=["GET"],
            ),
            Route("/actions/{name}", actions.run_action, methods=["POST"]),
            Route("/subscriptions/{table}", realtime.subscribe, methods=["GET"]),
        ],
        exception_handlers={  # type: ignore[dict-item]
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.hub = hub
    return app


def healthz(request: Request) -> Response:
    """200 while the database answers."""
    runtime: Runtime = request.app.state.runtime
    with db.read(runtime.engine) as connection:
        connection.exec_driver_sql("SELECT 1")
    return json_response({"status": "ok"})


async def _api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.message)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return error_response(exc.status_code, exc.detail)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("request failed path=%s error=%s", request.url.path, type(exc).__name__)
    return error_response(500, "internal error; the server log has the details")
