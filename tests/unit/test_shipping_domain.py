from services.shipping import domain
from services.shipping.domain import ShipmentState
from tests.unit.builders import event


def fold(*names: str) -> ShipmentState:
    state = ShipmentState()
    for name in names:
        state = domain.evolve(state, event(name, "o1"))
    return state


def test_ship_once_paid_whichever_fact_came_first() -> None:
    [a] = domain.decide(fold("OrderPlaced"), event("PaymentConfirmed", "o1"))
    [b] = domain.decide(fold("PaymentConfirmed"), event("OrderPlaced", "o1"))
    assert isinstance(a, domain.CreateShipment) and a == b


def test_unpaid_orders_do_not_ship() -> None:
    assert domain.decide(ShipmentState(), event("OrderPlaced", "o1")) == []


DEADLINES = domain.deadlines_under(domain.Policy())


def test_the_parcel_moves_on_its_timer_until_delivered() -> None:
    created = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated")
    assert DEADLINES(created)["parcel"] - created.moved_at == domain.Policy().pickup_after
    [track] = domain.on_timer(created, "parcel")
    assert isinstance(track, domain.TrackParcel) and track.status == "created"
    shipped = domain.evolve(created, event("Shipped", "o1"))
    assert DEADLINES(shipped)["parcel"] - shipped.moved_at == domain.Policy().step_after
    delivered = domain.evolve(shipped, event("Delivered", "o1"))
    assert DEADLINES(delivered) == {} and domain.on_timer(delivered, "parcel") == []


def test_a_parcel_cancelled_before_it_left_is_not_followed() -> None:
    cancelled = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "OrderCancelled")
    assert DEADLINES(cancelled) == {}


def test_cash_on_delivery_ships_once_stock_is_reserved() -> None:
    placed = event("OrderPlaced", "o1")
    cod = placed.model_copy(update={"data": placed.data.model_copy(update={
        "payment": placed.data.payment.model_copy(update={"method": "cod", "token": None})})})
    state = domain.evolve(ShipmentState(), cod)
    [book] = domain.decide(state, event("StockReserved", "o1"))
    assert isinstance(book, domain.CreateShipment)


def test_a_requested_return_is_collected_once() -> None:
    delivered = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Delivered",
                     "ReturnRequested")
    [received] = domain.on_timer(delivered, "return")
    assert received.return_id == delivered.return_id
    done = domain.evolve(delivered, event("ReturnReceived", "o1"))
    assert "return" not in DEADLINES(done) and domain.on_timer(done, "return") == []


def test_booking_happens_once() -> None:
    shipped = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Shipped")
    assert domain.decide(shipped, event("PaymentConfirmed", "o1")) == []
    assert domain.decide(fold("OrderPlaced", "PaymentConfirmed"),
                         event("PaymentConfirmed", "o1")) == []
