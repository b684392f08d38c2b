"""A shipment per order: booked with a carrier once the order may ship, then followed by the
carrier's reports. Pure.

An order ships once the orders service says it may (OrderReadyToShip: paid, or for cash on
delivery its stock reserved, and not cancelled). That event and a later OrderCancelled travel
on the order's partition of the `orders` topic, so shipping sees them in the order orders
decided them, however far it lags. The carrier (see carrier.py) moves the parcel itself and
reports each step on the signed carrier webhook; `carrier_update` checks a report against
the shipment and turns it into the event to record. Home delivery goes created -> shipped ->
in transit -> out for delivery -> delivered, a failed attempt sending the parcel out for
delivery again; click-and-collect goes created -> shipped -> ready for pickup -> picked up
(the parcel from a warehouse to the store carries the stock there). A click-and-collect order
whose stock is on the pickup store's own shelf (OrderReadyToShip's location is the store) is
sent nowhere: it is ready for pickup as soon as it is released, and picked up when the store
hands it over (PickupConfirmed); a return of it is handed back over that store's counter.
An order cancelled after its release (a business "no" that came late) has its booking
cancelled while the parcel still waits for the courier, and the parcel recalled once the
courier has it; the carrier reports it returned to sender when it is back at the warehouse. A
requested return is booked with the carrier that delivered the order, and received when that
carrier delivers it back to the warehouse. Returns come one at a time (the orders service
takes the next once the last is closed); a report about an earlier return's parcel is
recorded already and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from alur.runtime.aggregate import OR_NOTHING
from schemas import (
    Address,
    DeliveredData,
    DeliveryFailedData,
    Event,
    InTransitData,
    Model,
    Money,
    OutForDeliveryData,
    PickedUpData,
    ReadyForPickupData,
    ReturnedToSenderData,
    ReturnLine,
    ReturnReceivedData,
    ShippedData,
)
from schemas.orders import Sealed
from services.shipping.carrier import carrier_for

PARCEL_EVENTS = {
    "ShipmentCreated": "created", "Shipped": "shipped", "InTransit": "in_transit",
    "OutForDelivery": "out_for_delivery", "DeliveryFailed": "delivery_failed",
    "Delivered": "delivered", "ReadyForPickup": "ready_for_pickup", "PickedUp": "picked_up",
    "ReturnedToSender": "returned_to_sender",
}
# A parcel in one of these is where it will stay: nothing can stop it any more.
AT_REST = frozenset({"delivered", "picked_up", "returned_to_sender"})
# The steps a carrier may report after each status, for a parcel to an address or to a store.
HOME_NEXT = {"created": {"shipped"}, "shipped": {"in_transit"},
             "in_transit": {"out_for_delivery"},
             "out_for_delivery": {"delivered", "delivery_failed"},
             "delivery_failed": {"out_for_delivery"}}
STORE_NEXT = {"created": {"shipped"}, "shipped": {"ready_for_pickup"},
              "ready_for_pickup": {"picked_up"}}
RETURN_STEPS = frozenset({"shipped", "in_transit", "delivered"})
PARCEL_DATA: dict[str, type[Model]] = {
    "shipped": ShippedData, "in_transit": InTransitData,
    "out_for_delivery": OutForDeliveryData, "delivered": DeliveredData}


@dataclass(frozen=True)
class CreateShipment:
    order_id: str
    carrier: str
    service: str  # home | store
    address: Address | None
    store_id: str | None
    idempotency_key: str
    personal: Sealed | None = None  # the street, sealed: opened when the carrier is booked


@dataclass(frozen=True)
class CancelShipment:
    """Command: the order was cancelled; stop its parcel (cancel the booking, or recall the
    parcel if the courier has collected it)."""

    order_id: str
    shipment_id: str
    carrier: str
    tracking_number: str
    parcel_status: str  # its last reported step


@dataclass(frozen=True)
class BookReturn:
    order_id: str
    return_id: str
    carrier: str
    address: Address | None
    store_id: str | None
    idempotency_key: str
    personal: Sealed | None = None


@dataclass(frozen=True)
class ParcelUpdate:
    """A carrier's report of a parcel's step."""

    carrier: str
    tracking_number: str
    status: str
    occurred_at: datetime
    reason: str | None = None
    next_attempt_at: datetime | None = None


class UnknownParcel(LookupError):
    """The report is about a parcel this order does not have."""


class UpdateRefused(ValueError):
    """The report does not follow from the parcel's status."""


