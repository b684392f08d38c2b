"""A payment per order: charge once stock is reserved and the order is known. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace

from schemas import Event, Money, PaymentInstruction


@dataclass(frozen=True)
class Charge:
    """Command: capture the order total through the gateway, under an idempotency key."""

    order_id: str
    payment_id: str
    amount: Money
    instruction: PaymentInstruction
    idempotency_key: str


@dataclass(frozen=True)
class PaymentState:
    amount: Money | None = None
    instruction: PaymentInstruction | None = None
    stock_reserved: bool = False
    status: str | None = None  # confirmed | failed
    cancelled: bool = False

    @property
    def ready_to_charge(self) -> bool:
        return (self.amount is not None and self.stock_reserved and self.status is None
                and not self.cancelled)


def evolve(state: PaymentState, event: Event) -> PaymentState:
    if event.type == "OrderPlaced":
        return replace(state, amount=event.data.total, instruction=event.data.payment)
    if event.type == "StockReserved":
        return replace(state, stock_reserved=True)
    if event.type == "OrderCancelled":
        return replace(state, cancelled=True)
    if event.type == "PaymentConfirmed":
        return replace(state, status="confirmed")
    if event.type == "PaymentFailed":
        return replace(state, status="failed")
    return state


def decide(state: PaymentState, event: Event) -> list[Charge]:
    """Charge exactly when the order becomes chargeable, whichever of its two facts came last."""
    after = evolve(state, event)
    if after.ready_to_charge and not state.ready_to_charge:
        assert after.amount is not None and after.instruction is not None
        return [Charge(event.subject, f"pay_{event.subject}", after.amount, after.instruction,
                       idempotency_key=f"{event.subject}:capture")]
    return []


RELEVANT = frozenset({"OrderPlaced", "StockReserved", "OrderCancelled"})
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    Charge: frozenset({"PaymentConfirmed", "PaymentFailed"}),
}
