from datetime import UTC, datetime

import pytest

from schemas.envelope import EVENT_FOR_DATA
from services.shipping import domain
from services.shipping.carrier import carrier_for
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


def report(state: ShipmentState, status: str, **changes: object) -> domain.ParcelUpdate:
    fields = dict(carrier=state.carrier, tracking_number=state.tracking_number, status=status,
                  occurred_at=datetime.now(UTC))
    return domain.ParcelUpdate(**{**fields, **changes})  # type: ignore[arg-type]


def step(state: ShipmentState, status: str) -> ShipmentState:
    for data in domain.carrier_update(state, report(state, status)):
        state = domain.evolve(state, event(EVENT_FOR_DATA[type(data)].__name__, "o1", data))
    return state


def test_the_carriers_reports_move_the_parcel_until_delivered() -> None:
    state = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated")
    for status in ("shipped", "in_transit", "out_for_delivery", "delivery_failed",
                   "out_for_delivery", "delivered"):
        state = step(state, status)
        assert state.status == status
    assert state.failed_attempts == 1


def test_a_report_again_records_nothing_and_a_skipped_step_is_refused() -> None:
    shipped = step(fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated"), "shipped")
    assert domain.carrier_update(shipped, report(shipped, "shipped")) == []
    with pytest.raises(domain.UpdateRefused, match="cannot be delivered next"):
        domain.carrier_update(shipped, report(shipped, "delivered"))
    with pytest.raises(domain.UpdateRefused):  # a home delivery never waits in a store
        domain.carrier_update(shipped, report(shipped, "ready_for_pickup"))


def test_a_report_about_another_parcel_or_carrier_is_unknown() -> None:
    state = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated")
    with pytest.raises(domain.UnknownParcel):
        domain.carrier_update(state, report(state, "shipped", tracking_number="KIL000"))
    with pytest.raises(domain.UnknownParcel):
        domain.carrier_update(state, report(state, "shipped", carrier="nusapost"))


def test_a_cancelled_order_has_its_parcel_stopped_until_it_arrives() -> None:
    booked = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated")
    [cancel] = domain.decide(booked, event("OrderCancelled", "o1"))
    assert cancel == domain.CancelShipment("o1", booked.shipment_id, booked.carrier,
                                           booked.tracking_number, "created")
    # The cancel raced the pickup: the parcel on its way is stopped (recalled) too ...
    on_its_way = step(step(booked, "shipped"), "in_transit")
    [recall] = domain.decide(on_its_way, event("OrderCancelled", "o1"))
    assert isinstance(recall, domain.CancelShipment) and recall.parcel_status == "in_transit"
    # ... but once it arrived there is nothing to stop, and a second cancel changes nothing.
    delivered = step(step(on_its_way, "out_for_delivery"), "delivered")
    assert domain.decide(delivered, event("OrderCancelled", "o1")) == []
    cancelled = domain.evolve(on_its_way, event("OrderCancelled", "o1"))
    assert domain.decide(cancelled, event("OrderCancelled", "o1")) == []


def test_only_a_cancelled_orders_parcel_is_returned_to_sender_and_then_rests() -> None:
    on_its_way = step(fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated"), "shipped")
    with pytest.raises(domain.UpdateRefused, match="not cancelled"):
        domain.carrier_update(on_its_way, report(on_its_way, "returned_to_sender"))
    cancelled = domain.evolve(on_its_way, event("OrderCancelled", "o1"))
    [back] = domain.carrier_update(cancelled, report(cancelled, "returned_to_sender"))
    assert back.tracking_number == cancelled.tracking_number
    rests = step(cancelled, "returned_to_sender")
    assert rests.status == "returned_to_sender"
    assert domain.carrier_update(rests, report(rests, "returned_to_sender")) == []
    with pytest.raises(domain.UpdateRefused):
        domain.carrier_update(rests, report(rests, "delivered"))


def test_home_deliveries_go_by_postal_region_and_store_pickups_to_nusapost() -> None:
    placed = event("OrderPlaced", "o1")
    address = placed.data.delivery.address
    assert carrier_for(address.model_copy(update={"postal_code": "1000-001"}), None) == "kilat"
    assert carrier_for(address.model_copy(update={"postal_code": "8000-001"}), None) == "nusapost"
    assert carrier_for(None, "ST-LIS") == "nusapost"


def test_cash_on_delivery_ships_once_stock_is_reserved() -> None:
    placed = event("OrderPlaced", "o1")
    cod = placed.model_copy(update={"data": placed.data.model_copy(update={
        "payment": placed.data.payment.model_copy(update={"method": "cod", "token": None})})})
    state = domain.evolve(ShipmentState(), cod)
    [book] = domain.decide(state, event("StockReserved", "o1"))
    assert isinstance(book, domain.CreateShipment)


def test_a_return_is_booked_with_the_same_carrier_and_received_once() -> None:
    delivered = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Delivered")
    [book] = domain.decide(delivered, event("ReturnRequested", "o1"))
    assert isinstance(book, domain.BookReturn) and book.carrier == delivered.carrier
    requested = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Delivered",
                     "ReturnRequested", "ReturnShipmentCreated")
    back = dict(carrier=requested.return_carrier,
                tracking_number=requested.return_tracking_number)
    assert domain.carrier_update(requested, report(requested, "in_transit", **back)) == []
    [received] = domain.carrier_update(requested, report(requested, "delivered", **back))
    assert received.return_id == requested.return_id
    done = domain.evolve(requested, event("ReturnReceived", "o1"))
    assert domain.carrier_update(done, report(done, "delivered", **back)) == []


def test_booking_happens_once() -> None:
    shipped = fold("OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Shipped")
    assert domain.decide(shipped, event("PaymentConfirmed", "o1")) == []
    assert domain.decide(fold("OrderPlaced", "PaymentConfirmed"),
                         event("PaymentConfirmed", "o1")) == []
