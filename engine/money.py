"""Exact money for Stripe: decimal prices in, integer minor units out.

Stripe takes every amount as a whole number of the currency's minor unit:
1000 is 10.00 usd, 500 is 500 jpy, 1230 is 1.230 kwd. This module turns a
decimal price into that integer and back without a float anywhere, and refuses,
with a message that says what to do, anything Stripe would refuse or would
charge differently from what was asked:

* a price with more decimal places than the currency has (10.005 usd);
* a three-decimal currency amount whose last digit is not 0 (1.235 kwd);
* a fraction of a unit in isk or ugx, which Stripe sends with two decimal
  places that must both be 0 (5 isk is 500, 5.50 isk cannot be charged);
* an amount that is not positive, is below Stripe's published minimum for the
  currency, or has more digits than Stripe accepts.

Prices may be a Decimal, an int or a plain decimal string such as "19.99".
Floats, bools, NaN and infinities are refused rather than guessed at.
"""

from __future__ import annotations

import re
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_FLOOR,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    localcontext,
)

from .errors import PaymentError

# Source for every table below: Stripe's "Supported currencies" page,
# https://docs.stripe.com/currencies (presentment currencies, zero-decimal and
# three-decimal lists, special cases, minimum and maximum charge amounts), and
# for the ISK date, https://support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds

