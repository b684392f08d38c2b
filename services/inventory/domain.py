"""Reservations: all-or-nothing per order, from one location. Pure, no I/O, no clock.

Which location (`choose_location`): a click-and-collect order's pickup store when its own
shelf holds every line in full (nothing travels); otherwise, of the locations that hold every
line in full and may ship to customers (warehouses, and the stores configured for
ship-from-store), the one in the order's postal region (the first digit of an Indonesian
postal code: the customer's for home delivery, the pickup store's for click-and-collect),
then the one with the most units of the ordered SKUs, then the first by name. A location
without a record is a warehouse with no region. A store's stock serves its own till, its own
pickups, and other online orders only where it ships.

A reservation holds units until the order ships, or expires at its `expires_at` unless
something took it over first: a confirmed or pending payment (a bank transfer has its own
expiry). A cash-on-delivery order waits for nothing from its customer before it ships, so its
reservation does not expire: it is held until the parcel ships or the order is cancelled.

A click-and-collect order served from a warehouse travels to its store as a stock transfer:
when its parcel ships, the warehouse's units leave its shelf (committed) and are counted in
transit to the store (StockTransferShipped); when the parcel is ready for pickup there, they
are on the store's books, held for the customer (StockTransferReceived); when the customer
collects them, they leave the store's shelf (StockCommitted at the store, its reservation
the transfer). They are the order's throughout: on sale nowhere, never oversold. A return of
such an order goes back by parcel to the warehouse, like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from schemas import Delivery, Event, Model, ReservationExpiredData, ReturnLine, StockLine

# available units per location per SKU: {location: {sku: available}}
Levels = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class Site:
    """A stock location's record: a warehouse, or a store (`ships`: ship-from-store), and the
    postal region it is in."""

    kind: str = "warehouse"  # warehouse | store
    region: str | None = None
    ships: bool = True

    def __post_init__(self) -> None:
        """The rules the locations table's checks hold too, said the same way to whoever
        records a location (the admin API, the CLI)."""
        if self.kind not in ("warehouse", "store"):
            raise ValueError(f"a location is a warehouse or a store, not {self.kind!r}")
        if self.region is not None and not (len(self.region) == 1 and self.region.isdigit()):
            raise ValueError("the region is one digit: an Indonesian postal code's first")
        if self.kind == "warehouse" and not self.ships:
            raise ValueError("a warehouse ships to customers")


WAREHOUSE = Site()


@dataclass(frozen=True)
class Route:
    """Where an order's goods go: to an address in a postal region, or to a pickup store."""

    region: str | None = None
    store: str | None = None


ANYWHERE = Route()  # no region preferred


def postal_region(country: str, postal_code: str) -> str | None:
    """An Indonesian postal code's region, its first digit (1 Jakarta and Banten, 4 West
    Java, 6 East Java, 8 Bali and Nusa Tenggara, ...); None elsewhere."""
    code = postal_code.strip()
    return code[0] if country == "ID" and len(code) == 5 and code.isdigit() else None


def route_of(delivery: Delivery) -> Route:
    if delivery.method == "click_and_collect":
        return Route(store=delivery.store_id)
    address = delivery.address
    return Route(region=None if address is None else postal_region(address.country,
                                                                   address.postal_code))


@dataclass(frozen=True)
class Reserve:
    """Command: hold the order's lines at one location, or reject naming the short SKUs."""

    order_id: str
    reservation_id: str
    lines: tuple[StockLine, ...]
    route: Route = ANYWHERE


@dataclass(frozen=True)
class Commit:
    """Command: the order shipped, so its reserved units leave the shelf."""

    order_id: str
    reservation_id: str
    location: str


@dataclass(frozen=True)
class Sell:
    """Command: a till sold the order's lines in its store; they left that store's shelf."""

    order_id: str
    reservation_id: str
    location: str
    lines: tuple[StockLine, ...]


