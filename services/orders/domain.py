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
    OrderLine,
    OrderPlacedData,
    PaymentInstruction,
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


class InvalidOrder(ValueError):
    """The caller sent an order that cannot be placed; the message says why."""


@dataclass(frozen=True)
class OrderState:
    status: str | None = None
    cancel_reason: str | None = None
    placed_at: datetime | None = None
    since: datetime | None = None  # when the order entered `status` (the event's time)


def place_order(
    order_id: str, customer: Customer, lines: Sequence[OrderLine],
    payment: PaymentInstruction, delivery: Delivery,
) -> OrderPlacedData:
    """Validate a new order and compute its total."""
    if not lines:
        raise InvalidOrder("an order needs at least one line")
    currencies = {line.unit_price.currency for line in lines}
    if len(currencies) != 1:
        raise InvalidOrder(f"all lines must share one currency, got {sorted(currencies)}")
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
    if total.amount <= 0:
        raise InvalidOrder("the order total must be positive")
    return OrderPlacedData(order_id=order_id, customer=customer, lines=list(lines), total=total,
                           payment=payment, delivery=delivery)


def evolve(state: OrderState, event: Event) -> OrderState:
    if state.status in TERMINAL:
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
