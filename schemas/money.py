"""Money as people read it: how many minor units each currency has, and an amount formatted for
a locale.

Amounts travel as integers of minor units (`Money.amount`). What a minor unit is comes from
`MINOR_UNITS`, an explicit table of the active ISO 4217 codes and their exponents, with one
deliberate departure:

- IDR has the exponent 0 here, where ISO 4217 lists 2. The Indonesian gateways count rupiah
  whole: Midtrans' `gross_amount`, Xendit's invoice and payment-request amounts, DOKU's
  `amount` are all integers of rupiah, and no rupiah coin below 1 is in circulation. So
  `Money(amount=150000, currency="IDR")` is Rp150.000, not Rp1.500.

A currency missing from the table is refused where money enters (the event schema's
validation), so nothing downstream has to guess its exponent.

Formatting uses CLDR's patterns through babel (symbol, grouping, decimal mark and the place of
the symbol follow the locale), with the fraction digits of this table rather than CLDR's.
"""

from __future__ import annotations

from copy import copy
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import NumberPattern

_ZERO = ("BIF CLP DJF GNF IDR ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF")
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE "
    "SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VES VED "
    "WST XCD YER ZAR ZMW ZWG")
MINOR_UNITS: dict[str, int] = {
    **{code: 2 for code in _TWO.split()}, **{code: 0 for code in _ZERO.split()},
    **{code: 3 for code in _THREE.split()}, **{code: 4 for code in _FOUR.split()}}

DEFAULT_LOCALE = "en"


class UnknownCurrency(ValueError):
    """Not a currency of the table (an ISO 4217 code Alur knows the minor units of)."""


def minor_units(currency: str) -> int:
    """The currency's exponent: 2 for EUR (cents), 0 for JPY and (see above) IDR."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency code Alur knows the "
                              "minor units of") from None


def to_major(amount: int, currency: str) -> Decimal:
    """Minor units as a decimal amount of the currency: 1999 EUR -> 19.99, 1999 IDR -> 1999."""
    return Decimal(amount).scaleb(-minor_units(currency))


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """The inverse of `to_major`; an amount finer than the currency's minor unit is an error."""
    minor = Decimal(amount).scaleb(minor_units(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} {currency} is finer than the currency's minor unit")
    return int(minor)


def valid_locale(name: str) -> str:
    """`name` if babel knows it as a locale (`id_ID`, `id-ID`, `ja`, `en`), else ValueError."""
    _locale(name.replace("-", "_"))
    return name.replace("-", "_")


@lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError):
        raise ValueError(f"{name!r} is not a locale (e.g. id_ID, en, ja_JP)") from None


@lru_cache(maxsize=256)
def _pattern(locale: str, digits: int) -> NumberPattern:
    pattern: NumberPattern = copy(_locale(locale).currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return pattern


def format_money(amount: int, currency: str, locale: str | None = None) -> str:
    """`amount` minor units of `currency` as a person of `locale` writes it:
    150000 IDR in id_ID -> 'Rp150.000'; 1500 JPY in ja_JP -> '￥1,500'; 1999 EUR in pt_PT ->
    '19,99 €' (with a no-break space, as CLDR has it)."""
    name = (locale or DEFAULT_LOCALE).replace("-", "_")
    digits = minor_units(currency)
    text: str = _pattern(name, digits).apply(to_major(amount, currency), _locale(name),
                                             currency=currency, currency_digits=False)
    return _spaced(text, currency)


def _spaced(text: str, code: str) -> str:
    """Where the locale has no symbol of its own and writes the ISO code, a no-break space
    parts it from the digits ('IDR 150,000', '1.234 BHD'), as CLDR's currency spacing asks
    (babel leaves that out). A symbol such as Rp, € or ￥ is left as the pattern places it:
    Indonesian style (PUEBI) writes Rp150.000."""
    at = text.find(code)
    if at < 0:
        return text
    end = at + len(code)
    if end < len(text) and text[end].isdigit():
        return text[:end] + "\xa0" + text[end:]
    if at > 0 and text[at - 1].isdigit():
        return text[:at] + "\xa0" + text[at:]
    return text
