"""Reservations: all-or-nothing per order, from one location. Pure, no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from schemas import Event, StockLine

# available units per location per SKU: {location: {sku: available}}
Levels = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class Reserve:
    """Command: hold the order's lines at one location, or reject naming the short SKUs."""

    order_id: str
    reservation_id: str
    lines: tuple[StockLine, ...]


@dataclass(frozen=True)
class Commit:
    """Command: the order shipped, so its reserved units leave the shelf."""

    order_id: str
    reservation_id: str
    location: str


@dataclass(frozen=True)
class Release:
    """Command: the order was cancelled before it shipped, so its units go back on sale."""

    order_id: str
    reservation_id: str
    reason: str


@dataclass(frozen=True)
class ReservationState:
    status: str | None = None          # reserved | rejected | committed | released
    reservation_id: str | None = None
    location: str | None = None
    lines: tuple[StockLine, ...] = ()


def choose_location(levels: Levels, lines: Sequence[StockLine]) -> str | None:
    """The first location (by name) that can supply every line in full."""
    for location in sorted(levels):
        stock = levels[location]
        if all(stock.get(line.sku, 0) >= line.quantity for line in lines):
            return location
    return None


def short_skus(levels: Levels, lines: Sequence[StockLine]) -> list[str]:
    """SKUs that no single location holds in the ordered quantity."""
    return sorted(
        line.sku for line in lines
        if not any(stock.get(line.sku, 0) >= line.quantity for stock in levels.values())
    ) or sorted(line.sku for line in lines)


def evolve(state: ReservationState, event: Event) -> ReservationState:
    if event.type == "StockReserved":
        return replace(state, status="reserved", reservation_id=event.data.reservation_id,
                       location=event.data.location, lines=tuple(event.data.lines))
    if event.type == "StockRejected":
        return replace(state, status="rejected")
    if event.type == "StockCommitted":
        return replace(state, status="committed")
    if event.type == "StockReleased":
        return replace(state, status="released")
    return state


def release_reason(cancel_reason: str) -> str:
    """StockReleased's reason for an order cancelled with `cancel_reason`."""
    return cancel_reason if cancel_reason in ("payment_failed", "payment_expired") else "cancelled"


def decide(state: ReservationState, event: Event) -> list[Reserve | Commit | Release]:
    if event.type == "OrderPlaced" and state.status is None:
        lines = tuple(StockLine(sku=line.sku, quantity=line.quantity) for line in event.data.lines)
        return [Reserve(event.subject, f"res_{event.subject}", lines)]
    if event.type == "Shipped" and state.status == "reserved":
        assert state.reservation_id is not None and state.location is not None
        return [Commit(event.subject, state.reservation_id, state.location)]
    if event.type == "OrderCancelled" and state.status == "reserved":
        assert state.reservation_id is not None
        return [Release(event.subject, state.reservation_id, release_reason(event.data.reason))]
    return []


RELEVANT = frozenset({"OrderPlaced", "Shipped", "OrderCancelled"})
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    Reserve: frozenset({"StockReserved", "StockRejected"}),
    Commit: frozenset({"StockCommitted"}),
    Release: frozenset({"StockReleased"}),
}
