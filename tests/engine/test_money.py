"""Exact Stripe amounts: decimal places, special cases, limits and refusals."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actionflow.engine import money
from actionflow.engine.errors import PaymentError
from actionflow.engine.money import (
    SUPPORTED_CURRENCIES,
    THREE_DECIMAL_CURRENCIES,
    WHOLE_UNIT_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    amount_step,
    check_chargeable,
    from_minor_units,
    maximum_charge,
    minimum_charge,
    minor_unit_exponent,
    to_minor_units,
)

# Properties keep no example database and have no deadline, so slow runs do not flake.
PROPERTY = settings(database=None, deadline=None, max_examples=300)
CURRENCIES = sorted(SUPPORTED_CURRENCIES)


def _chargeable_places(currency: str) -> int:
    """Decimal places a chargeable price in `currency` may have."""
    return minor_unit_exponent(currency) - len(str(amount_step(currency))) + 1


# --- decimal places per currency -------------------------------------------


@pytest.mark.parametrize("currency", ["usd", "eur", "gbp", "cad", "chf", "inr"])
def test_most_currencies_have_two_decimal_places(currency: str) -> None:
    assert minor_unit_exponent(currency) == 2
    assert amount_step(currency) == 1


@pytest.mark.parametrize("currency", sorted(ZERO_DECIMAL_CURRENCIES))
def test_zero_decimal_currencies_have_no_decimal_places(currency: str) -> None:
    assert minor_unit_exponent(currency) == 0
    assert amount_step(currency) == 1


@pytest.mark.parametrize("currency", sorted(THREE_DECIMAL_CURRENCIES))
def test_three_decimal_currencies_count_thousandths_in_steps_of_ten(
    currency: str,
) -> None:
    assert minor_unit_exponent(currency) == 3
    assert amount_step(currency) == 10


@pytest.mark.parametrize("currency", ["isk", "ugx"])
def test_isk_and_ugx_are_two_decimal_but_whole_units_only(currency: str) -> None:
    assert minor_unit_exponent(currency) == 2
    assert amount_step(currency) == 100


@pytest.mark.parametrize("currency", ["huf", "twd"])
def test_huf_and_twd_charge_like_any_two_decimal_currency(currency: str) -> None:
    assert minor_unit_exponent(currency) == 2
    assert amount_step(currency) == 1
    assert to_minor_units("10.45", currency) == 1045


def test_ugx_is_not_treated_as_zero_decimal_despite_stripes_list() -> None:
    assert "UGX" not in ZERO_DECIMAL_CURRENCIES
    assert to_minor_units(5, "ugx") == 500


def test_every_special_list_names_only_supported_currencies() -> None:
    special = ZERO_DECIMAL_CURRENCIES | THREE_DECIMAL_CURRENCIES | WHOLE_UNIT_CURRENCIES
    assert special <= SUPPORTED_CURRENCIES
    assert not ZERO_DECIMAL_CURRENCIES & THREE_DECIMAL_CURRENCIES
    assert not WHOLE_UNIT_CURRENCIES & (
        ZERO_DECIMAL_CURRENCIES | THREE_DECIMAL_CURRENCIES
    )


# --- currency codes ---------------------------------------------------------


@pytest.mark.parametrize(
    "currency", ["usd", "USD", "Usd"], ids=["lower", "upper", "mixed"]
)
def test_currency_codes_are_case_insensitive(currency: str) -> None:
    assert minor_unit_exponent(currency) == 2
    assert to_minor_units("19.99", currency) == 1999


@pytest.mark.parametrize(
    "currency",
    ["", "us", "usdd", "u$d", " usd", "usd\n", "üsd", 840, None],
    ids=[
        "empty",
        "short",
        "long",
        "symbol",
        "space",
        "newline",
        "non-ascii",
        "int",
        "none",
    ],
)
def test_malformed_currency_code_is_refused(currency: object) -> None:
    with pytest.raises(
        PaymentError, match="is not a three-letter ISO 4217 code; use a code"
    ):
        minor_unit_exponent(currency)  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["xyz", "XXX", "btc"])
def test_unknown_currency_is_refused(currency: str) -> None:
    with pytest.raises(
        PaymentError, match=f"'{currency}' is not one Stripe can charge in"
    ):
        to_minor_units("1.00", currency)


@pytest.mark.parametrize(
    "call",
    [
        lambda: minimum_charge("zzz"),
        lambda: maximum_charge("zzz"),
        lambda: amount_step("zzz"),
        lambda: from_minor_units(100, "zzz"),
        lambda: check_chargeable(100, "zzz"),
    ],
    ids=["minimum", "maximum", "step", "from_minor_units", "check_chargeable"],
)
def test_every_function_refuses_an_unknown_currency(call: Callable[[], object]) -> None:
    with pytest.raises(PaymentError, match="'zzz' is not one Stripe can charge in"):
        call()


# --- prices to minor units --------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("4.35", 435),
        ("0.29", 29),
        ("19.99", 1999),
        ("0.1", 10),
        ("1.15", 115),
        ("1.005", None),
        ("8.20", 820),
        ("0.07", 7),
    ],
    ids=["4.35", "0.29", "19.99", "0.1", "1.15", "1.005", "8.20", "0.07"],
)
def test_float_traps_convert_exactly(price: str, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(PaymentError, match="round the price to 1.00 or 1.01"):
            to_minor_units(price, "usd")
    else:
        assert to_minor_units(price, "usd") == expected
        assert to_minor_units(Decimal(price), "usd") == expected


@pytest.mark.parametrize(
    ("price", "currency", "expected"),
    [
        (500, "jpy", 500),
        ("500", "jpy", 500),
        (Decimal("1.230"), "kwd", 1230),
        ("0.010", "bhd", 10),
        (5, "isk", 500),
        ("5.00", "isk", 500),
        ("10.45", "huf", 1045),
        (10, "usd", 1000),
        ("4.350", "usd", 435),
        ("  19.99 ", "usd", 1999),
        (".5", "usd", 50),
        ("7.", "usd", 700),
        ("+3", "usd", 300),
        (Decimal("1E+3"), "usd", 100000),
        ("0", "usd", 0),
        (Decimal("-0"), "usd", 0),
    ],
    ids=[
        "jpy-int",
        "jpy-str",
        "kwd",
        "bhd",
        "isk-int",
        "isk-str",
        "huf",
        "usd-int",
        "trailing-zero",
        "spaces",
        "leading-point",
        "trailing-point",
        "plus-sign",
        "exponent-decimal",
        "zero",
        "negative-zero",
    ],
)
def test_prices_convert_to_the_amount_stripe_expects(
    price: Decimal | int | str, currency: str, expected: int
) -> None:
    assert to_minor_units(price, currency) == expected


@pytest.mark.parametrize(
    ("price", "currency", "message"),
    [
        (
            "10.005",
            "usd",
            r"usd has 2 decimal places; round the price to 10\.00 or 10\.01",
        ),
        ("500.5", "jpy", r"jpy has no decimal places; round the price to 500 or 501"),
        (
            "1.2345",
            "kwd",
            r"kwd has 3 decimal places .*round the price to 1\.23 or 1\.24",
        ),
        (
            Decimal("0.001"),
            "usd",
            r"usd has 2 decimal places; round the price to 0\.00 or 0\.01",
        ),
    ],
    ids=["usd", "jpy", "kwd", "tiny"],
)
def test_price_more_precise_than_the_currency_is_refused(
    price: Decimal | str, currency: str, message: str
) -> None:
    with pytest.raises(
        PaymentError, match=rf"price {price} cannot be charged in {currency}: {message}"
    ):
        to_minor_units(price, currency)


@pytest.mark.parametrize(
    ("price", "currency", "rounded"),
    [
        ("1.235", "kwd", r"1\.23 or 1\.24"),
        ("0.005", "jod", r"0\.00 or 0\.01"),
        ("12.341", "tnd", r"12\.34 or 12\.35"),
    ],
    ids=["kwd", "jod", "tnd"],
)
def test_three_decimal_currency_needs_a_final_zero(
    price: str, currency: str, rounded: str
) -> None:
    with pytest.raises(
        PaymentError,
        match=f"Stripe needs the last one to be 0; round the price to {rounded}",
    ):
        to_minor_units(price, currency)


@pytest.mark.parametrize(
    ("price", "currency", "rounded"),
    [
        ("5.50", "isk", "5 or 6"),
        ("40.10", "isk", "40 or 41"),
        ("1000.01", "ugx", "1000 or 1001"),
    ],
    ids=["isk-half", "isk-tenth", "ugx"],
)
def test_isk_and_ugx_refuse_a_fraction_of_a_unit(
    price: str, currency: str, rounded: str
) -> None:
    with pytest.raises(
        PaymentError,
        match=f"charges {currency} in whole units only; round the price to {rounded}",
    ):
        to_minor_units(price, currency)


@pytest.mark.parametrize(
    "price", [4.35, 0.1, 1.0, float("nan")], ids=["4.35", "0.1", "1.0", "nan"]
)
def test_float_price_is_refused(price: float) -> None:
    with pytest.raises(
        PaymentError,
        match="a float cannot hold most prices exactly; pass it as a Decimal",
    ):
        to_minor_units(price, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize("price", [True, False], ids=["true", "false"])
def test_bool_price_is_refused(price: bool) -> None:
    with pytest.raises(
        PaymentError,
        match=f"price {price} cannot be charged in usd: a bool is not a price",
    ):
        to_minor_units(price, "usd")


@pytest.mark.parametrize(
    "price", ["-1.00", Decimal("-0.01"), -5], ids=["string", "decimal", "int"]
)
def test_negative_price_is_refused(price: Decimal | int | str) -> None:
    with pytest.raises(PaymentError, match="it is negative; pass the positive price"):
        to_minor_units(price, "usd")


@pytest.mark.parametrize(
    "price",
    [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")],
    ids=["nan", "snan", "infinity", "minus-infinity"],
)
def test_non_finite_price_is_refused(price: Decimal) -> None:
    with pytest.raises(
        PaymentError, match="it is not a finite number; pass a price such as"
    ):
        to_minor_units(price, "usd")


@pytest.mark.parametrize(
    "price",
    [
        "",
        "abc",
        "1,000.00",
        "4.35 usd",
        "$4.35",
        "1e3",
        "NaN",
        "Infinity",
        "0x10",
        "1_000",
        "--1",
    ],
    ids=[
        "empty",
        "letters",
        "comma",
        "suffix",
        "symbol",
        "exponent",
        "nan",
        "infinity",
        "hex",
        "underscore",
        "double-sign",
    ],
)
def test_non_numeric_string_is_refused(price: str) -> None:
    with pytest.raises(
        PaymentError, match="it is not a plain decimal number; write it with digits"
    ):
        to_minor_units(price, "usd")


@pytest.mark.parametrize("price", [None, [4], b"4.35"], ids=["none", "list", "bytes"])
def test_price_of_another_type_is_refused(price: object) -> None:
    with pytest.raises(
        PaymentError, match="is not a price; pass a Decimal, an int or a string"
    ):
        to_minor_units(price, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "price",
    [Decimal("1E+30"), "1" + "0" * 20, 10**16],
    ids=["exponent", "long-string", "int"],
)
def test_absurdly_large_price_is_refused_before_any_arithmetic(
    price: Decimal | int | str,
) -> None:
    with pytest.raises(
        PaymentError, match="far above Stripe's maximum of 999999.99 usd; split"
    ):
        to_minor_units(price, "usd")


def test_price_with_absurdly_many_places_is_refused_quickly() -> None:
    with pytest.raises(PaymentError, match="round the price to 0.00 or 0.01"):
        to_minor_units(Decimal("1E-999999999"), "usd")


# --- minor units back to prices ---------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (435, "usd", "4.35"),
        (500, "jpy", "500"),
        (1230, "kwd", "1.230"),
        (500, "isk", "5.00"),
        (0, "usd", "0.00"),
        (99999999, "usd", "999999.99"),
        (1045, "huf", "10.45"),
    ],
    ids=["usd", "jpy", "kwd", "isk", "zero", "maximum", "huf"],
)
def test_from_minor_units_gives_the_price_with_the_currency_places(
    amount: int, currency: str, expected: str
) -> None:
    price = from_minor_units(amount, currency)
    assert isinstance(price, Decimal)
    assert str(price) == expected


def test_from_minor_units_reads_an_old_fractional_isk_amount() -> None:
    assert str(from_minor_units(4010, "isk")) == "40.10"


@pytest.mark.parametrize(
    "amount",
    [4.35, True, "435", Decimal(435), None],
    ids=["float", "bool", "str", "decimal", "none"],
)
def test_from_minor_units_refuses_anything_but_an_int(amount: object) -> None:
    with pytest.raises(
        PaymentError, match="is not an integer number of minor units; convert the price"
    ):
        from_minor_units(amount, "usd")  # type: ignore[arg-type]


def test_from_minor_units_refuses_a_negative_amount() -> None:
    with pytest.raises(
        PaymentError, match="amount -500 in usd is negative; .*pass the positive amount"
    ):
        from_minor_units(-500, "usd")


@pytest.mark.parametrize(
    ("price", "currency"),
    [("4.35", "usd"), ("500", "jpy"), ("1.230", "kwd"), ("5", "isk"), ("19.99", "eur")],
    ids=["usd", "jpy", "kwd", "isk", "eur"],
)
def test_prices_round_trip_through_minor_units(price: str, currency: str) -> None:
    assert from_minor_units(to_minor_units(price, currency), currency) == Decimal(price)


@st.composite
def _chargeable_prices(draw: st.DrawFn) -> tuple[Decimal, str]:
    currency = draw(st.sampled_from(CURRENCIES))
    price = draw(
        st.decimals(
            min_value=0,
            max_value=10**9,
            places=_chargeable_places(currency),
            allow_nan=False,
            allow_infinity=False,
        )
    )
    return price, currency


@PROPERTY
@given(_chargeable_prices())
def test_any_chargeable_price_round_trips_exactly(case: tuple[Decimal, str]) -> None:
    price, currency = case
    amount = to_minor_units(price, currency)
    assert amount % amount_step(currency) == 0
    back = from_minor_units(amount, currency)
    assert back == price
    assert to_minor_units(back, currency) == amount
    assert to_minor_units(str(price), currency) == amount


@PROPERTY
@given(st.sampled_from(CURRENCIES), st.integers(min_value=0, max_value=10**15))
def test_any_whole_step_amount_round_trips_exactly(currency: str, steps: int) -> None:
    amount = steps * amount_step(currency)
    assert to_minor_units(from_minor_units(amount, currency), currency) == amount


@PROPERTY
@given(st.sampled_from(CURRENCIES), st.data())
def test_one_place_too_many_is_always_refused(
    currency: str, data: st.DataObject
) -> None:
    places = _chargeable_places(currency) + 1
    whole = data.draw(st.integers(min_value=0, max_value=10**9))
    last = data.draw(st.integers(min_value=1, max_value=9))
    price = Decimal(whole * 10 + last).scaleb(-places)
    with pytest.raises(PaymentError, match="round the price to"):
        to_minor_units(price, currency)


# --- minimum and maximum ----------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "minimum"),
    [
        ("usd", 50),
        ("gbp", 30),
        ("eur", 50),
        ("jpy", 50),
        ("krw", 50),
        ("huf", 17500),
        ("mxn", 1000),
        ("thb", 1000),
        ("czk", 1500),
        ("hkd", 400),
        ("aed", 200),
        ("dkk", 250),
        ("nok", 300),
        ("sek", 300),
        ("myr", 200),
        ("pln", 200),
    ],
    ids=lambda value: str(value),
)
def test_minimum_charge_follows_stripes_table(currency: str, minimum: int) -> None:
    assert minimum_charge(currency) == minimum
    assert minimum_charge(currency.upper()) == minimum


@pytest.mark.parametrize("currency", ["kwd", "isk", "ugx", "vnd", "clp", "twd"])
def test_minimum_charge_is_none_where_stripe_publishes_none(currency: str) -> None:
    assert minimum_charge(currency) is None


@pytest.mark.parametrize(
    ("currency", "maximum"),
    [
        ("usd", 99_999_999),
        ("jpy", 99_999_999),
        ("kwd", 99_999_999),
        ("idr", 999_999_999_999),
        ("cop", 9_999_999_999),
        ("inr", 999_999_999),
    ],
    ids=["usd", "jpy", "kwd", "idr", "cop", "inr"],
)
def test_maximum_charge_follows_stripes_digit_limits(
    currency: str, maximum: int
) -> None:
    assert maximum_charge(currency) == maximum


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (50, "usd"),
        (30, "gbp"),
        (99_999_999, "usd"),
        (100, "isk"),
        (500, "ugx"),
        (1230, "kwd"),
        (999_999_999_999, "idr"),
        (17545, "huf"),
        (80045, "twd"),
        (1, "vnd"),
    ],
    ids=[
        "usd-minimum",
        "gbp-minimum",
        "usd-maximum",
        "isk",
        "ugx",
        "kwd",
        "idr-maximum",
        "huf-fraction",
        "twd-fraction",
        "no-minimum",
    ],
)
def test_chargeable_amounts_pass(amount: int, currency: str) -> None:
    check_chargeable(amount, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (
            49,
            "usd",
            r"amount 49 \(0\.49 usd\) is below Stripe's minimum charge "
            r"of 50 \(0\.50 usd\); charge at least 0\.50 usd",
        ),
        (29, "gbp", r"minimum charge of 30 \(0\.30 gbp\)"),
        (
            49,
            "jpy",
            r"amount 49 \(49 jpy\) is below Stripe's minimum charge of 50 \(50 jpy\)",
        ),
        (17499, "huf", r"minimum charge of 17500 \(175\.00 huf\)"),
    ],
    ids=["usd", "gbp", "jpy", "huf"],
)
def test_amount_below_the_minimum_is_refused(
    amount: int, currency: str, message: str
) -> None:
    with pytest.raises(PaymentError, match=message):
        check_chargeable(amount, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "least"),
    [
        (0, "usd", r"50 \(0\.50 usd\)"),
        (-50, "usd", r"50 \(0\.50 usd\)"),
        (0, "isk", r"100 \(1\.00 isk\)"),
        (0, "kwd", r"10 \(0\.010 kwd\)"),
    ],
    ids=["zero", "negative", "isk", "kwd"],
)
def test_non_positive_amount_is_refused(amount: int, currency: str, least: str) -> None:
    with pytest.raises(
        PaymentError, match=f"a charge must be positive; charge at least {least}"
    ):
        check_chargeable(amount, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "maximum"),
    [
        (100_000_000, "usd", r"99999999 \(999999\.99 usd\)"),
        (100_000_000, "jpy", r"99999999 \(99999999 jpy\)"),
        (10**12, "idr", r"999999999999 \(9999999999\.99 idr\)"),
        (10**10, "cop", r"9999999999 \(99999999\.99 cop\)"),
        (10**9, "inr", r"999999999 \(9999999\.99 inr\)"),
    ],
    ids=["usd", "jpy", "idr", "cop", "inr"],
)
def test_amount_above_the_maximum_is_refused(
    amount: int, currency: str, maximum: str
) -> None:
    with pytest.raises(
        PaymentError, match=f"is above Stripe's maximum of {maximum}; split it"
    ):
        check_chargeable(amount, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (
            1235,
            "kwd",
            "Stripe needs the last one to be 0, so the amount must be a multiple "
            "of 10; use 1230 or 1240",
        ),
        (
            550,
            "isk",
            "whole units only, so the amount must be a multiple of 100; use 500 or 600",
        ),
        (150050, "ugx", "multiple of 100; use 150000 or 150100"),
    ],
    ids=["kwd", "isk", "ugx"],
)
def test_amount_breaking_the_currency_step_is_refused(
    amount: int, currency: str, message: str
) -> None:
    with pytest.raises(
        PaymentError,
        match=f"amount {amount} cannot be charged in {currency}: .*{message}",
    ):
        check_chargeable(amount, currency)


@pytest.mark.parametrize(
    "amount", [50.0, True, "50", Decimal(50)], ids=["float", "bool", "str", "decimal"]
)
def test_check_chargeable_refuses_anything_but_an_int(amount: object) -> None:
    with pytest.raises(PaymentError, match="is not an integer number of minor units"):
        check_chargeable(amount, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", CURRENCIES)
def test_every_published_minimum_is_itself_chargeable(currency: str) -> None:
    minimum = minimum_charge(currency)
    if minimum is not None:
        check_chargeable(minimum, currency)
        assert minimum <= maximum_charge(currency)


# --- errors and the no-float rule ------------------------------------------


def test_refusals_are_payment_errors_answered_with_400() -> None:
    with pytest.raises(PaymentError) as caught:
        to_minor_units("10.005", "usd")
    assert caught.value.status == 400


def test_the_module_never_calls_float() -> None:
    tree = ast.parse(inspect.getsource(money))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
    ]
    assert calls == []
