from datetime import UTC, datetime

import pytest

from schemas import Money
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


def test_an_order_ships_once_orders_says_it_may_and_only_once() -> None:
    [book] = domain.decide(fold("OrderPlaced"), event("OrderReadyToShip", "o1"))
    assert isinstance(book, domain.CreateShipment) and book.idempotency_key == "o1:shipment"
    booked = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated")
    assert domain.decide(booked, event("OrderReadyToShip", "o1")) == []


def test_a_payment_alone_does_not_ship_and_a_cancel_before_the_release_stops_it() -> None:
    assert domain.decide(ShipmentState(), event("OrderPlaced", "o1")) == []
    assert domain.decide(fold("OrderPlaced"), event("PaymentConfirmed", "o1")) == []
    cancelled = fold("OrderPlaced", "OrderCancelled")
    assert domain.decide(cancelled, event("OrderReadyToShip", "o1")) == []


def report(state: ShipmentState, status: str, **changes: object) -> domain.ParcelUpdate:
    fields = dict(carrier=state.carrier, tracking_number=state.tracking_number, status=status,
                  occurred_at=datetime.now(UTC))
    return domain.ParcelUpdate(**{**fields, **changes})  # type: ignore[arg-type]


def step(state: ShipmentState, status: str) -> ShipmentState:
    for data in domain.carrier_update(state, report(state, status)):
        state = domain.evolve(state, event(EVENT_FOR_DATA[type(data)].__name__, "o1", data))
    return state


def test_the_carriers_reports_move_the_parcel_until_delivered() -> None:
    state = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated")
    for status in ("shipped", "in_transit", "out_for_delivery", "delivery_failed",
                   "out_for_delivery", "delivered"):
        state = step(state, status)
        assert state.status == status
    assert state.failed_attempts == 1


def test_a_report_again_records_nothing_and_a_skipped_step_is_refused() -> None:
    shipped = step(fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated"), "shipped")
    assert domain.carrier_update(shipped, report(shipped, "shipped")) == []
    with pytest.raises(domain.UpdateRefused, match="cannot be delivered next"):
        domain.carrier_update(shipped, report(shipped, "delivered"))
    with pytest.raises(domain.UpdateRefused):  # a home delivery never waits in a store
        domain.carrier_update(shipped, report(shipped, "ready_for_pickup"))


def test_a_report_about_another_parcel_or_carrier_is_unknown() -> None:
    state = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated")
    with pytest.raises(domain.UnknownParcel):
        domain.carrier_update(state, report(state, "shipped", tracking_number="KIL000"))
    with pytest.raises(domain.UnknownParcel):
        domain.carrier_update(state, report(state, "shipped", carrier="nusapost"))


def test_a_cancelled_order_has_its_parcel_stopped_until_it_arrives() -> None:
    booked = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated")
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
    on_its_way = step(fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated"), "shipped")
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


def test_after_a_recall_a_stale_step_is_refused_and_the_parcel_may_still_come_back() -> None:
    out = step(step(step(fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated"), "shipped"),
                    "in_transit"), "out_for_delivery")
    recalled = domain.evolve(domain.evolve(out, event("OrderCancelled", "o1")),
                             event("ShipmentRecalled", "o1"))
    # a `delivered` the carrier sent before the recall, and took back when no answer came
    with pytest.raises(domain.UpdateRefused, match="was recalled"):
        domain.carrier_update(recalled, report(recalled, "delivered"))
    # recorded anyway (it got in first): the carrier's word that the parcel is back still counts
    delivered = domain.evolve(domain.evolve(step(out, "delivered"), event("OrderCancelled", "o1")),
                              event("ShipmentRecalled", "o1"))
    [back] = domain.carrier_update(delivered, report(delivered, "returned_to_sender"))
    assert type(back).__name__ == "ReturnedToSenderData"


def test_home_deliveries_go_by_postal_region_and_store_pickups_to_nusapost() -> None:
    placed = event("OrderPlaced", "o1")
    address = placed.data.delivery.address
    assert carrier_for(address.model_copy(update={"postal_code": "1000-001"}), None) == "kilat"
    assert carrier_for(address.model_copy(update={"postal_code": "8000-001"}), None) == "nusapost"
    assert carrier_for(None, "ST-LIS") == "nusapost"


def test_a_return_is_booked_with_the_same_carrier_and_received_once() -> None:
    delivered = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated", "Delivered")
    [book] = domain.decide(delivered, event("ReturnRequested", "o1"))
    assert isinstance(book, domain.BookReturn) and book.carrier == delivered.carrier
    requested = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated", "Delivered",
                     "ReturnRequested", "ReturnShipmentCreated")
    back = dict(carrier=requested.return_carrier,
                tracking_number=requested.return_tracking_number)
    assert domain.carrier_update(requested, report(requested, "in_transit", **back)) == []
    [received] = domain.carrier_update(requested, report(requested, "delivered", **back))
    assert received.return_id == requested.return_id
    done = domain.evolve(requested, event("ReturnReceived", "o1"))
    assert domain.carrier_update(done, report(done, "delivered", **back)) == []


def test_a_second_return_is_booked_anew_and_the_first_ones_parcel_changes_nothing() -> None:
    first = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated", "Delivered",
                 "ReturnRequested", "ReturnShipmentCreated", "ReturnReceived")
    old = dict(carrier=first.return_carrier, tracking_number=first.return_tracking_number)
    refund = Money(amount=1000, currency="EUR")
    again = event("ReturnRequested", "o1", return_id="ret_2", refund=refund, last=True)
    [book] = domain.decide(first, again)
    assert isinstance(book, domain.BookReturn) and book.return_id == "ret_2"
    second = domain.evolve(domain.evolve(first, again), event(
        "ReturnShipmentCreated", "o1", return_id="ret_2", tracking_number="KIL000000000000002"))
    assert domain.carrier_update(second, report(second, "delivered", **old)) == []
    [received] = domain.carrier_update(second, report(
        second, "delivered", carrier=second.return_carrier,
        tracking_number="KIL000000000000002"))
    assert (received.return_id, received.refund, received.last) == (  # type: ignore[attr-defined]
        "ret_2", refund, True)


def test_booking_happens_once() -> None:
    shipped = fold("OrderPlaced", "OrderReadyToShip", "ShipmentCreated", "Shipped")
    assert domain.decide(shipped, event("OrderReadyToShip", "o1")) == []
    assert domain.decide(fold("OrderPlaced", "OrderReadyToShip"),
                         event("OrderReadyToShip", "o1")) == []