@dataclass(frozen=True)
class ShipmentState:
    order_id: str | None = None
    address: Address | None = None
    personal: Sealed | None = None  # the customer's personal data, the street among it
    store_id: str | None = None
    released: bool = False  # OrderReadyToShip seen
    from_shelf: bool = False  # click-and-collect from the pickup store's own shelf
    cancelled: bool = False
    recalled: bool = False
    shipment_id: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    status: str | None = None
    failed_attempts: int = 0
    return_id: str | None = None  # the latest return
    return_lines: tuple[ReturnLine, ...] = ()
    return_refund: Money | None = None
    return_last: bool = True
    return_carrier: str | None = None
    return_tracking_number: str | None = None
    return_received: bool = False
    earlier_returns: frozenset[tuple[str, str]] = frozenset()  # (carrier, tracking number)

    @property
    def ready_to_ship(self) -> bool:
        deliverable = self.address is not None or self.store_id is not None
        return deliverable and self.released and not self.cancelled and self.shipment_id is None


def evolve(state: ShipmentState, event: Event) -> ShipmentState:
    if event.type == "OrderPlaced":
        delivery = event.data.delivery
        if delivery.method == "in_store":
            return replace(state, order_id=event.data.order_id)  # handed over at the till
        return replace(state, order_id=event.data.order_id, address=delivery.address,
                       personal=event.data.personal,
                       store_id=delivery.store_id if delivery.method == "click_and_collect"
                       else None)
    if event.type == "OrderReadyToShip":
        shelf = state.store_id is not None and event.data.location == state.store_id
        return replace(state, released=True, from_shelf=shelf)
    if event.type == "OrderCancelled":
        return replace(state, cancelled=True)
    if event.type == "ShipmentRecalled":
        return replace(state, recalled=True)
    if event.type == "ReturnRequested":
        if event.data.return_id == state.return_id or event.data.at_store:
            return state
        earlier = state.earlier_returns
        if state.return_carrier and state.return_tracking_number:
            earlier = earlier | {(state.return_carrier, state.return_tracking_number)}
        return replace(state, return_id=event.data.return_id,
                       return_lines=tuple(event.data.lines), return_refund=event.data.refund,
                       return_last=event.data.last, return_carrier=None,
                       return_tracking_number=None, return_received=False,
                       earlier_returns=earlier)
    if event.type == "ReturnShipmentCreated":
        return replace(state, return_carrier=event.data.carrier,
                       return_tracking_number=event.data.tracking_number)
    if event.type == "ReturnReceived":
        return replace(state, return_received=True)
    status = PARCEL_EVENTS.get(event.type)
    if status is None:
        return state
    if event.type == "ShipmentCreated":
        state = replace(state, shipment_id=event.data.shipment_id, carrier=event.data.carrier,
                        tracking_number=event.data.tracking_number)
    if event.type == "ReadyForPickup" and state.shipment_id is None:  # set aside on the shelf
        state = replace(state, shipment_id=event.data.shipment_id)
    failed = state.failed_attempts + (event.type == "DeliveryFailed")
    return replace(state, status=status, failed_attempts=failed)


def decide(state: ShipmentState, event: Event) -> list[object]:
    after = evolve(state, event)
    order_id = after.order_id
    if order_id is None:
        return []
    if after.ready_to_ship and not state.ready_to_ship and after.from_shelf \
            and after.store_id is not None:
        return [ReadyForPickupData(order_id=order_id, shipment_id=f"shelf_{order_id}",
                                   store_id=after.store_id)]
    if (event.type == "PickupConfirmed" and after.from_shelf and after.status == "ready_for_pickup"
            and after.shipment_id is not None and after.store_id is not None):
        return [PickedUpData(order_id=order_id, shipment_id=after.shipment_id,
                             store_id=after.store_id)]
    if after.ready_to_ship and not state.ready_to_ship:
        to_store = after.store_id is not None
        return [CreateShipment(order_id, carrier_for(after.address, after.store_id),
                               "store" if to_store else "home",
                               None if to_store else after.address, after.store_id,
                               f"{order_id}:shipment", None if to_store else after.personal)]
    if (event.type == "OrderCancelled" and not state.cancelled and after.status is not None
            and after.status not in AT_REST and after.shipment_id and after.carrier
            and after.tracking_number):
        return [CancelShipment(order_id, after.shipment_id, after.carrier,
                               after.tracking_number, after.status)]
    if (event.type == "ReturnRequested" and after.carrier is not None and after.return_id
            and after.return_tracking_number is None and after.return_id != state.return_id):
        return [BookReturn(order_id, after.return_id, after.carrier,
                           None if after.store_id else after.address, after.store_id,
                           f"{order_id}:{after.return_id}:return",
                           None if after.store_id else after.personal)]
    return []


