"""Property-based tests (hypothesis) of order validation: the totals, and every refusal."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Customer, Delivery, Money, OrderLine, PaymentInstruction
from services.orders import domain
from services.orders.api.models import PlaceOrder

CUSTOMER = Customer(customer_id="c-1", email="ada@example.com", name="Ada")
CARD = PaymentInstruction(method="card", token="tok_visa")
HOME = Delivery.model_validate({"method": "home_delivery", "address": {
    "line1": "1 Main St", "city": "Lisbon", "postal_code": "1000", "country": "PT"}})
skus = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)
currencies = st.sampled_from(["EUR", "USD", "IDR", "JPY"])


@st.composite
def lines(draw: st.DrawFn, currency: str | None = None, min_price: int = 1) -> list[OrderLine]:
    cur = currency or draw(currencies)
    names = draw(st.lists(skus, min_size=1, max_size=20, unique=True))
    return [OrderLine(sku=s, quantity=draw(st.integers(1, 1000)),
                      unit_price=Money(amount=draw(st.integers(min_price, 10**9)), currency=cur))
            for s in names]


def place(order_lines: list[OrderLine], currency: str | None = None):  # noqa: ANN201
    return domain.place_order("ord_1", CUSTOMER, order_lines, CARD, HOME, currency=currency)


@given(lines())
def test_a_valid_order_s_total_is_the_sum_of_its_lines_in_its_currency(
        order_lines: list[OrderLine]) -> None:
    placed = place(order_lines, currency=order_lines[0].unit_price.currency)
    assert placed.total.amount == sum(x.quantity * x.unit_price.amount for x in order_lines)
    assert placed.total.currency == order_lines[0].unit_price.currency
    assert isinstance(placed.total.amount, int)


@given(lines(), currencies)
def test_an_order_not_in_the_shop_s_currency_is_refused(order_lines: list[OrderLine],
                                                        shop_currency: str) -> None:
    if order_lines[0].unit_price.currency == shop_currency:
        assert place(order_lines, shop_currency)
    else:
        with pytest.raises(domain.CurrencyMismatch):
            place(order_lines, shop_currency)


@given(lines(), st.data())
def test_mixed_currencies_are_refused(order_lines: list[OrderLine], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(order_lines) - 1))
    other = "CHF" if order_lines[i].unit_price.currency != "CHF" else "GBP"
    order_lines[i] = order_lines[i].model_copy(update={"unit_price": Money(
        amount=order_lines[i].unit_price.amount, currency=other)})
    if len(order_lines) > 1:
        with pytest.raises(domain.CurrencyMismatch):
            place(order_lines)


@given(lines(min_price=0), st.data())
def test_a_non_positive_unit_price_is_refused(order_lines: list[OrderLine],
                                              data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(order_lines) - 1))
    order_lines[i] = order_lines[i].model_copy(update={"unit_price": Money(
        amount=0, currency=order_lines[i].unit_price.currency)})
    with pytest.raises(domain.InvalidOrder, match="positive"):
        place(order_lines)


@given(lines(), st.data())
def test_a_repeated_sku_is_refused(order_lines: list[OrderLine], data: st.DataObject) -> None:
    order_lines.append(data.draw(st.sampled_from(order_lines)))
    with pytest.raises(domain.InvalidOrder, match="one line"):
        place(order_lines)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(list(PlaceOrder.model_fields) + ["x"]), json_values))
def test_any_json_body_is_either_a_valid_order_or_a_validation_error(body: dict) -> None:
    try:
        order = PlaceOrder.model_validate(body)
    except pydantic.ValidationError as exc:
        # each error names its field: by location, or (whole-body checks) in the message
        assert all(e["loc"] or ": " in e["msg"] for e in exc.errors())
    else:
        assert 1 <= len(order.lines) <= 100 and all(x.quantity > 0 for x in order.lines)
