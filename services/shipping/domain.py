"""A shipment per order: created once the order is paid, then followed as the carrier reports.

Pure. The carrier is asked through commands; its answers come back as events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schemas import Address, Event


@dataclass(frozen=True)
class CreateShipment:
    order_id: str
    address: Address
    idempotency_key: str


@dataclass(frozen=True)
class TrackParcel:
    """Command: ask the carrier what happened next to the parcel."""

    order_id: str
    shipment_id: str
    tracking_number: str
    status: str


@dataclass(frozen=True)
class ShipmentState:
    address: Address | None = None
    paid: bool = False
    shipment_id: str | None = None
    tracking_number: str | None = None
    status: str | None = None  # created | shipped | delivered

    @property
    def ready_to_ship(self) -> bool:
        return self.address is not None and self.paid and self.shipment_id is None


def evolve(state: ShipmentState, event: Event) -> ShipmentState:
    if event.type == "OrderPlaced":
        return replace(state, address=event.data.delivery.address)
    if event.type == "PaymentConfirmed":
        return replace(state, paid=True)
    if event.type == "ShipmentCreated":
        return replace(state, shipment_id=event.data.shipment_id,
                       tracking_number=event.data.tracking_number, status="created")
    if event.type == "Shipped":
        return replace(state, status="shipped")
    if event.type == "Delivered":
        return replace(state, status="delivered")
    return state


def decide(state: ShipmentState, event: Event) -> list[CreateShipment | TrackParcel]:
    """Ship once paid with an address known. Own carrier events come back with `state`
    already including them: then the parcel is followed while it is not delivered."""
    if event.type in ("OrderPlaced", "PaymentConfirmed"):
        after = evolve(state, event)
        if after.ready_to_ship and not state.ready_to_ship:
            assert after.address is not None
            return [CreateShipment(event.subject, after.address, f"{event.subject}:shipment")]
        return []
    if event.type in ("ShipmentCreated", "Shipped") and state.status in ("created", "shipped"):
        assert state.shipment_id is not None and state.tracking_number is not None
        if _status_of(event.type) == state.status:
            return [TrackParcel(event.subject, state.shipment_id, state.tracking_number,
                                state.status)]
    return []


def _status_of(event_type: str) -> str:
    return {"ShipmentCreated": "created", "Shipped": "shipped"}[event_type]


RELEVANT = frozenset({"OrderPlaced", "PaymentConfirmed", "ShipmentCreated", "Shipped"})
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    CreateShipment: frozenset({"ShipmentCreated"}),
    TrackParcel: frozenset({"Shipped", "Delivered"}),
}