def refuse(state: ShipmentState, event: Event) -> str | None:
    """Why an event of the orders service cannot be true of this order's parcel: the orders
    service releases an order that is not cancelled, and takes a return once it arrived."""
    if event.type == "OrderReadyToShip" and state.cancelled:
        return "it was cancelled"
    if event.type == "ReturnRequested" and not event.data.at_store \
            and state.status not in ("delivered", "picked_up"):
        return f"its parcel never arrived ({state.status or 'no parcel'})"
    return None


def carrier_update(state: ShipmentState, update: ParcelUpdate) -> list[Model]:
    """What a carrier's report records: the parcel's next step, nothing for a report already
    recorded, ReturnReceived when the return reaches the warehouse. Raises UnknownParcel or
    UpdateRefused."""
    if (update.carrier, update.tracking_number) == (state.carrier, state.tracking_number):
        return _outbound(state, update)
    if (update.carrier, update.tracking_number) == (state.return_carrier,
                                                    state.return_tracking_number):
        return _returning(state, update)
    if (update.carrier, update.tracking_number) in state.earlier_returns:
        return []  # an earlier return's parcel: it was received already
    raise UnknownParcel(f"order {state.order_id} has no parcel {update.tracking_number} with "
                        f"{update.carrier}")


def _outbound(state: ShipmentState, update: ParcelUpdate) -> list[Model]:
    if not (state.order_id and state.shipment_id and state.tracking_number and state.status):
        raise UnknownParcel(f"order {state.order_id} has no parcel {update.tracking_number}")
    if update.status == state.status:
        return []  # the same step reported again
    parcel = dict(order_id=state.order_id, shipment_id=state.shipment_id)
    if update.status == "returned_to_sender":
        # Even after a `delivered` this service recorded: the carrier sends it back only when
        # it recalled the parcel, which it does only if that report never reached it as taken.
        if not state.cancelled:
            raise UpdateRefused(f"parcel {update.tracking_number} of an order not cancelled "
                                "cannot be returned to sender")
        return [ReturnedToSenderData(**parcel, tracking_number=state.tracking_number)]
    if state.recalled:
        # The carrier agreed to turn the parcel back: a forward step reported now is one it
        # sent before (and then took back when the answer did not reach it in time).
        raise UpdateRefused(f"parcel {update.tracking_number} was recalled; it cannot be "
                            f"{update.status}")
    steps = STORE_NEXT if state.store_id else HOME_NEXT
    if update.status not in steps.get(state.status, set()):
        raise UpdateRefused(f"parcel {update.tracking_number} is {state.status}; it cannot be "
                            f"{update.status} next")
    if update.status in PARCEL_DATA:
        return [PARCEL_DATA[update.status](**parcel, tracking_number=state.tracking_number)]
    if update.status == "delivery_failed":
        return [DeliveryFailedData(**parcel, tracking_number=state.tracking_number,
                                   reason=update.reason or "delivery failed",
                                   next_attempt_at=update.next_attempt_at)]
    if state.store_id is None:  # STORE_NEXT's steps are the only ones left
        raise UpdateRefused(f"parcel {update.tracking_number} goes to an address")
    if update.status == "ready_for_pickup":
        return [ReadyForPickupData(**parcel, store_id=state.store_id)]
    return [PickedUpData(**parcel, store_id=state.store_id)]


def _returning(state: ShipmentState, update: ParcelUpdate) -> list[Model]:
    if not (state.order_id and state.return_id):
        raise UnknownParcel(f"order {state.order_id} has no return {update.tracking_number}")
    if update.status not in RETURN_STEPS:
        raise UpdateRefused(f"return parcel {update.tracking_number} cannot be {update.status}")
    if update.status != "delivered" or state.return_received:
        return []  # on its way back: nothing to record until it arrives
    return [ReturnReceivedData(order_id=state.order_id, return_id=state.return_id,
                               lines=list(state.return_lines), refund=state.return_refund,
                               last=state.return_last)]


RELEVANT = frozenset({"OrderPlaced", "OrderReadyToShip", "OrderCancelled", "ReturnRequested",
                      "PickupConfirmed"})
OPENS = frozenset({"OrderPlaced"})  # everything else follows it on the order's partition
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    CreateShipment: frozenset({"ShipmentCreated"}),
    # Nothing when the booking was cancelled before collection (or the parcel had arrived).
    CancelShipment: frozenset({"ShipmentRecalled", OR_NOTHING}),
    BookReturn: frozenset({"ReturnShipmentCreated"}),
}
