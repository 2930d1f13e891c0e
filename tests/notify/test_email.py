"""notify.email: one receipt per payment through a real SMTP server, at most once.

Runs on SQLite and on PostgreSQL, with aiosmtpd on loopback as the mail server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from actionflow.engine import db
from actionflow.engine.mailsend import message_id
from actionflow.engine.runner import run_flow
from tests.conftest import free_port
from tests.notify.helpers import (
    MailCatcher,
    Shop,
    SmtpServer,
    deliver,
    notify_settings,
    order_and_payment,
    start_smtp,
    succeeded,
)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp(MailCatcher())
    yield server
    server.controller.stop()


@pytest.fixture
def shop(engine: Engine, smtp: SmtpServer) -> Shop:
    return Shop(engine, notify_settings(smtp.settings()))


def _bodies(mail: object) -> tuple[str, str]:
    text = mail.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    html = mail.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    return text, html


def test_a_succeeded_payment_mails_one_receipt_to_the_buyer(
    shop: Shop, smtp: SmtpServer
) -> None:
    order_id, payment_id = order_and_payment(shop.engine)
    body = succeeded()
    deliver(shop.engine, body)
    shop.work()

    assert len(smtp.catcher.mails) == 1
    mail = smtp.catcher.mails[0]
    assert smtp.catcher.recipients == [["buyer@example.com"]]
    assert mail["Subject"] == f"Your receipt for order {order_id}"
    assert mail["From"] == "Shop <shop@example.com>"
    text, html = _bodies(mail)
    assert "Paid:     10.99 USD" in text
    assert f"Payment:  {payment_id}" in text
    assert "<td>10.99 USD</td>" in html
    [row] = shop.outbox()
    assert row["key"] == f"{body['id']}:EmailReceipt:receipt"
    assert mail["Message-ID"] == message_id(row["key"], "shop@example.com")
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)


def test_an_order_description_reaches_the_mail_verbatim_never_as_a_template(
    shop: Shop, smtp: SmtpServer
) -> None:
    order_and_payment(shop.engine, description="{{ 7*7 }} <b>{% if 1 %}x{% endif %}")
    deliver(shop.engine, succeeded())
    shop.work()

    text, html = _bodies(smtp.catcher.mails[0])
    assert "({{ 7*7 }} <b>{% if 1 %}x{% endif %})" in text
    assert "({{ 7*7 }} &lt;b&gt;{% if 1 %}x{% endif %})" in html
    assert "49" not in text


def test_an_event_delivered_twice_or_replayed_mails_one_receipt(
    shop: Shop, smtp: SmtpServer
) -> None:
    order_and_payment(shop.engine)
    body = succeeded()
    assert deliver(shop.engine, body)
    assert not deliver(shop.engine, body)
    shop.work()
    # The run is retried (a replay): its outbox key is taken, nothing is queued.
    shop.replay(body["id"])
    shop.work()
    # Another event for the settled payment stops before the extensions run.
    deliver(shop.engine, succeeded())
    shop.work()

    assert len(smtp.catcher.mails) == 1
    assert [row["status"] for row in shop.outbox()] == ["sent"]


def test_a_crash_after_sending_never_sends_the_receipt_again(
    engine: Engine, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    shop = Shop(engine, notify_settings(smtp.settings(), stale_sending_seconds=0))
    order_and_payment(engine)
    body = succeeded()
    deliver(engine, body)
    shop.processor.process_next_event()
    # The sender claims the mail and the server accepts it; then the process
    # dies before recording that it was sent.
    claimed = shop.sender.claim()
    assert claimed is not None
    shop.sender.transports["email"](claimed)
    assert len(smtp.catcher.mails) == 1

    restarted = Shop(engine, notify_settings(smtp.settings(), stale_sending_seconds=0))
    restarted.replay(body["id"])
    with caplog.at_level(logging.WARNING, logger="actionflow.notify"):
        restarted.work()

    assert len(smtp.catcher.mails) == 1
    [row] = restarted.outbox()
    assert row["status"] == "unknown"
    assert row["last_error"] == (
        "the process stopped while sending; the message may or may not have been "
        "delivered, and is not sent again"
    )
    assert f"notification outcome unknown id={row['id']} kind=email" in caplog.text


def test_a_refusing_smtp_server_is_retried_and_the_receipt_sent_once(
    engine: Engine,
) -> None:
    smtp = start_smtp(MailCatcher(refuse=1))
    try:
        shop = Shop(engine, notify_settings(smtp.settings()))
        order_and_payment(engine)
        deliver(engine, succeeded())
        shop.processor.process_next_event()

        assert shop.sender.send_next()
        [row] = shop.outbox()
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert row["last_error"] == (
            f"SMTP server 127.0.0.1:{smtp.port} answered "
            "451 4.3.0 mailbox busy, try again later"
        )
        shop.work()
    finally:
        smtp.controller.stop()

    assert len(smtp.catcher.mails) == 1
    [row] = shop.outbox()
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


def test_an_unreachable_smtp_server_is_retried_then_the_mail_parked_failed(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    smtp = SmtpServer(MailCatcher(), port, None)  # type: ignore[arg-type]
    settings = smtp.settings(username="shop", password="s3cret-smtp-password")
    shop = Shop(engine, notify_settings(settings))
    order_and_payment(engine)
    deliver(engine, succeeded())
    with caplog.at_level(logging.INFO):
        shop.work()

    [row] = shop.outbox()
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"].startswith(
        f"cannot send through SMTP server 127.0.0.1:{port}: ConnectionRefusedError"
    )
    assert "s3cret-smtp-password" not in caplog.text + row["last_error"]
    assert "parked=True" in caplog.text


def test_without_smtp_the_mail_waits_in_the_outbox_and_the_log_says_so(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    shop = Shop(engine, notify_settings(None))
    order_and_payment(engine)
    deliver(engine, succeeded())
    with caplog.at_level(logging.WARNING, logger="actionflow.notify"):
        shop.work()

    assert [row["status"] for row in shop.outbox()] == ["pending"]
    assert (
        "notifications waiting kind=email count=1 reason=smtp is not configured"
        in caplog.text
    )


def test_a_payment_without_receipt_email_queues_no_mail(shop: Shop) -> None:
    order_and_payment(shop.engine)
    deliver(shop.engine, succeeded(receipt_email=None))
    shop.work()

    assert shop.outbox() == []


REFUND = {
    "status": "succeeded",
    "stripe_refund_id": "re_1",
    "order_id": 7,
    "payment_id": 3,
    "amount": 500,
    "currency": "usd",
}


def test_the_refund_notice_is_queued_once_per_refund_and_skips_pending_refunds(
    shop: Shop,
) -> None:
    flow = shop.processor.flows.by_name["EmailRefundNotice"]
    services = shop.processor.services
    outcomes = []
    with db.write(shop.engine) as connection:
        # Stripe reports one refund in several events: each is its own run.
        for run_key, outputs in [
            ("evt_created", REFUND),
            ("evt_updated", REFUND),
            (
                "evt_pending",
                {**REFUND, "stripe_refund_id": "re_2", "status": "pending"},
            ),
        ]:
            result = run_flow(
                flow,
                connection,
                trigger_outputs=outputs,
                trigger_flow="StripeRefundCallback",
                services=services,
                run_key=run_key,
            )
            outcomes.append((result.status, result.reason))

    assert [status for status, _ in outcomes] == ["succeeded"] + ["stopped"] * 2
    assert outcomes[1][1] == "duplicate: refund-notice:re_1 was already handled"
    [row] = shop.outbox()
    assert row["key"] == "evt_created:EmailRefundNotice:notice"
    mail = json.loads(row["payload"])
    assert mail["subject"] == "Refund of 5.00 USD on order 7"
    assert mail["to"] == ["shop@example.com"]