@dataclass(frozen=True)
class Release:
    """Command: the order was cancelled before it shipped, so its units go back on sale."""

    order_id: str
    reservation_id: str
    reason: str


@dataclass(frozen=True)
class Restock:
    """Command: returned units are back at the location they left: on its shelf, or written
    off there when their line says so (damaged). `return_id` names the return, or for a
    parcel recalled after a late cancel, its shipment."""

    order_id: str
    return_id: str
    location: str
    lines: tuple[ReturnLine, ...]
    ends_transfer: str | None = None  # a parcel back from its way to the pickup store


@dataclass(frozen=True)
class ShipTransfer:
    """Command: a click-and-collect order's parcel left the warehouse its units were reserved
    at for the pickup store; its units are in transit to the store."""

    order_id: str
    transfer_id: str
    from_location: str
    to_location: str
    lines: tuple[StockLine, ...]


@dataclass(frozen=True)
class ReceiveTransfer:
    """Command: the parcel is at the store: its units on the store's books, held for the
    customer."""

    order_id: str
    transfer_id: str
    location: str
    lines: tuple[StockLine, ...]


@dataclass(frozen=True)
class CollectTransfer:
    """Command: the customer collected the units held at the store."""

    order_id: str
    transfer_id: str
    location: str


def transfer_id(order_id: str) -> str:
    return f"trf_{order_id}"


@dataclass(frozen=True)
class ReservationState:
    status: str | None = None          # reserved | rejected | committed | released | expired
    order_id: str | None = None
    reservation_id: str | None = None
    location: str | None = None
    lines: tuple[StockLine, ...] = ()
    expires_at: datetime | None = None
    taken_over: bool = False            # paid, payment pending or shipment booked: no expiry
    restocked: frozenset[str] = frozenset()  # the returns (or recalled parcels) taken back
    cod: bool = False                   # cash on delivery: no expiry
    released_to_ship: bool = False      # OrderReadyToShip seen
    cancelled: bool = False             # OrderCancelled seen
    pickup_store: str | None = None     # click-and-collect: the store it is collected from
    transfer: str | None = None         # in_transit | at_store | collected (to pickup_store)

    @property
    def expiry(self) -> datetime | None:
        waiting = self.status == "reserved" and not self.taken_over and not self.cod
        return self.expires_at if waiting else None


def choose_location(levels: Levels, lines: Sequence[StockLine], route: Route = ANYWHERE,
                    sites: Mapping[str, Site] | None = None) -> str | None:
    """Where the order is served from, by the rule above; None if no location may."""
    known = sites or {}
    region = known.get(route.store, WAREHOUSE).region if route.store else route.region

    def rank(location: str) -> tuple[bool, int, str]:
        units = sum(levels[location].get(line.sku, 0) for line in lines)
        return (region is None or known.get(location, WAREHOUSE).region != region, -units,
                location)

    def holds(location: str) -> bool:
        return all(levels[location].get(line.sku, 0) >= line.quantity for line in lines)

    if route.store is not None and route.store in levels and holds(route.store):
        return route.store
    return min(filter(holds, _shipping(levels, known)), key=rank, default=None)


def _shipping(levels: Levels, sites: Mapping[str, Site]) -> Levels:
    return {location: stock for location, stock in levels.items()
            if sites.get(location, WAREHOUSE).ships}


def where_to_reserve(levels: Levels, lines: Sequence[StockLine], route: Route = ANYWHERE,
                     sites: Mapping[str, Site] | None = None) -> tuple[str | None, list[str]]:
    """(the location that holds the order, []) or (None, the short SKUs)."""
    location = choose_location(levels, lines, route, sites)
    if location is not None:
        return location, []
    reach = dict(_shipping(levels, sites or {}))
    if route.store is not None and route.store in levels:
        reach[route.store] = levels[route.store]
    return None, short_skus(reach, lines)


