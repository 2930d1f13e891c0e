"""Prices and numbers typed by people are read only when written plainly.

Decimal() and int() take "1_000", "1e3" and other scripts' digits; a price
typed as "10_00" would then be charged as 1000.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, Numeric

from actionflow.engine.errors import PaymentError, RunError
from actionflow.engine.money import parse_price, to_minor_units
from actionflow.engine.steps.table import coerce

NOT_PLAIN = [
    pytest.param("10_00", id="underscore"),
    pytest.param("1_0.0_0", id="underscores"),
    pytest.param("1e1", id="exponent"),
    pytest.param("\u0661\u0660.\u0660\u0660", id="arabic-indic-digits"),
    pytest.param("\uff11\uff10", id="fullwidth-digits"),
    pytest.param("-0", id="negative-zero"),
    pytest.param("+10", id="plus-sign"),
    pytest.param(".5", id="no-whole-part"),
    pytest.param("10.", id="no-fraction-digits"),
    pytest.param(" 10.00", id="leading-space"),
    pytest.param("NaN", id="nan"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize(
    ("text", "price"),
    [("10.00", Decimal("10.00")), ("0", Decimal(0)), ("1234.5", Decimal("1234.5"))],
)
def test_a_plain_price_is_read_exactly(text: str, price: Decimal) -> None:
    assert parse_price(text) == price
    assert str(parse_price(text)) == text


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_a_price_not_written_plainly_is_refused(text: str) -> None:
    with pytest.raises(PaymentError, match="is not a plain decimal number"):
        parse_price(text)


@pytest.mark.parametrize(
    "text",
    ["\u0661\u0660", "\u0661\u0660.\u0660\u0660", "\uff11\uff10"],
    ids=["arabic-indic", "arabic-indic-fraction", "fullwidth"],
)
def test_to_minor_units_refuses_digits_of_other_scripts(text: str) -> None:
    with pytest.raises(PaymentError, match="is not a plain decimal number"):
        to_minor_units(text, "usd")


@pytest.mark.parametrize(
    "text", ["1_000", "1e3", "\u0661\u0660", "--5"], ids=lambda text: ascii(text)
)
def test_a_flow_cannot_write_an_unplain_number_to_an_integer_column(
    text: str,
) -> None:
    with pytest.raises(RunError, match="column 'amount' takes int"):
        coerce(Column("amount", Integer, nullable=False), text)


@pytest.mark.parametrize(
    "text", ["10_00", "1e1", "\u0661\u0660.\u0660\u0660", "Infinity"]
)
def test_a_flow_cannot_write_an_unplain_price_to_a_decimal_column(text: str) -> None:
    with pytest.raises(RunError, match="column 'price' takes Decimal"):
        coerce(Column("price", Numeric(18, 6), nullable=False), text)


def test_a_flow_still_writes_plain_numbers_given_as_text() -> None:
    assert coerce(Column("amount", Integer), " -42 ") == -42
    assert coerce(Column("price", Numeric(18, 6)), "10.50") == Decimal("10.50")