# The currencies Stripe can present a charge in. Which of them an account may
# use depends on its country; Stripe has the last word when the charge is made.
SUPPORTED_CURRENCIES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND
    BOB BRL BSD BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP
    DZD EGP ETB EUR FJD FKP GBP GEL GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR
    ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD KYD KZT LAK LBP LKR LRD
    LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK
    NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR
    SEK SGD SHP SLE SOS SRD STD SZL THB TJS TND TOP TRY TTD TWD TZS UAH UGX
    USD UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    """.split()
)

# Amounts in these are whole units: 500 jpy is sent as 500.
ZERO_DECIMAL_CURRENCIES: frozenset[str] = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF".split()
)

# Amounts in these count thousandths, but Stripe's payment partners need the
# last digit to be 0, so every amount is a multiple of 10: 1.230 kwd is 1230.
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset("BHD JOD KWD OMR TND".split())

# Stripe's special cases. Iceland's krona and Uganda's shilling no longer have
# subunits, yet for backwards compatibility the API still counts them in
# hundredths: 5 isk is sent as 500, and an amount that is not a multiple of 100
# (a fraction of a unit) is refused. Stripe's page also puts UGX in its
# zero-decimal list; the special-case rule is the one its API applies, so here
# UGX is two-decimal like ISK. (Stripe began enforcing whole ISK amounts on
# 2023-04-14.) Hungary's forint and Taiwan's dollar are the other two special
# cases: they are plain two-decimal currencies for charges, and only manual
# payouts in them must be whole units. This module makes no payouts, so no
# charge rule follows from that.
WHOLE_UNIT_CURRENCIES: frozenset[str] = frozenset({"ISK", "UGX"})

# Stripe's published minimum charge, in major units. Stripe applies the
# minimum of the account's settlement currency after conversion, so a charge in
# another currency can still be refused; these catch the common case early.
_MINIMUM_PRICES: dict[str, str] = {
    "USD": "0.50",
    "AED": "2.00",
    "ARS": "0.50",
    "AUD": "0.50",
    "BRL": "0.50",
    "CAD": "0.50",
    "CHF": "0.50",
    "COP": "0.50",
    "CZK": "15.00",
    "DKK": "2.50",
    "EUR": "0.50",
    "GBP": "0.30",
    "HKD": "4.00",
    "HUF": "175.00",
    "IDR": "0.50",
    "ILS": "0.50",
    "INR": "0.50",
    "JPY": "50",
    "KRW": "50",
    "MXN": "10",
    "MYR": "2.00",
    "NOK": "3.00",
    "NZD": "0.50",
    "PHP": "0.50",
    "PLN": "2.00",
    "RON": "2.00",
    "RUB": "0.50",
    "SEK": "3.00",
    "SGD": "0.50",
    "THB": "10",
    "ZAR": "0.50",
}

# The most digits Stripe takes in an amount outside card payments, which is
# also the API reference's general rule: eight for most currencies (99999999 is
# 999,999.99 usd), twelve for IDR, ten for COP and nine for INR. Card payments
# may go up to twelve digits (nine on American Express); the card network has
# the last word on those, and this module keeps to the limits above.
_DEFAULT_MAXIMUM = 99_999_999
_MAXIMUM_AMOUNTS: dict[str, int] = {
    "IDR": 999_999_999_999,
    "COP": 9_999_999_999,
    "INR": 999_999_999,
}

# How many trailing zeros Stripe demands of an amount in minor units.
_STEP_PLACES: dict[str, int] = {code: 1 for code in THREE_DECIMAL_CURRENCIES} | {
    code: 2 for code in WHOLE_UNIT_CURRENCIES
}

_CODE = re.compile(r"[A-Za-z]{3}")
# [0-9], not \d: \d also matches other scripts' digits, which Decimal accepts.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# What a person types as a price: digits, then an optional fraction. No sign,
# exponent, underscore or other script's digits, so that a typo such as
# "10_00" is refused rather than read as 1000.
_PRICE_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# No Stripe amount has this many digits; refusing earlier keeps the maths small.
_MAX_DIGITS = 18
# Only exact operations (shifts by powers of ten, flooring) run in this context;
# an inexact result would be a bug, so it raises instead of rounding.
_EXACT = Context(
    prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact]
)


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places Stripe's API amounts carry for `currency`."""
    code = _known(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def amount_step(currency: str) -> int:
    """What every amount in `currency`, in minor units, must be a multiple of."""
    return int(10 ** _STEP_PLACES.get(_known(currency), 0))


def minimum_charge(currency: str) -> int | None:
    """Stripe's published minimum charge in minor units, or None if it has none."""
    code = _known(currency)
    price = _MINIMUM_PRICES.get(code)
    return None if price is None else to_minor_units(Decimal(price), code)


def maximum_charge(currency: str) -> int:
    """The largest amount in minor units Stripe accepts for `currency`."""
    return _MAXIMUM_AMOUNTS.get(_known(currency), _DEFAULT_MAXIMUM)


def to_minor_units(price: Decimal | int | str, currency: str) -> int:
    """The exact integer amount Stripe expects for `price` in `currency`."""
    code = _known(currency)
    value = _as_price(price, code)
    exponent = minor_unit_exponent(code)
    if value.adjusted() + exponent >= _MAX_DIGITS:
        raise PaymentError(
            f"price {value} cannot be charged in {_low(code)}: it is far above "
            f"Stripe's maximum of {_major(maximum_charge(code), code)}; "
            "split the payment into smaller charges"
        )
    places = exponent - _STEP_PLACES.get(code, 0)
    with localcontext(_EXACT):
        units = value.scaleb(places)
        if units != units.to_integral_value():
            below, above = _neighbours(value, places)
            raise PaymentError(
                f"price {value} cannot be charged in {_low(code)}: {_rule(code)}; "
                f"round the price to {below} or {above}"
            )
        return int(units) * amount_step(code)


def parse_price(text: str) -> Decimal:
    """The price a person typed, such as "10.00", or a PaymentError saying why not.

    Stricter than the prices to_minor_units takes from code: only ASCII digits
    with an optional fraction, so input from an API call, a config file or a
    command line is never read as a different number than the one meant.
    """
    if not isinstance(text, str) or not _PRICE_TEXT.fullmatch(text):
        shown = repr(text[:40]) if isinstance(text, str) else type(text).__name__
        raise PaymentError(
            f"price {shown} is not a plain decimal number; write digits with an "
            'optional fraction, such as "10.00" (no sign, exponent, '
            "separator or non-ASCII digits)"
        )
    return Decimal(text)


def from_minor_units(amount: int, currency: str) -> Decimal:
    """The exact price an amount in minor units stands for, with its places."""
    code = _known(currency)
    _require_amount(amount, code)
    if amount < 0:
        raise PaymentError(
            f"amount {amount} in {_low(code)} is negative; Stripe amounts, "
            "refunds included, are never negative: pass the positive amount"
        )
    with localcontext(_EXACT):
        return Decimal(amount).scaleb(-minor_unit_exponent(code))


def check_chargeable(amount: int, currency: str) -> None:
    """Refuse an amount in minor units that Stripe would not charge."""
    code = _known(currency)
    _require_amount(amount, code)
    low = _low(code)
    least = minimum_charge(code) or amount_step(code)
    if amount <= 0:
        raise PaymentError(
            f"amount {amount} cannot be charged in {low}: a charge must be "
            f"positive; charge at least {least} ({_major(least, code)})"
        )
    step = amount_step(code)
    if amount % step:
        below = amount - amount % step
        raise PaymentError(
            f"amount {amount} cannot be charged in {low}: {_rule(code)}, so the "
            f"amount must be a multiple of {step}; use {below} or {below + step}"
        )
    if amount < least:
        raise PaymentError(
            f"amount {amount} ({_major(amount, code)}) is below Stripe's minimum "
            f"charge of {least} ({_major(least, code)}); charge at least "
            f"{_major(least, code)}"
        )
    most = maximum_charge(code)
    if amount > most:
        raise PaymentError(
            f"amount {amount} ({_major(amount, code)}) is above Stripe's maximum "
            f"of {most} ({_major(most, code)}); split it into smaller charges"
        )


def _known(currency: str) -> str:
    """The upper-case code of a currency Stripe supports, or a PaymentError."""
    if not isinstance(currency, str) or not _CODE.fullmatch(currency):
        raise PaymentError(
            f"currency {currency!r} is not a three-letter ISO 4217 code; "
            "use a code such as 'usd' or 'eur'"
        )
    code = currency.upper()
    if code not in SUPPORTED_CURRENCIES:
        raise PaymentError(
            f"currency {currency!r} is not one Stripe can charge in; use one of "
            "Stripe's presentment currencies, such as 'usd' or 'eur'"
        )
    return code


def _as_price(price: object, code: str) -> Decimal:
    """`price` as a finite, non-negative Decimal, or a PaymentError."""
    where = f"cannot be charged in {_low(code)}"
    if isinstance(price, bool):
        raise PaymentError(
            f"price {price} {where}: a bool is not a price; "
            "pass a Decimal, an int or a string such as '19.99'"
        )
    if isinstance(price, float):
        raise PaymentError(
            f"price {price!r} {where}: a float cannot hold most prices exactly; "
            "pass it as a Decimal or a string such as '19.99'"
        )
    value = _parse(price, where)
    if not value.is_finite():
        raise PaymentError(
            f"price {value} {where}: it is not a finite number; "
            "pass a price such as '19.99'"
        )
    if value < 0:
        raise PaymentError(
            f"price {value} {where}: it is negative; "
            "pass the positive price (refunds are positive amounts too)"
        )
    return value


def _parse(price: object, where: str) -> Decimal:
    """A Decimal from a Decimal, an int or a plain decimal string."""
    if isinstance(price, Decimal):
        return price
    if isinstance(price, int):
        return Decimal(price)
    if isinstance(price, str):
        text = price.strip()
        if _PLAIN_NUMBER.fullmatch(text):
            return Decimal(text)
        raise PaymentError(
            f"price {price!r} {where}: it is not a plain decimal number; "
            "write it with digits and an optional point, such as '19.99'"
        )
    raise PaymentError(
        f"price {price!r} {where}: a {type(price).__name__} is not a price; "
        "pass a Decimal, an int or a string such as '19.99'"
    )


def _require_amount(amount: object, code: str) -> None:
    """Refuse anything but an int as an amount in minor units."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise PaymentError(
            f"amount {amount!r} in {_low(code)} is not an integer number of "
            "minor units; convert the price with to_minor_units first"
        )


def _neighbours(value: Decimal, places: int) -> tuple[Decimal, Decimal]:
    """The chargeable prices just below and just above `value`."""
    below = value.scaleb(places).to_integral_value(rounding=ROUND_FLOOR)
    return below.scaleb(-places), (below + 1).scaleb(-places)


def _rule(code: str) -> str:
    """The precision rule Stripe applies to `code`, as a clause."""
    low = _low(code)
    if code in WHOLE_UNIT_CURRENCIES:
        return f"Stripe charges {low} in whole units only"
    if code in THREE_DECIMAL_CURRENCIES:
        return f"{low} has 3 decimal places and Stripe needs the last one to be 0"
    if code in ZERO_DECIMAL_CURRENCIES:
        return f"{low} has no decimal places"
    return f"{low} has 2 decimal places"


def _major(amount: int, code: str) -> str:
    """An amount in minor units written as a price with its currency."""
    with localcontext(_EXACT):
        price = Decimal(amount).scaleb(-minor_unit_exponent(code))
    return f"{price} {_low(code)}"


def _low(code: str) -> str:
    """The lower-case code Stripe uses in its API and we use in messages."""
    return code.lower()