def short_skus(levels: Levels, lines: Sequence[StockLine]) -> list[str]:
    """SKUs that no single location holds in the ordered quantity."""
    return sorted(
        line.sku for line in lines
        if not any(stock.get(line.sku, 0) >= line.quantity for stock in levels.values())
    ) or sorted(line.sku for line in lines)


def evolve(state: ReservationState, event: Event) -> ReservationState:
    if event.type == "OrderReadyToShip":
        return replace(state, released_to_ship=True)
    if event.type == "OrderCancelled":
        state = replace(state, cancelled=True)
    if event.type == "OrderPlaced":
        delivery = event.data.delivery
        return replace(state, cod=event.data.payment.method == "cod", pickup_store=(
            delivery.store_id if delivery.method == "click_and_collect" else None))
    if event.type == "StockTransferShipped":
        return replace(state, transfer="in_transit")
    if event.type == "StockTransferReceived":
        return replace(state, transfer="at_store")
    if event.type == "StockCommitted" and state.order_id is not None \
            and event.data.reservation_id == transfer_id(state.order_id):
        return replace(state, transfer="collected")
    if event.type == "StockReserved":
        return replace(state, status="reserved", order_id=event.data.order_id,
                       reservation_id=event.data.reservation_id,
                       location=event.data.location, lines=tuple(event.data.lines),
                       expires_at=event.data.expires_at)
    if event.type in TAKE_OVER:
        return replace(state, taken_over=True)
    if event.type == "ReservationExpired":
        return replace(state, status="expired")
    if event.type in ("StockRestocked", "StockWrittenOff"):
        # Units back while a transfer is in transit: its parcel came back (ReturnedToSender).
        return replace(state, restocked=state.restocked | {event.data.return_id},
                       transfer="returned" if state.transfer == "in_transit"
                       else state.transfer)
    if event.type == "StockRejected":
        return replace(state, status="rejected")
    if event.type == "StockCommitted":
        return replace(state, status="committed", order_id=event.data.order_id,
                       reservation_id=event.data.reservation_id, location=event.data.location)
    if event.type == "StockReleased":
        return replace(state, status="released")
    return state


def release_reason(cancel_reason: str) -> str:
    """StockReleased's reason for an order cancelled with `cancel_reason`."""
    return cancel_reason if cancel_reason in ("payment_failed", "payment_expired") else "cancelled"


Command = (Reserve | Sell | Commit | Release | Restock | ShipTransfer | ReceiveTransfer
           | CollectTransfer)


def decide(state: ReservationState, event: Event) -> list[Command]:
    reservation, location = state.reservation_id, state.location
    if event.type == "OrderPlaced" and state.status is None:
        lines = tuple(StockLine(sku=line.sku, quantity=line.quantity) for line in event.data.lines)
        store = event.data.delivery.store_id
        if event.channel == "pos":  # `refuse` made sure a till sale names its store
            return [Sell(event.subject, f"res_{event.subject}", store, lines)] if store else []
        return [Reserve(event.subject, f"res_{event.subject}", lines,
                        route_of(event.data.delivery))]
    if event.type in ("Shipped", "PickedUp") and state.status == "reserved" and reservation \
            and location:
        if event.type == "Shipped" and state.pickup_store not in (None, location):
            # Collected at a store from a warehouse's stock: the parcel carries it there.
            return [Commit(event.subject, reservation, location),
                    ShipTransfer(event.subject, transfer_id(event.subject), location,
                                 str(state.pickup_store), state.lines)]
        return [Commit(event.subject, reservation, location)]
    if event.type == "ReadyForPickup" and state.transfer == "in_transit" and state.pickup_store:
        return [ReceiveTransfer(event.subject, transfer_id(event.subject), state.pickup_store,
                                state.lines)]
    if event.type == "PickedUp" and state.transfer == "at_store" and state.pickup_store:
        return [CollectTransfer(event.subject, transfer_id(event.subject), state.pickup_store)]
    if event.type == "OrderCancelled" and state.status == "reserved" and reservation:
        return [Release(event.subject, reservation, release_reason(event.data.reason))]
    if state.status != "committed" or location is None:
        return []
    if event.type == "ReturnReceived" and event.data.return_id not in state.restocked:
        return [Restock(event.subject, event.data.return_id, location, tuple(event.data.lines))]
    if event.type == "ReturnRequested" and event.data.at_store \
            and event.data.return_id not in state.restocked:
        # A till sale handed back over the counter: its units are at that store now.
        return [Restock(event.subject, event.data.return_id, event.data.at_store,
                        tuple(event.data.lines))]
    if event.type == "ReturnedToSender" and event.data.shipment_id not in state.restocked:
        # The order was cancelled after it shipped; its parcel is back. (Released before it
        # shipped, its units never left the books: nothing to put back.)
        return [Restock(event.subject, event.data.shipment_id, location,
                        tuple(ReturnLine(sku=x.sku, quantity=x.quantity) for x in state.lines),
                        transfer_id(event.subject) if state.transfer == "in_transit" else None)]
    return []


