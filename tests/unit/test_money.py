"""Money in any currency: minor units by ISO 4217, amounts and dates in the shop's locale, the
tax line by the shop's terms, and what customers and engineers read (golden files in golden/;
regenerate them with ALUR_GOLDEN=write after checking the difference by eye)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import Money
from schemas.money import (
    MINOR_UNITS,
    UnknownCurrency,
    format_money,
    minor_units,
    to_major,
    to_minor,
    valid_locale,
)
from schemas.orders import (
    Address,
    Customer,
    Delivery,
    OrderLine,
    OrderPlacedData,
    PaymentInstruction,
)
from schemas.payments import RefundIssuedData
from services.notifications.templates import render
from services.orders.domain import (
    INDONESIA,
    InvalidOrder,
    ShopTerms,
    place_order,
    point_value,
    redeem,
    tax_of,
)
from services.orders.reports import render_html, render_report
from tests.unit.builders import event

GOLDEN = Path(__file__).parent / "golden"
PLACED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def matches_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ALUR_GOLDEN") == "write":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed"


def test_minor_units_follow_iso_4217_with_whole_rupiah() -> None:
    assert [minor_units(c) for c in ("EUR", "USD", "JPY", "KRW", "BHD", "KWD", "CLF")] == [
        2, 2, 0, 0, 3, 3, 4]
    assert minor_units("IDR") == 0  # the gateways' convention, not ISO's 2 (schemas/money.py)
    assert len(MINOR_UNITS) > 150 and all(len(c) == 3 and c.isupper() for c in MINOR_UNITS)
    assert str(to_major(1999, "EUR")) == "19.99" and to_major(150_000, "IDR") == 150_000
    assert str(to_major(1234, "BHD")) == "1.234"
    assert to_minor("19.99", "EUR") == 1999 and to_minor(1500, "JPY") == 1500
    with pytest.raises(ValueError, match="finer than"):
        to_minor("0.5", "IDR")


def test_an_unknown_currency_is_refused_where_money_enters() -> None:
    with pytest.raises(UnknownCurrency, match="'XYZ'"):
        minor_units("XYZ")
    with pytest.raises(ValidationError, match="ISO 4217"):
        Money(amount=100, currency="XYZ")
    with pytest.raises(ValidationError):
        Money.model_validate_json('{"amount": 100, "currency": "eur"}')


@pytest.mark.parametrize("amount,currency,locale,text", [
    (150_000, "IDR", "id_ID", "Rp150.000"),
    (1_500, "JPY", "ja_JP", "￥1,500"),
    (1_999, "EUR", "pt_PT", "19,99\xa0€"),
    (1_999, "EUR", "en", "€19.99"),
    (1_234, "BHD", "en", "BHD\xa01.234"),
    (-2_500, "IDR", "id_ID", "-Rp2.500"),
    (150_000, "IDR", None, "IDR\xa0150,000"),
])
def test_an_amount_reads_as_its_locale_writes_it(amount: int, currency: str,
                                                  locale: str | None, text: str) -> None:
    assert format_money(amount, currency, locale) == text


def test_a_locale_is_checked_and_hyphens_are_accepted() -> None:
    assert valid_locale("id-ID") == "id_ID"
    with pytest.raises(ValueError, match="not a locale"):
        valid_locale("xx_NOPE")


def test_ppn_is_rounded_half_up_whether_prices_include_it_or_not() -> None:
    rupiah = Money(amount=249_000, currency="IDR")
    included = tax_of(rupiah, INDONESIA)
    assert included is not None and included.amount.amount == 24_676  # 249000 * 11/111
    added = tax_of(rupiah, ShopTerms(prices_include_tax=False))
    assert added is not None and added.amount.amount == 27_390
    assert tax_of(rupiah, ShopTerms(tax_rate_bp=0)) is None
    assert tax_of(Money(amount=5, currency="IDR"), ShopTerms(prices_include_tax=False)) \
        .amount.amount == 1  # type: ignore[union-attr]  # 0.55 rounds up


@given(st.integers(1, 10**12), st.integers(1, 10_000), st.booleans())
def test_the_tax_is_the_nearest_minor_unit_to_the_exact_share(subtotal: int, rate: int,
                                                               included: bool) -> None:
    tax = tax_of(Money(amount=subtotal, currency="IDR"),
                 ShopTerms(tax_rate_bp=rate, prices_include_tax=included))
    assert tax is not None
    exact_num, exact_den = (subtotal * rate, 10_000 + rate) if included else (subtotal * rate,
                                                                              10_000)
    # |tax - exact| <= 1/2, ties up: 2*tax*den - 2*num lies in (-den, den]
    assert -exact_den < 2 * tax.amount.amount * exact_den - 2 * exact_num <= exact_den
    assert 0 <= tax.amount.amount <= subtotal


def test_exclusive_prices_add_the_tax_to_the_total_inclusive_ones_do_not() -> None:
    inclusive = _order("IDR", 125_000, INDONESIA)
    assert inclusive.total.amount == 250_000 and len(inclusive.taxes) == 1
    assert inclusive.taxes[0].amount.amount == 24_775 and inclusive.locale == "id_ID"
    exclusive = _order("IDR", 125_000, ShopTerms(prices_include_tax=False))
    assert exclusive.total.amount == 277_500
    assert exclusive.estimated_delivery == datetime(2026, 12, 4).date()


def test_a_loyalty_point_is_a_round_amount_of_the_currency() -> None:
    assert [point_value(c) for c in ("EUR", "IDR", "JPY", "BHD", "USD")] == [100, 1_000, 100,
                                                                             1_000, 100]
    total = Money(amount=250_000, currency="IDR")
    assert redeem(20, total).value == Money(amount=20_000, currency="IDR")
    with pytest.raises(InvalidOrder, match="at most 249 points"):
        redeem(250, total)


@pytest.mark.parametrize("currency,price,terms,locale", [
    ("IDR", 125_000, INDONESIA, "id_ID"),
    ("JPY", 1_480, ShopTerms(tax_name="消費税", tax_rate_bp=1000, prices_include_tax=False,
                             locale="ja_JP", delivery_days=2), "ja_JP"),
])
def test_the_confirmation_and_refund_e_mails_in_the_shops_currency(
        currency: str, price: int, terms: ShopTerms, locale: str) -> None:
    order = _order(currency, price, terms, reference="TKO-2026-0042", points=5)
    subject, body = render(event("OrderPlaced", data=order), "Siti", locale=order.locale)
    matches_golden(f"order_placed_{currency}.txt", f"Subject: {subject}\n\n{body}")
    refund = RefundIssuedData(order_id=order.order_id, refund_id="rf_1",
                              amount=Money(amount=order.total.amount // 2, currency=currency),
                              reason="returned")
    subject, body = render(event("RefundIssued", data=refund), "Siti", order, order.locale)
    matches_golden(f"refund_issued_{currency}.txt", f"Subject: {subject}\n\n{body}")
    pickup = _order(currency, price, terms, store="ST-JAKARTA")
    _, body = render(event("OrderPlaced", data=pickup), "Siti", locale=pickup.locale)
    assert "Ready for pickup: " in body and "Estimated delivery" not in body


@pytest.mark.parametrize("currency,locale", [("IDR", "id_ID"), ("JPY", "ja_JP")])
def test_the_report_writes_amounts_as_the_locale_does(currency: str, locale: str) -> None:
    scale = 1_000 if currency == "IDR" else 10
    data = {
        "by_day": [{"day": "2026-11-30", "shop_id": "toko-1", "channel": "online",
                    "payment_method": "ewallet", "currency": currency, "orders": 4,
                    "paid_orders": 3, "gmv": 450 * scale, "tax": 44 * scale + 595,
                    "tax_refunded": 12 * scale + 387},
                   {"day": "2026-12-01", "shop_id": "toko-1", "channel": "in_store",
                    "payment_method": "cash", "currency": currency, "orders": 1,
                    "paid_orders": 1, "gmv": 125 * scale, "tax": 12 * scale + 387,
                    "tax_refunded": 0}],
        "top_products": [{"sku": "BATIK-TULIS", "units": 3, "revenue": 375 * scale,
                          "currency": currency},
                         {"sku": "KOPI-GAYO", "units": 4, "revenue": 200 * scale,
                          "currency": currency}],
        "funnel": [{"placed": 5, "paid": 4, "delivered": 3, "completed": 2, "cancelled": 1,
                    "returned": 1, "avg_seconds_to_delivery": 3.5, "cancellation_rate": 0.2,
                    "return_rate": 0.2, "paid_rate": 0.8, "delivered_rate": 0.6}],
        "reviews": [{"reviews": 1, "average_rating": 5.0, "one_star": 0, "two_stars": 0,
                     "three_stars": 0, "four_stars": 0, "five_stars": 1}],
    }
    table: list[str] = []
    render_report(data, "table", table.append, locale=locale)
    matches_golden(f"report_{currency}.txt", "\n".join(table) + "\n")
    matches_golden(f"report_{currency}.html", render_html(data, locale=locale) + "\n")


def test_different_currencies_are_never_added_up_in_the_page() -> None:
    rows = [{"day": "2026-12-01", "shop_id": shop, "channel": "online", "payment_method":
             "card", "currency": cur, "orders": 1, "paid_orders": 1, "gmv": gmv, "tax": 0,
             "tax_refunded": 0} for shop, cur, gmv in (("toko", "IDR", 150_000),
                                                        ("mise", "JPY", 1_500))]
    page = render_html({"by_day": rows, "top_products": [], "funnel": [
        {"placed": 2, "paid": 2, "delivered": 0, "completed": 0, "cancelled": 0, "returned": 0,
         "avg_seconds_to_delivery": None, "cancellation_rate": 0, "return_rate": 0}],
        "reviews": [{"reviews": 0, "average_rating": None, "one_star": 0, "two_stars": 0,
                     "three_stars": 0, "four_stars": 0, "five_stars": 0}]}, locale="en")
    assert "2026-12-01 IDR" in page and "2026-12-01 JPY" in page
    assert "IDR\xa0150,000" in page and "¥1,500" in page and "151,500" not in page


def test_cash_on_delivery_adds_the_shop_s_fee_to_the_total_outside_the_tax() -> None:
    terms = ShopTerms(prices_include_tax=False, locale="id_ID", cod_fee=5_000)
    cod = _order("IDR", 125_000, terms, method="cod")
    assert cod.cod_fee == Money(amount=5_000, currency="IDR")
    assert cod.tax() == Money(amount=27_500, currency="IDR")  # on the goods only
    assert cod.total.amount == 250_000 + 27_500 + 5_000
    _, body = render(event("OrderPlaced", data=cod), "Siti", locale=cod.locale)
    assert "Subtotal: Rp250.000\nPPN 11%: Rp27.500\nCash on delivery fee: Rp5.000\n" \
           "Total: Rp282.500." in body
    card = _order("IDR", 125_000, terms)
    assert card.cod_fee is None and card.total.amount == 277_500
    none = _order("IDR", 125_000, ShopTerms(locale="id_ID"), method="cod")
    assert none.cod_fee is None and none.total.amount == 250_000


def _order(currency: str, price: int, terms: ShopTerms, *, reference: str | None = None,
           points: int | None = None, store: str | None = None,
           method: str = "ewallet") -> OrderPlacedData:
    lines = [OrderLine(sku="BATIK-TULIS", quantity=1,
                       unit_price=Money(amount=price, currency=currency)),
             OrderLine(sku="KOPI-GAYO", quantity=2,
                       unit_price=Money(amount=price // 2, currency=currency))]
    delivery = Delivery(method="click_and_collect", store_id=store) if store else Delivery(
        method="home_delivery", address=Address(line1="Jl. Merdeka 1", city="Jakarta",
                                                postal_code="10110", country="ID"))
    return place_order("ord_money", Customer(email="siti@example.co.id", name="Siti"), lines,
                       PaymentInstruction(method=method,  # type: ignore[arg-type]
                                          token="tok_ovo" if method == "ewallet" else None),
                       delivery,
                       currency, reference=reference, loyalty_points=points, terms=terms,
                       placed=PLACED_AT)
