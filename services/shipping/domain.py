"""A shipment per order: booked once the order may ship, then followed step by step. Pure.

An order may ship once it is paid, or once its stock is reserved when the courier collects
the cash on delivery. Home delivery goes created -> shipped -> in transit -> out for delivery
-> delivered, with a failed attempt sending the parcel out again; click-and-collect goes
created -> shipped -> ready for pickup -> picked up. The carrier is asked for the next step
when the parcel's timer passes (`deadlines`), and its answer is recorded as the event. An order
cancelled before the parcel left is not followed further. A return is collected one step after
it was requested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from schemas import Address, Event, Model, ReturnLine, ReturnReceivedData

PARCEL_EVENTS = {
    "ShipmentCreated": "created", "Shipped": "shipped", "InTransit": "in_transit",
    "OutForDelivery": "out_for_delivery", "DeliveryFailed": "delivery_failed",
    "Delivered": "delivered", "ReadyForPickup": "ready_for_pickup", "PickedUp": "picked_up",
}
DONE = frozenset({"delivered", "picked_up"})


@dataclass(frozen=True)
class CreateShipment:
    order_id: str
    address: Address | None
    store_id: str | None
    idempotency_key: str


@dataclass(frozen=True)
class TrackParcel:
    """Command: ask the carrier what happened next to the parcel."""

    order_id: str
    shipment_id: str
    tracking_number: str
    status: str
    failed_attempts: int
    address: Address | None
    store_id: str | None


@dataclass(frozen=True)
class Policy:
    """How long the (simulated) courier takes: to collect the parcel, then for each step."""

    pickup_after: timedelta = timedelta(seconds=2)
    step_after: timedelta = timedelta(seconds=0.5)


@dataclass(frozen=True)
class ShipmentState:
    order_id: str | None = None
    address: Address | None = None
    store_id: str | None = None
    cod: bool = False
    stock_reserved: bool = False
    paid: bool = False
    cancelled: bool = False
    shipment_id: str | None = None
    tracking_number: str | None = None
    status: str | None = None
    moved_at: datetime | None = None  # when the parcel last changed status
    failed_attempts: int = 0
    return_id: str | None = None
    return_lines: tuple[ReturnLine, ...] = ()
    return_requested_at: datetime | None = None
    return_received: bool = False

    @property
    def ready_to_ship(self) -> bool:
        deliverable = self.address is not None or self.store_id is not None
        may = self.paid or (self.cod and self.stock_reserved)
        return deliverable and may and not self.cancelled and self.shipment_id is None

    @property
    def moving(self) -> bool:
        """The parcel has a next step coming (an order cancelled before it left has none)."""
        if self.status is None or self.status in DONE:
            return False
        return not (self.cancelled and self.status == "created")


def evolve(state: ShipmentState, event: Event) -> ShipmentState:
    if event.type == "OrderPlaced":
        delivery = event.data.delivery
        if delivery.method == "in_store":
            return replace(state, order_id=event.data.order_id)  # handed over at the till
        return replace(state, order_id=event.data.order_id, address=delivery.address,
                       store_id=delivery.store_id if delivery.method == "click_and_collect"
                       else None, cod=event.data.payment.method == "cod")
    if event.type == "StockReserved":
        return replace(state, stock_reserved=True)
    if event.type == "PaymentConfirmed":
        return replace(state, paid=True)
    if event.type == "OrderCancelled":
        return replace(state, cancelled=True)
    if event.type == "ReturnRequested":
        return replace(state, return_id=event.data.return_id,
                       return_lines=tuple(event.data.lines), return_requested_at=event.time)
    if event.type == "ReturnReceived":
        return replace(state, return_received=True)
    status = PARCEL_EVENTS.get(event.type)
    if status is None:
        return state
    if event.type == "ShipmentCreated":
        state = replace(state, shipment_id=event.data.shipment_id,
                        tracking_number=event.data.tracking_number)
    failed = state.failed_attempts + (event.type == "DeliveryFailed")
    return replace(state, status=status, moved_at=event.time, failed_attempts=failed)


def decide(state: ShipmentState, event: Event) -> list[CreateShipment]:
    after = evolve(state, event)
    if after.ready_to_ship and not state.ready_to_ship:
        assert after.order_id is not None
        return [CreateShipment(after.order_id, None if after.store_id else after.address,
                               after.store_id, f"{after.order_id}:shipment")]
    return []


def deadlines_under(policy: Policy) -> Callable[[ShipmentState], dict[str, datetime]]:
    def deadlines(state: ShipmentState) -> dict[str, datetime]:
        due: dict[str, datetime] = {}
        if state.moving and state.moved_at is not None:
            wait = policy.pickup_after if state.status == "created" else policy.step_after
            due["parcel"] = state.moved_at + wait
        if state.return_requested_at is not None and not state.return_received:
            due["return"] = state.return_requested_at + policy.pickup_after
        return due

    return deadlines


def on_timer(state: ShipmentState, kind: str) -> list[TrackParcel | Model]:
    assert state.order_id is not None
    if kind == "parcel" and state.moving:
        assert state.shipment_id is not None and state.tracking_number is not None
        assert state.status is not None
        return [TrackParcel(state.order_id, state.shipment_id, state.tracking_number,
                            state.status, state.failed_attempts, state.address, state.store_id)]
    if kind == "return" and state.return_id is not None and not state.return_received:
        return [ReturnReceivedData(order_id=state.order_id, return_id=state.return_id,
                                   lines=list(state.return_lines))]
    return []


RELEVANT = frozenset({"OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderCancelled",
                      "ReturnRequested"})
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    CreateShipment: frozenset({"ShipmentCreated"}),
    TrackParcel: frozenset({"Shipped", "InTransit", "OutForDelivery", "DeliveryFailed",
                            "Delivered", "ReadyForPickup", "PickedUp"}),
}
