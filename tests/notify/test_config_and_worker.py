"""Notification settings from actionflow.yaml and the environment; the worker sends."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from actionflow.engine.errors import ConfigError, RunError
from actionflow.engine.mailtemplates import MailTemplates
from actionflow.engine.notifyconfig import SmtpSettings
from actionflow.engine.runner import StepContext
from actionflow.engine.steps.notify import log_step
from actionflow.server.app import build_runtime
from actionflow.server.config import EXAMPLE_TEMPLATES, load_settings
from actionflow.server.worker import Worker
from tests.conftest import server_settings
from tests.notify.helpers import (
    MailCatcher,
    deliver,
    order_and_payment,
    start_smtp,
    succeeded,
)

CONFIG = """\
templates: mail
smtp:
  host: mail.example.com
  port: 465
  tls: ssl
  username: shop
  from: "Shop <shop@example.com>"
outbound_webhooks:
  allow_hosts: [Hooks.Example.com]
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ACTIONFLOW_SMTP_HOST",
        "ACTIONFLOW_SMTP_PORT",
        "ACTIONFLOW_SMTP_TLS",
        "ACTIONFLOW_SMTP_USERNAME",
        "ACTIONFLOW_SMTP_PASSWORD",
        "ACTIONFLOW_SMTP_FROM",
        "ACTIONFLOW_WEBHOOK_SIGNING_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


def test_smtp_comes_from_the_file_and_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "actionflow.yaml").write_text(CONFIG)
    monkeypatch.setenv("ACTIONFLOW_SMTP_PASSWORD", "pw-from-env")
    monkeypatch.setenv("ACTIONFLOW_SMTP_PORT", "2465")

    settings = load_settings(tmp_path / "actionflow.yaml")

    assert settings.templates == tmp_path / "mail"
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls) == (
        "mail.example.com",
        2465,
        "ssl",
    )
    assert settings.smtp.password == "pw-from-env"
    assert "pw-from-env" not in repr(settings)
    assert settings.outbound_webhooks.allow_hosts == ("hooks.example.com",)


def test_without_a_config_file_there_is_no_smtp_and_the_example_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert (settings.smtp, settings.templates) == (None, EXAMPLE_TEMPLATES)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param(
            "smtp: {host: h, password: hunter2}",
            "setting smtp.password in {file} is refused: keep secrets out of config "
            "files and set ACTIONFLOW_SMTP_PASSWORD in the environment",
            id="password-in-file",
        ),
        pytest.param(
            "smtp: {host: h, tls: yes-please}",
            "smtp tls mode 'yes-please' is unknown; use one of none, starttls, ssl",
            id="tls-mode",
        ),
        pytest.param(
            "smtp: {host: h, port: 70000}",
            "smtp port must be a number from 1 to 65535, got 70000",
            id="port",
        ),
        pytest.param(
            "outbound_webhooks: {allow_hosts: example.com}",
            "setting outbound_webhooks.allow_hosts in {file} must be a list of host "
            "names, e.g. [hooks.example.com, '*.example.org']",
            id="allow-hosts",
        ),
        pytest.param(
            "outbound_webhooks: {secret: abc}",
            "setting outbound_webhooks.secret in {file} is refused: keep secrets out "
            "of config files and set ACTIONFLOW_WEBHOOK_SIGNING_SECRET in the "
            "environment",
            id="secret-in-file",
        ),
    ],
)
def test_bad_notification_settings_are_refused(
    tmp_path: Path, section: str, message: str
) -> None:
    file = tmp_path / "actionflow.yaml"
    file.write_text(section + "\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(file)
    assert refused.value.message == message.format(file=file)
    assert "hunter2" not in refused.value.message


def test_the_worker_loop_sends_the_receipt_after_processing_the_event(
    database_url: str,
) -> None:
    smtp = start_smtp(MailCatcher())
    try:
        settings = server_settings(database_url, smtp=_smtp(smtp.port))
        runtime = build_runtime(settings)
        worker = Worker(runtime.processor, threading.Event(), sender=runtime.sender)
        order_and_payment(runtime.engine)
        deliver(runtime.engine, succeeded())
        for _ in range(20):
            if not worker.step():
                break
        runtime.engine.dispose()
    finally:
        smtp.controller.stop()
    assert len(smtp.catcher.mails) == 1


def _smtp(port: int) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, tls="none", sender="s@ex.com")


def test_notify_log_writes_sorted_key_values_and_hides_secrets(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.connect() as connection:
        context = StepContext(connection, "Audit", "note", None, [])
        with caplog.at_level(logging.INFO, logger="actionflow.notify"):
            out = log_step(
                context,
                {
                    "message": "order paid",
                    "fields": {"order": 7, "api_token": "tok_123", "who": "a b"},
                },
            )
    assert out["line"] == 'message="order paid" api_token=*** order=7 who="a b"'
    assert f"flow=Audit step=note {out['line']}" in caplog.text
    assert "tok_123" not in caplog.text


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "{{ ''.__class__.__mro__ }}",
            "template 't.txt': access to attribute '__class__' of 'str' object is "
            "unsafe.",
            id="sandbox",
        ),
        pytest.param(
            "{{ missing }}",
            "template 't.txt': 'missing' is undefined; pass it in the step's `data`",
            id="strict-undefined",
        ),
        pytest.param(
            "{% include '../secret.txt' %}",
            "template '../secret.txt' is not in the templates folder",
            id="folder",
        ),
    ],
)
def test_templates_are_sandboxed_strict_and_kept_in_their_folder(
    tmp_path: Path, source: str, message: str
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "t.txt").write_text(source)
    with pytest.raises(RunError) as refused:
        MailTemplates(folder).render("t.txt", {})
    assert refused.value.message.startswith(message)


def test_a_template_escapes_html_but_not_text(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("<p>{{ name }}</p>")
    (tmp_path / "a.txt").write_text("{{ name }}")
    templates = MailTemplates(tmp_path)
    assert templates.render("a.html", {"name": "<b>"}) == "<p>&lt;b&gt;</p>"
    assert templates.render("a.txt", {"name": "<b>"}) == "<b>"
