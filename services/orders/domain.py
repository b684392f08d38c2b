"""The order's life as the orders service sees it: pure, no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from schemas import (
    Customer,
    Delivery,
    Event,
    Model,
    Money,
    OrderCancelledData,
    OrderCompletedData,
    OrderLine,
    OrderPlacedData,
    PaymentInstruction,
    ReceiptConfirmedData,
    ReturnLine,
    ReturnRequestedData,
    ReviewSubmittedData,
)

# Status moves forward only; an event that arrives late (another topic lagging) cannot move
# the order back.
STAGES: tuple[str, ...] = (
    "placed", "reserved", "paid", "shipment_created", "shipped", "delivered", "completed",
)
TERMINAL = frozenset({"completed", "cancelled", "returned"})
# Settled: nothing more is due from the platform. Delivered orders wait for the customer (and,
# later, for auto-completion), so stuck-order counts and traces treat them as settled.
SETTLED_EVENTS = ("OrderCompleted", "OrderCancelled", "OrderReturned", "Delivered")
STAGE_OF_EVENT = {
    "OrderPlaced": "placed", "StockReserved": "reserved", "PaymentConfirmed": "paid",
    "ShipmentCreated": "shipment_created", "Shipped": "shipped", "Delivered": "delivered",
    "OrderCompleted": "completed",
}
SUPPORTED_PAYMENT_METHODS = frozenset({"card", "ewallet"})
# Until payment: refunds (issue 3) are not there yet, so a paid order is not cancelled here.
CANCELLABLE = frozenset({"placed", "reserved"})
MAX_AMOUNT = 10**13  # minor units: far above any order, far below PostgreSQL's bigint
AFTER_DELIVERY = frozenset({"delivered", "completed"})


class InvalidOrder(ValueError):
    """The caller sent an order that cannot be placed; the message says why."""


class CurrencyMismatch(InvalidOrder):
    """The order's currency is not the shop's."""


class NotAllowedNow(ValueError):
    """The order's state does not allow what the caller asked (cancel a shipped order...)."""


@dataclass(frozen=True)
class OrderState:
    status: str | None = None
    cancel_reason: str | None = None
    placed_at: datetime | None = None
    since: datetime | None = None  # when the order entered `status` (the event's time)
    lines: tuple[tuple[str, int], ...] = ()
    delivered_at: datetime | None = None
    reviewed: bool = False
    return_requested: bool = False


def place_order(
    order_id: str, customer: Customer, lines: Sequence[OrderLine],
    payment: PaymentInstruction, delivery: Delivery, currency: str | None = None,
) -> OrderPlacedData:
    """Validate a new order and compute its total; `currency`, when given, is the shop's."""
    if not lines:
        raise InvalidOrder("an order needs at least one line")
    currencies = {line.unit_price.currency for line in lines}
    if len(currencies) != 1:
        raise CurrencyMismatch(f"all lines must share one currency, got {sorted(currencies)}")
    if currency is not None and currencies != {currency}:
        raise CurrencyMismatch(f"this shop sells in {currency}, not {currencies.pop()}")
    if any(line.unit_price.amount <= 0 for line in lines):
        raise InvalidOrder("every unit price must be positive")
    if any(line.unit_price.amount > MAX_AMOUNT for line in lines):
        raise InvalidOrder(f"a unit price is at most {MAX_AMOUNT} minor units")
    skus = [line.sku for line in lines]
    if len(set(skus)) != len(skus):
        raise InvalidOrder("each SKU may appear on one line only")
    if payment.method not in SUPPORTED_PAYMENT_METHODS:
        raise InvalidOrder(f"payment method {payment.method!r} is not supported yet")
    if payment.method in ("card", "ewallet") and not payment.token:
        raise InvalidOrder(f"payment method {payment.method!r} needs a gateway token")
    if delivery.method != "home_delivery":
        raise InvalidOrder(f"delivery method {delivery.method!r} is not supported yet")
    if delivery.address is None:
        raise InvalidOrder("home delivery needs an address")
    total = Money(amount=0, currency=currencies.pop())
    for line in lines:
        total = total + line.unit_price.times(line.quantity)
    if total.amount > MAX_AMOUNT:
        raise InvalidOrder(f"the order total is at most {MAX_AMOUNT} minor units")
    if total.amount <= 0:
        raise InvalidOrder("the order total must be positive")
    return OrderPlacedData(order_id=order_id, customer=customer, lines=list(lines), total=total,
                           payment=payment, delivery=delivery)