def refuse(state: ReservationState, event: Event) -> str | None:
    """Why another service's event cannot be true of this order: a till sale without its
    store, a parcel of an order that never held stock, a return of units that never left."""
    if event.type == "OrderPlaced" and event.channel == "pos" and not event.data.delivery.store_id:
        return "a till sale names no store"
    if event.type in PARCEL_STEPS and state.status in (None, "rejected"):
        return f"the order holds no stock to ship ({state.status or 'nothing reserved'})"
    if event.type in PARCEL_STEPS and state.cancelled and not state.released_to_ship:
        # OrderReadyToShip precedes a later OrderCancelled on the orders topic.
        return "the order was cancelled before it was released to shipping"
    if event.type == "ReturnReceived" and state.status != "committed":
        return f"its units never left the shelf ({state.status or 'nothing reserved'})"
    return None


PARCEL_STEPS = frozenset({"ShipmentCreated", "Shipped", "ReadyForPickup", "PickedUp"})


def deadlines(state: ReservationState) -> dict[str, datetime]:
    return {"reservation_expiry": state.expiry} if state.expiry is not None else {}


def on_timer(state: ReservationState, kind: str) -> list[Model | Command]:
    """The reservation expired unpaid: say so, and put its units back on sale."""
    if kind != "reservation_expiry" or state.expiry is None or state.order_id is None \
            or state.reservation_id is None:
        return []
    return [ReservationExpiredData(order_id=state.order_id, reservation_id=state.reservation_id),
            Release(state.order_id, state.reservation_id, "expired")]


TAKE_OVER = frozenset({"PaymentConfirmed", "PaymentPending", "PaymentRequested",
                       "ShipmentCreated"})
OPENS = frozenset({"OrderPlaced"})
# A till sale's payment is recorded by payments straight from OrderPlaced: its
# PaymentConfirmed (payments topic) may arrive here before the OrderPlaced (orders topic).
PRECEDE = frozenset({"PaymentConfirmed"})
RELEVANT = frozenset({"OrderPlaced", "Shipped", "ReadyForPickup", "PickedUp", "OrderCancelled",
                      "ReturnReceived",
                      "ReturnRequested",
                      "ReturnedToSender", "OrderReadyToShip"} | TAKE_OVER)
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    Reserve: frozenset({"StockReserved", "StockRejected", "LowStock"}),
    Sell: frozenset({"StockCommitted", "LowStock"}),
    Commit: frozenset({"StockCommitted"}),
    Release: frozenset({"StockReleased"}),
    Restock: frozenset({"StockRestocked", "StockWrittenOff"}),
    ShipTransfer: frozenset({"StockTransferShipped"}),
    ReceiveTransfer: frozenset({"StockTransferReceived"}),
    CollectTransfer: frozenset({"StockCommitted"}),
}
