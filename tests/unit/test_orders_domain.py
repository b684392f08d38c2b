from datetime import timedelta

import pytest

from schemas import Address, Customer, Delivery, Money, OrderLine, PaymentInstruction
from schemas.envelope import EVENT_FOR_DATA
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


def fold_all(*names: str, method: str = "card") -> OrderState:
    """Fold the events, and what the orders service decided on each."""
    state = OrderState()
    for name in names:
        e = (event(name, "o1", payment=PaymentInstruction(
                method=method, token="tok_visa" if method == "card" else None))
             if name == "OrderPlaced" else event(name, "o1"))
        decided = domain.decide(state, e)
        state = domain.evolve(state, e)
        for d in decided:
            state = domain.evolve(state, event(EVENT_FOR_DATA[type(d)].__name__, "o1", d))
    return state


POLICY = domain.Policy(release_after=timedelta(seconds=30))
DUE = domain.deadlines_under(POLICY)


def test_a_paid_order_is_released_to_shipping_when_its_cancel_window_ends() -> None:
    assert "release" not in DUE(fold_all("OrderPlaced", "StockReserved"))
    paid = fold_all("OrderPlaced", "StockReserved", "PaymentConfirmed")
    assert paid.since is not None and DUE(paid)["release"] == paid.since + timedelta(seconds=30)
    assert [type(d).__name__ for d in domain.on_timer(paid, "release")] == [
        "OrderReadyToShipData"]
    assert domain.cancel(paid, "o1")[0].reason == "customer_request"
    released = domain.evolve(paid, event("OrderReadyToShip", "o1"))
    assert "release" not in DUE(released) and domain.on_timer(released, "release") == []
    with pytest.raises(domain.NotAllowedNow, match="released"):
        domain.cancel(released, "o1")


def test_cash_on_delivery_is_released_once_reserved_and_a_cancelled_order_never() -> None:
    assert "release" in DUE(fold_all("OrderPlaced", "StockReserved", method="cod"))
    late = fold_all("OrderPlaced", "StockReserved", "PaymentPending", "PaymentExpired",
                    "PaymentConfirmed")
    assert late.status == "cancelled" and "release" not in DUE(late)
    assert domain.on_timer(late, "release") == []


def test_with_no_window_to_cancel_in_the_paid_order_is_released_with_its_payment() -> None:
    at_once = domain.decide_under(domain.Policy(release_after=timedelta(0)))
    assert domain.decide_under(POLICY) is domain.decide
    reserved = fold_all("OrderPlaced", "StockReserved")
    assert at_once(reserved, event("PaymentConfirmed", "o1")) == [
        domain.OrderReadyToShipData(order_id="o1", location="WH-1")]  # held there
    # Cash on delivery ships once its stock is reserved; a refusal cancels, never releases.
    placed_cod = fold_all("OrderPlaced", method="cod")
    assert [type(d).__name__ for d in at_once(placed_cod, event("StockReserved", "o1"))] == [
        "OrderReadyToShipData"]
    assert [type(d).__name__ for d in at_once(reserved, event("PaymentFailed", "o1"))] == [
        "OrderCancelledData"]
    released = domain.evolve(domain.evolve(reserved, event("PaymentConfirmed", "o1")),
                             event("OrderReadyToShip", "o1"))
    assert at_once(released, event("ShipmentCreated", "o1")) == []
