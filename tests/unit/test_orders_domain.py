import pytest

from schemas import Address, Customer, Delivery, Money, OrderLine, PaymentInstruction
from services.orders import domain
from services.orders.domain import OrderState
from tests.unit.builders import event

CUSTOMER = Customer(customer_id="c1", email="ada@example.com", name="Ada")
HOME = Delivery(method="home_delivery", address=Address(
    line1="1 Main St", city="Lisbon", postal_code="1000", country="PT"))
CARD = PaymentInstruction(method="card", token="tok_visa")


def line(sku: str, qty: int, cents: int, currency: str = "EUR") -> OrderLine:
    return OrderLine(sku=sku, quantity=qty, unit_price=Money(amount=cents, currency=currency))


def test_place_order_totals_the_lines() -> None:
    data = domain.place_order("o1", CUSTOMER, [line("A", 2, 250), line("B", 1, 1000)], CARD, HOME)
    assert data.total == Money(amount=1500, currency="EUR")


@pytest.mark.parametrize("lines, payment, delivery, message", [
    ([line("A", 1, 100), line("B", 1, 100, "USD")], CARD, HOME, "one currency"),
    ([line("A", 1, 100), line("A", 2, 100)], CARD, HOME, "one line only"),
    ([line("A", 1, 0)], CARD, HOME, "positive"),
    ([line("A", 1, 100)], PaymentInstruction(method="card"), HOME, "token"),
    ([line("A", 1, 100)], CARD, Delivery(method="home_delivery"), "address"),
    ([line("A", 1, 100)], PaymentInstruction(method="cash"), HOME, "not supported"),
    ([line("A", 1, 100)], CARD, Delivery(method="click_and_collect"), "store_id"),
    ([line("A", 1, 100)], PaymentInstruction(method="cod"),
     Delivery(method="click_and_collect", store_id="ST-1"), "home delivery"),
])
def test_place_order_refuses_what_cannot_be_placed(lines, payment, delivery, message) -> None:
    with pytest.raises(domain.InvalidOrder, match=message):
        domain.place_order("o1", CUSTOMER, lines, payment, delivery)


def test_status_follows_the_flow_and_never_moves_back() -> None:
    state = OrderState()
    for type_name in ("OrderPlaced", "StockReserved", "PaymentConfirmed", "Shipped"):
        state = domain.evolve(state, event(type_name))
    assert state.status == "shipped"
    late = domain.evolve(state, event("StockReserved"))
    assert late.status == "shipped"


def test_stock_rejected_cancels_the_order() -> None:
    placed = domain.evolve(OrderState(), event("OrderPlaced"))
    decided = domain.decide(placed, event("StockRejected"))
    assert [d.reason for d in decided] == ["out_of_stock"]


def test_a_cancelled_order_decides_nothing_more() -> None:
    state = domain.evolve(OrderState(), event("OrderCancelled"))
    assert state.status == "cancelled"
    assert domain.decide(state, event("PaymentFailed")) == []
    assert domain.evolve(state, event("Delivered")).status == "cancelled"
