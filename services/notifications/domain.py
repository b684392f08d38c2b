"""What the customer is told, and when: one e-mail per customer-facing event. Pure.

The recipient comes from OrderPlaced; an event that overtakes it (topics are consumed
independently) is held and sent once the order is known. An order that names no e-mail
address (an anonymous till sale, a customer known by phone or card) gets no e-mail. An
event already notified about is never notified again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from schemas import Event
from schemas.envelope import EVENT_TYPES
from schemas.orders import OrderPlacedData, Sealed

CUSTOMER_FACING = frozenset({
    "OrderPlaced", "OrderCancelled", "PaymentConfirmed", "PaymentFailed", "PaymentPending",
    "PaymentRequested", "PaymentExpired", "RefundIssued", "ShipmentCreated", "Shipped",
    "DeliveryFailed", "Delivered", "ReadyForPickup", "ReturnShipmentCreated", "ReturnReceived",
    "OrderReturned", "ReturnClosed",
})
# A till sale: the customer gets one receipt once it is recorded, nothing about each step,
# and one when a return of it over the counter is closed.
POS_FACING = frozenset({"OrderCompleted", "ReturnClosed", "OrderReturned"})


def customer_facing(event: Event) -> bool:
    return event.type in (POS_FACING if event.channel == "pos" else CUSTOMER_FACING)


@dataclass(frozen=True)
class Recipient:
    """Who an e-mail goes to: in clear (an order placed before personal data was sealed), or
    sealed, opened only when the e-mail is sent (a forgotten customer gets nothing)."""

    email: str | None
    name: str
    sealed: Sealed | None = None
    locale: str | None = None  # the shop's, when the order was placed: amounts and dates


@dataclass(frozen=True)
class SendEmail:
    """Command: tell `to` about `about` using the event type's e-mail template."""

    to: Recipient
    about: Event
    notification_id: str
    order: OrderPlacedData | None = None  # what was ordered: lines, tax, total, estimate

    @property
    def template(self) -> str:
        return f"{self.about.type}.email"


@dataclass(frozen=True)
class NotificationState:
    recipient: Recipient | None = None
    order: OrderPlacedData | None = None
    held: tuple[Event, ...] = ()
    notified: frozenset[uuid.UUID] = frozenset()
    released: bool = False  # OrderReadyToShip seen
    cancelled: bool = False
    unreachable: bool = False  # the order names no e-mail address: nothing is sent


def evolve(state: NotificationState, event: Event) -> NotificationState:
    if event.type == "OrderReadyToShip":
        return replace(state, released=True)
    if event.type == "OrderCancelled":
        state = replace(state, cancelled=True)
    if event.type in ("NotificationSent", "NotificationFailed"):
        return replace(state, notified=state.notified | {event.data.about_event_id},
                       held=tuple(e for e in state.held if e.id != event.data.about_event_id))
    if event.type == "OrderPlaced":
        data = event.data
        customer, sealed, locale = data.customer, data.personal, data.locale
        if sealed is not None and "email" in sealed.fields:
            return replace(state, order=data, recipient=Recipient(None, "", sealed, locale))
        if sealed is not None or customer.email is None:
            # An anonymous till sale, or a customer known by phone or card only.
            return replace(state, unreachable=True, held=())
        return replace(state, order=data, recipient=Recipient(
            customer.email, customer.name or "customer", None, locale))
    if customer_facing(event) and state.recipient is None and not state.unreachable:
        return replace(state, held=state.held + (event,))
    return state


def decide(state: NotificationState, event: Event) -> list[SendEmail]:
    after = evolve(state, event)
    if after.recipient is None or not customer_facing(event):
        return []
    due = after.held + (event,) if event.type == "OrderPlaced" else (event,)
    return [SendEmail(after.recipient, e, f"ntf_{e.id.hex}", after.order) for e in due
            if e.id not in after.notified]


# Steps of a parcel, which shipping reports only for an order the orders service released.
PARCEL_SIDE = frozenset({"ShipmentCreated", "Shipped", "DeliveryFailed", "Delivered",
                         "ReadyForPickup"})


def refuse(state: NotificationState, event: Event) -> str | None:
    """A parcel step of an order cancelled before its release is not true: tell no one.
    (OrderReadyToShip precedes a later OrderCancelled on the orders topic, so an order seen
    cancelled and not released never was.)"""
    if event.type in PARCEL_SIDE and state.cancelled and not state.released:
        return "the order was cancelled before it was released to shipping"
    return None


RELEVANT = CUSTOMER_FACING | POS_FACING | {"OrderReadyToShip"}
OPENS = frozenset({"OrderPlaced"})
# Everything from the payments and shipping topics may overtake OrderPlaced: held (above).
PRECEDE = frozenset(t for t in RELEVANT if EVENT_TYPES[t].topic != "orders")
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    SendEmail: frozenset({"NotificationSent", "NotificationFailed"})}
