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


def test_the_parcel_is_followed_until_delivered() -> None:
    created = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated")
    [track] = domain.decide(created, event("ShipmentCreated", "o1"))
    assert isinstance(track, domain.TrackParcel) and track.status == "created"
    shipped = domain.evolve(created, event("Shipped", "o1"))
    [track] = domain.decide(shipped, event("Shipped", "o1"))
    assert track.status == "shipped"
    delivered = domain.evolve(shipped, event("Delivered", "o1"))
    assert domain.decide(delivered, event("Shipped", "o1")) == []


def test_a_stale_carrier_event_does_not_move_the_parcel_again() -> None:
    shipped = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Shipped")
    assert domain.decide(shipped, event("ShipmentCreated", "o1")) == []
    assert domain.decide(fold("OrderPlaced", "PaymentConfirmed"),
                         event("PaymentConfirmed", "o1")) == []