def cancel(state: OrderState, order_id: str) -> OrderCancelledData:
    """The customer (through the shop) cancels: allowed until the order is paid."""
    if state.status not in CANCELLABLE:
        raise NotAllowedNow(f"an order that is {state.status} can no longer be cancelled")
    return OrderCancelledData(order_id=order_id, reason="customer_request")


def confirm_receipt(state: OrderState, order_id: str) -> list[Model]:
    """The customer has the parcel: the order is complete."""
    if state.status != "delivered":
        raise NotAllowedNow(f"receipt can be confirmed once delivered; the order is {state.status}")
    return [ReceiptConfirmedData(order_id=order_id), OrderCompletedData(order_id=order_id)]


def review(state: OrderState, order_id: str, rating: int, text: str) -> ReviewSubmittedData:
    """One review per order, once it was delivered."""
    if state.delivered_at is None:
        raise NotAllowedNow("an order can be reviewed once it was delivered")
    if state.reviewed:
        raise NotAllowedNow("this order was reviewed already")
    return ReviewSubmittedData(order_id=order_id, rating=rating, text=text)


def request_return(
    state: OrderState, order_id: str, return_id: str, lines: Sequence[ReturnLine], reason: str,
    now: datetime, window_days: float,
) -> ReturnRequestedData:
    """A return of delivered units, within the window after delivery."""
    if state.delivered_at is None or state.status not in AFTER_DELIVERY:
        raise NotAllowedNow(f"only a delivered order can be returned; the order is {state.status}")
    if state.return_requested:
        raise NotAllowedNow("a return was requested for this order already")
    if (now - state.delivered_at).total_seconds() > window_days * 86400:
        raise NotAllowedNow(f"the return window of {window_days:g} days after delivery is over")
    ordered = dict(state.lines)
    seen: set[str] = set()
    for line in lines:
        if line.sku not in ordered:
            raise InvalidOrder(f"{line.sku} is not on this order")
        if line.sku in seen:
            raise InvalidOrder("each SKU may appear on one return line only")
        if line.quantity > ordered[line.sku]:
            raise InvalidOrder(f"{line.quantity} x {line.sku} returned but {ordered[line.sku]} "
                               "ordered")
        seen.add(line.sku)
    return ReturnRequestedData(order_id=order_id, return_id=return_id, lines=list(lines),
                               reason=reason)


def evolve(state: OrderState, event: Event) -> OrderState:
    # Facts that do not move the status, recorded whatever the status is.
    if event.type == "ReviewSubmitted":
        return replace(state, reviewed=True)
    if event.type == "Delivered":
        state = replace(state, delivered_at=state.delivered_at or event.time)
    if event.type == "OrderPlaced":
        state = replace(state, lines=tuple((x.sku, x.quantity) for x in event.data.lines))
    if event.type == "ReturnRequested":
        return replace(state, return_requested=True, status="return_requested", since=event.time)
    if state.status in TERMINAL or state.return_requested:
        return state
    if event.type == "OrderCancelled":
        return replace(state, status="cancelled", cancel_reason=event.data.reason,
                       since=event.time)
    stage = STAGE_OF_EVENT.get(event.type)
    if stage is None:
        return state
    if state.status is None or STAGES.index(stage) > STAGES.index(state.status):
        placed_at = event.time if stage == "placed" else state.placed_at
        return replace(state, status=stage, since=event.time, placed_at=placed_at)
    return state


def decide(state: OrderState, event: Event) -> list[Model]:
    if state.status in TERMINAL:
        return []
    if event.type == "StockRejected":
        return [OrderCancelledData(order_id=event.subject, reason="out_of_stock")]
    if event.type == "PaymentFailed":
        return [OrderCancelledData(order_id=event.subject, reason="payment_failed")]
    return []


RELEVANT = frozenset({"StockReserved", "StockRejected", "PaymentConfirmed", "PaymentFailed",
                      "ShipmentCreated", "Shipped", "Delivered"})
