"""Secrets are masked in any text before it is logged or printed."""

from __future__ import annotations

import logging
import sys

import pytest

from actionflow.engine.redact import redact
from actionflow.server.logs import RedactingFormatter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("key sk_test_abc123XYZ", "key [redacted]", id="stripe-key"),
        pytest.param("rk_live_abcdef12", "[redacted]", id="restricted-key"),
        pytest.param("whsec_abc-DEF_123", "[redacted]", id="webhook-secret"),
        pytest.param("aft_tokenvalue1", "[redacted]", id="admin-token"),
        pytest.param("pi_123_secret_456", "[redacted]", id="client-secret"),
        pytest.param(
            "postgresql://app:hunter2@db/x",
            "postgresql://app:[redacted]@db/x",
            id="url-password",
        ),
        pytest.param("pi_3Mt and evt_1 stay", "pi_3Mt and evt_1 stay", id="ids-stay"),
    ],
)
def test_secret_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_values_are_masked_whatever_their_shape() -> None:
    assert redact("token=my-own-admin-token!", ["my-own-admin-token"]) == (
        "token=[redacted]!"
    )


def test_the_log_formatter_masks_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s")
    formatter.known.add("chosen-token-value")
    try:
        raise ValueError("bad key sk_live_zzzzzzzzzz")
    except ValueError:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "token %s", ("chosen-token-value",), True
        )
        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    assert "chosen-token-value" not in text
    assert "sk_live_zzzzzzzzzz" not in text
    assert "token [redacted]" in text
