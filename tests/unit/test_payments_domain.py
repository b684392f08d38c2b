from services.payments import domain
from services.payments.domain import PaymentState
from tests.unit.builders import event


def test_nothing_is_charged_before_stock_is_reserved() -> None:
    assert domain.decide(PaymentState(), event("OrderPlaced")) == []


def test_charge_when_stock_reserved_after_the_order_is_known() -> None:
    placed = domain.evolve(PaymentState(), event("OrderPlaced", "o1"))
    [charge] = domain.decide(placed, event("StockReserved", "o1"))
    assert charge.amount.amount == 4998 and charge.idempotency_key == "o1:capture"


def test_charge_when_the_order_arrives_after_its_reservation() -> None:
    reserved = domain.evolve(PaymentState(), event("StockReserved", "o1"))
    [charge] = domain.decide(reserved, event("OrderPlaced", "o1"))
    assert charge.instruction.token == "tok_visa"


def test_never_charge_twice() -> None:
    state = PaymentState()
    for name in ("OrderPlaced", "StockReserved", "PaymentConfirmed"):
        state = domain.evolve(state, event(name, "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []
    assert domain.decide(state, event("OrderPlaced", "o1")) == []


def test_an_order_cancelled_before_its_stock_was_reserved_is_never_charged() -> None:
    state = PaymentState()
    for name in ("OrderPlaced", "OrderCancelled"):
        state = domain.evolve(state, event(name, "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []
