"""A payment per order, from the first charge to the last refund. Pure, no I/O, no clock.

- `card`: captured through the gateway once stock is reserved.
- `bank_transfer`: a virtual account is opened at the customer's bank (BCA, Mandiri, BNI or
  BRI; BCA if the order names none) once stock is reserved (`PaymentPending`); the
  gateway's callback confirms it. When its deadline comes, the gateway is asked what was paid
  into the account (`SettleTransfer`: a callback may have been lost while this service was
  down): paid in full, it is confirmed; else it expires. Money that arrives for an order that
  was cancelled or expired meanwhile goes straight back (`late_transfer`), and so does a
  transfer the order does not take: a second one, or one of another amount
  (`ReturnTransfer`, recorded as TransferReturned).
- `qris`, `ewallet`: once stock is reserved the gateway is asked for a payment request
  (`RequestPayment`, recorded as `PaymentRequested`): a dynamic QRIS code the customer scans
  with any banking or wallet app, or a push to the customer's e-wallet app (GoPay, OVO, DANA,
  ShopeePay) to approve there. The gateway's signed callback reports the payment; from there
  on it runs like a transfer: settled at its deadline (`SettleTransfer`), paid back if late
  (`late_payment`) or not the order's to take. A push the customer declines in the app fails
  the payment (PaymentFailed, `declined`), as a declined card does; had that callback been
  lost, the push lapses at its deadline instead. An order cancelled while its request is unpaid
  has the gateway withdraw it (`WithdrawRequest`, recorded as PaymentRequestWithdrawn): the
  customer can no longer pay it. Paid just before, it is not withdrawn, and that payment
  comes back as a late one.
- `cod`: confirmed when the parcel is delivered (the courier collected the cash). Cash has no
  refund: what is due back is recorded as a manual payout (RefundIssued with
  `manual_payout`, refund id `manual:…`) for the shop to pay by hand, and never reaches the
  gateway.
- point of sale (`cash`, or `card` on the till's terminal): the sale arrives paid; the
  payment is recorded when the order is known, without the gateway.
Captured money goes back (`Refund`) when the order is cancelled or its last return received:
once, all that is left of it. Before that, part of it goes back for a complaint
(GoodwillRefundRequested: a `Refund` of that amount, reason `goodwill`, under the goodwill's
own key) and for each partial return received (ReturnReceived with `last` false: the refund
the return named, under the return's own key), never more than is left. So
captured minus refunded is always 0 or the amount due (the order total, less the value of
loyalty points spent on it) less the goodwill and partial returns' refunds, and never
negative. A card or e-wallet order
cancelled with no payment outcome recorded (its reservation lapsed while the gateway did not
answer, or the customer cancelled while the charge was on its way) may still have been charged:
the gateway is asked (`SettleCharge`), and a capture it holds is recorded and refunded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from alur.runtime.aggregate import OR_NOTHING
from alur.runtime.errors import InfrastructureError
from schemas import (
    Event,
    Model,
    Money,
    OrderPlacedData,
    PaymentConfirmedData,
    PaymentExpiredData,
    PaymentFailedData,
    PaymentInstruction,
    PaymentMethod,
    PaymentRequestedData,
    RefundIssuedData,
)
from services.payments import qris

GATEWAY_METHODS = frozenset({"card"})  # captured by a charge
APP_METHODS = frozenset({"qris", "ewallet"})  # paid in an app, on a request
# Paid into something the gateway holds (an account, a request), reported by callback.
PAID_IN = APP_METHODS | {"bank_transfer"}
DEFAULT_BANK = "bca"
# Methods whose money cannot go back through the gateway: the shop pays it back by hand.
MANUAL_PAYOUT = frozenset({"cod"})


@dataclass(frozen=True)
class Charge:
    """Command: capture the order total through the gateway, under an idempotency key."""

    order_id: str
    payment_id: str
    amount: Money
    instruction: PaymentInstruction
    idempotency_key: str
    # Not carried out once the stock reservation lapsed (a payments service that was down
    # longer than the reservation): the expiry cancels the order instead.
    reserved_until: datetime | None = None


@dataclass(frozen=True)
class OpenTransfer:
    """Command: open a virtual account at `bank` that the customer pays the order total into."""

    order_id: str
    payment_id: str
    amount: Money
    idempotency_key: str
    reserved_until: datetime | None = None
    bank: str = DEFAULT_BANK


@dataclass(frozen=True)
class RequestPayment:
    """Command: ask the gateway for a payment request the customer pays in an app (`qris`: a
    dynamic QR code; `ewallet`: a push to the wallet of `token`)."""

    order_id: str
    payment_id: str
    amount: Money
    method: PaymentMethod
    idempotency_key: str
    token: str | None = None
    wallet: str | None = None
    reserved_until: datetime | None = None


@dataclass(frozen=True)
class Refund:
    """Command: pay the captured amount (or part of it) back, under an idempotency key."""

    order_id: str
    payment_id: str
    amount: Money
    gateway_reference: str
    reason: str
    idempotency_key: str
    return_id: str | None = None  # the return it pays back


@dataclass(frozen=True)
class SettleCharge:
    """Command: the order was cancelled before any payment outcome was recorded; ask the
    gateway whether it captured anyway, and if so record the capture and pay it back."""

    order_id: str
    payment_id: str
    method: PaymentMethod

    @property
    def refund_key(self) -> str:
        return f"{self.order_id}:refund"


@dataclass(frozen=True)
class ReturnTransfer:
    """Command: send a transfer the order does not take back to the customer."""

    order_id: str
    transfer_id: str
    amount: Money
    reason: str  # duplicate | wrong_amount

    @property
    def idempotency_key(self) -> str:
        return f"{self.order_id}:return:{self.transfer_id}"


@dataclass(frozen=True)
class SettleTransfer:
    """Command: the payment's deadline has come; ask the gateway what was paid into the
    account (or on the request, `method` qris or ewallet) before giving the payment up."""

    order_id: str
    payment_id: str
    pay_into: str
    amount: Money
    method: PaymentMethod = "bank_transfer"


@dataclass(frozen=True)
class WithdrawRequest:
    """Command: the order was cancelled with its QRIS code or e-wallet push unpaid; have the
    gateway withdraw the request so that the customer cannot pay it any more."""

    order_id: str
    payment_id: str
    request_id: str


class TransferMismatch(ValueError):
    """A payment callback that does not fit the order (account or request)."""


@dataclass(frozen=True)
class PaymentState:
    order_id: str | None = None
    amount: Money | None = None
    instruction: PaymentInstruction | None = None
    stock_reserved: bool = False
    reserved_until: datetime | None = None
    status: str | None = None  # pending | confirmed | failed | expired
    cancelled: bool = False
    pay_into: str | None = None  # the virtual account, or the app payment's request id
    expires_at: datetime | None = None
    captured: Money | None = None
    gateway_reference: str | None = None
    refunded: bool = False  # the final refund (cancelled, returned, late transfer) was issued
    goodwill: int = 0  # goodwill refunds accepted, minor units
    return_refunds: int = 0  # partial returns' refunds, minor units
    partial_returns: frozenset[str] = frozenset()  # the partial returns refunded
    delivered: str | None = None  # the tracking number of the parcel that arrived
    returned: frozenset[str] = frozenset()  # transfers sent back (TransferReturned)
    released: bool = False  # OrderReadyToShip seen

    @property
    def method(self) -> PaymentMethod | None:
        return self.instruction.method if self.instruction else None

    @property
    def ready_to_charge(self) -> bool:
        return (self.amount is not None and self.stock_reserved and self.status is None
                and not self.cancelled)

    @property
    def refundable(self) -> bool:
        return self.captured is not None and not self.refunded

    def takes_goodwill(self, amount: Money) -> bool:
        """A goodwill refund of `amount` fits: paid, not cancelled or refunded, in the
        capture's currency, and less than what is left of the capture."""
        return (self.refundable and not self.cancelled and self.captured is not None
                and amount.currency == self.captured.currency
                and 0 < amount.amount < self.left)

    @property
    def left(self) -> int:
        """What is left of the capture after its goodwill and partial returns' refunds."""
        if self.captured is None:
            return 0
        return self.captured.amount - self.goodwill - self.return_refunds


def due(order: OrderPlacedData) -> Money:
    """What the payment method is charged: the total, less the loyalty points spent on it."""
    if order.redemption is None:
        return order.total
    return Money(amount=order.total.amount - order.redemption.value.amount,
                 currency=order.total.currency)


def evolve(state: PaymentState, event: Event) -> PaymentState:
    if event.type == "OrderPlaced":
        return replace(state, order_id=event.data.order_id, amount=due(event.data),
                       instruction=event.data.payment)
    if event.type == "StockReserved":
        return replace(state, stock_reserved=True, reserved_until=event.data.expires_at)
    if event.type == "OrderCancelled":
        return replace(state, cancelled=True)
    if event.type == "OrderReadyToShip":
        return replace(state, released=True)
    if event.type == "PaymentPending":
        return replace(state, status="pending", pay_into=event.data.virtual_account,
                       expires_at=event.data.expires_at)
    if event.type == "PaymentRequested":
        return replace(state, status="pending", pay_into=event.data.request_id,
                       expires_at=event.data.expires_at)
    if event.type == "PaymentConfirmed":
        return replace(state, status="confirmed", captured=event.data.amount,
                       gateway_reference=event.data.gateway_reference)
    if event.type == "PaymentFailed":
        return replace(state, status="failed")
    if event.type == "PaymentExpired":
        return replace(state, status="expired")
    if event.type == "PaymentRequestWithdrawn":
        return replace(state, status="withdrawn")
    if event.type == "GoodwillRefundRequested" and state.takes_goodwill(event.data.amount):
        return replace(state, goodwill=state.goodwill + event.data.amount.amount)
    if _partial(event) and state.refundable \
            and event.data.return_id not in state.partial_returns and event.data.refund:
        part = min(event.data.refund.amount, state.left)
        return replace(state, return_refunds=state.return_refunds + part,
                       partial_returns=state.partial_returns | {event.data.return_id})
    if event.type == "RefundIssued" and event.data.reason != "goodwill" \
            and event.data.return_id not in state.partial_returns:
        return replace(state, refunded=True)
    if event.type == "TransferReturned":
        return replace(state, returned=state.returned | {event.data.transfer_id})
    if event.type == "Delivered":
        return replace(state, delivered=event.data.tracking_number)
    if event.type == "PickedUp":
        return replace(state, delivered=event.data.shipment_id)
    return state


Decision = (Charge | OpenTransfer | RequestPayment | Refund | SettleTransfer | ReturnTransfer
            | SettleCharge | WithdrawRequest | Model)


def decide(state: PaymentState, event: Event) -> list[Decision]:
    after = evolve(state, event)
    if event.type == "OrderPlaced" and event.channel == "pos" and after.status is None \
            and after.amount is not None and after.instruction is not None:
        return [PaymentConfirmedData(order_id=event.subject, payment_id=_payment_id(event.subject),
                                     method=after.instruction.method, amount=after.amount,
                                     gateway_reference=f"till:{event.data.sale_id}")]
    started = _start(after, event.subject) if after.ready_to_charge and \
        not state.ready_to_charge else []
    if started:
        return started
    if _cod_collected(after) and not _cod_collected(state) and after.amount is not None:
        # On Delivered; or on OrderPlaced, when the delivery overtook it from another topic.
        return [PaymentConfirmedData(order_id=event.subject, payment_id=_payment_id(event.subject),
                                     method="cod", amount=after.amount,
                                     gateway_reference=f"cod:{after.delivered}")]
    if event.type == "OrderCancelled" and state.refundable:
        return _refund(state, event.subject, "cancelled")
    if event.type == "OrderCancelled" and not state.cancelled and state.status is None \
            and state.instruction is not None and state.method in GATEWAY_METHODS \
            and event.data.reason in ("reservation_expired", "customer_request"):
        return [SettleCharge(event.subject, _payment_id(event.subject),
                             state.instruction.method)]
    if event.type == "OrderCancelled" and not state.cancelled and state.status == "pending" \
            and state.method in APP_METHODS and state.pay_into is not None:
        return [WithdrawRequest(event.subject, _payment_id(event.subject), state.pay_into)]
    if event.type == "ReturnRequested" and event.data.at_store:
        return _over_the_counter(state, after, event)
    if event.type == "ReturnReceived":
        return _return_refund(state, after, event)
    if event.type == "GoodwillRefundRequested" and after.goodwill > state.goodwill \
            and after.gateway_reference is not None:
        gift = event.data
        return [_pay_back(after, event.subject, gift.amount, "goodwill",
                          f"{event.subject}:goodwill:{gift.goodwill_id}")]
    return []


def _cod_collected(state: PaymentState) -> bool:
    """The courier handed over a cash-on-delivery parcel, so it collected the cash."""
    return state.method == "cod" and state.delivered is not None and state.status is None \
        and not state.cancelled


def refuse(state: PaymentState, event: Event) -> str | None:
    """Why another service's event cannot be true of this order: money comes back for a
    return only once the order was delivered, and nothing is delivered of an order cancelled
    before its release (OrderReadyToShip comes before a later OrderCancelled on the orders
    topic, so an order seen cancelled and not released never was)."""
    if event.type == "ReturnReceived" and state.delivered is None:
        return "it was never delivered"
    if event.type in ("Delivered", "PickedUp") and state.cancelled and not state.released:
        return "the order was cancelled before it was released to shipping"
    return None


def _start(state: PaymentState, order_id: str) -> list[Decision]:
    if state.amount is None or state.instruction is None:
        return []
    if state.method in GATEWAY_METHODS:
        return [Charge(order_id, _payment_id(order_id), state.amount, state.instruction,
                       idempotency_key=f"{order_id}:capture",
                       reserved_until=state.reserved_until)]
    if state.method == "bank_transfer":
        return [OpenTransfer(order_id, _payment_id(order_id), state.amount,
                             idempotency_key=f"{order_id}:transfer",
                             reserved_until=state.reserved_until,
                             bank=state.instruction.bank or DEFAULT_BANK)]
    if state.method in APP_METHODS:
        return [RequestPayment(order_id, _payment_id(order_id), state.amount, state.method,
                               idempotency_key=f"{order_id}:request",
                               token=state.instruction.token, wallet=state.instruction.wallet,
                               reserved_until=state.reserved_until)]
    return []  # cod waits for the delivery; cash was recorded with the order


def transfer_received(state: PaymentState, order_id: str, amount: Money,
                      pay_into: str, transfer_id: str) -> list[Decision]:
    """The gateway says the customer paid into the order's virtual account, or paid its
    QRIS code or e-wallet request (`pay_into`). Every payment ends up taken by the order or
    sent back: none is kept without an order."""
    if state.pay_into is None or state.amount is None or state.method not in PAID_IN:
        raise TransferMismatch(f"order {order_id} has no account or payment request")
    if pay_into != state.pay_into:
        raise TransferMismatch(f"account or request {pay_into} is not this order's")
    if transfer_id == state.gateway_reference or transfer_id in state.returned:
        return []  # the same transfer reported again
    if amount != state.amount:
        return [ReturnTransfer(order_id, transfer_id, amount, "wrong_amount")]
    if state.captured is not None or (state.status == "expired" and state.refunded):
        return [ReturnTransfer(order_id, transfer_id, amount, "duplicate")]  # paid already
    if state.status not in ("pending", "expired", "withdrawn"):
        return []
    confirmed = PaymentConfirmedData(order_id=order_id, payment_id=_payment_id(order_id),
                                     method=state.method, amount=amount,
                                     gateway_reference=transfer_id)
    if state.status == "pending" and not state.cancelled:
        return [confirmed]
    late = replace(state, captured=amount, gateway_reference=transfer_id)
    return [confirmed, *_refund(late, order_id, "late_transfer" if state.method ==
                                "bank_transfer" else "late_payment")]


def request_declined(state: PaymentState, order_id: str, request_id: str) -> list[Decision]:
    """The gateway says the customer declined the order's e-wallet push in the app: the
    payment failed (the order is cancelled and its stock released, as for a declined card).
    Nothing is declined of a push already paid, lapsed or withdrawn."""
    if state.pay_into != request_id or state.method != "ewallet" or state.amount is None:
        raise TransferMismatch(f"{request_id} is not an e-wallet push of order {order_id}")
    if state.status != "pending" or state.cancelled:
        return []
    return [PaymentFailedData(order_id=order_id, payment_id=_payment_id(order_id),
                              amount=state.amount, reason="declined")]


def requested(command: RequestPayment, request_id: str, expires_at: datetime,
              qr_string: str | None, wallet: str | None) -> PaymentRequestedData:
    """The gateway's payment request, as recorded. A QRIS payload must be a well-formed
    dynamic code for the amount due, or the customer would be shown a code that cannot pay
    the order."""
    if command.method == "qris":
        try:
            code = qris.read(qr_string or "")
        except qris.InvalidPayload as exc:
            raise InfrastructureError(f"gateway sent an unusable QRIS code: {exc}",
                                      retriable=False) from exc
        if not code.dynamic or code.amount != command.amount.amount:
            raise InfrastructureError("gateway sent a QRIS code that is not for the amount due",
                                      retriable=False)
    return PaymentRequestedData(
        order_id=command.order_id, payment_id=command.payment_id,
        method="qris" if command.method == "qris" else "ewallet", amount=command.amount,
        request_id=request_id, expires_at=expires_at, qr_string=qr_string,
        wallet=wallet if command.method == "ewallet" else None)


def deadlines(state: PaymentState) -> dict[str, datetime]:
    if state.status == "pending" and not state.cancelled and state.expires_at is not None:
        return {"payment_expiry": state.expires_at}
    return {}


def on_timer(state: PaymentState, kind: str) -> list[Decision]:
    if kind == "payment_expiry" and "payment_expiry" in deadlines(state) and state.order_id \
            and state.pay_into and state.amount and state.method in PAID_IN:
        return [SettleTransfer(state.order_id, _payment_id(state.order_id),
                               state.pay_into, state.amount, state.method)]
    return []


def settle_charge(command: SettleCharge,
                  captured: Sequence[tuple[str, Money]]) -> PaymentConfirmedData | None:
    """The capture the gateway holds for a cancelled order (charge id, amount), recorded as
    such so that it can be paid back; None if it holds none. (One key, one capture: the
    gateway never holds two for an order.)"""
    if not captured:
        return None
    charge_id, amount = captured[0]
    return PaymentConfirmedData(order_id=command.order_id, payment_id=command.payment_id,
                                method=command.method, amount=amount,
                                gateway_reference=charge_id)


def settle_transfer(command: SettleTransfer,
                    received: Sequence[tuple[str, Money]]) -> list[Model]:
    """What the gateway's account shows at the deadline: a transfer of the amount due
    (transfer id, amount) confirms the payment; without one, it expires."""
    for transfer_id, amount in received:
        if amount == command.amount:
            return [PaymentConfirmedData(
                order_id=command.order_id, payment_id=command.payment_id,
                method=command.method, amount=amount, gateway_reference=transfer_id)]
    return [PaymentExpiredData(order_id=command.order_id, payment_id=command.payment_id)]


def _partial(event: Event) -> bool:
    """A return that takes back part of what the customer kept, and whose money is due now:
    received at the warehouse, or handed back over a store's counter."""
    if event.type not in ("ReturnReceived", "ReturnRequested"):
        return False
    due = event.type == "ReturnReceived" or event.data.at_store is not None
    return due and not event.data.last and event.data.refund is not None


def _return_refund(state: PaymentState, after: PaymentState, event: Event) -> list[Decision]:
    """What a return pays back once its units are back: a partial one the refund it named,
    under the return's own key; the last one all that is left."""
    back = event.data.return_id
    if not _partial(event):
        return _refund(state, event.subject, "returned", back) if state.refundable else []
    if after.return_refunds <= state.return_refunds or after.captured is None:
        return []
    return [_pay_back(after, event.subject,
                      Money(amount=after.return_refunds - state.return_refunds,
                            currency=after.captured.currency), "returned",
                      f"{event.subject}:return:{back}", back)]


def _over_the_counter(state: PaymentState, after: PaymentState, event: Event) -> list[Decision]:
    """A till sale returned at its store: the till pays it back, the way it was paid (cash,
    or the store's card terminal), and this service records it; no gateway is involved. An
    online order collected from the store's shelf and handed back there is paid back the way
    it was paid online, as a return received at a warehouse would be."""
    data = event.data
    if not (state.gateway_reference or "").startswith("till:"):
        return _return_refund(state, after, event)
    if _partial(event):
        amount = after.return_refunds - state.return_refunds
    else:
        amount = state.left if state.refundable else 0
    if amount <= 0 or after.captured is None:
        return []
    return [RefundIssuedData(order_id=event.subject, refund_id=f"till:{data.return_id}",
                             amount=Money(amount=amount, currency=after.captured.currency),
                             reason="returned", return_id=data.return_id)]


def _refund(state: PaymentState, order_id: str, reason: str,
            return_id: str | None = None) -> list[Decision]:
    """Pay back what is left of the capture after its goodwill and partial returns' refunds
    (nothing, if nothing was captured or nothing is left)."""
    if state.captured is None or state.gateway_reference is None or state.left <= 0:
        return []
    left = Money(amount=state.left, currency=state.captured.currency)
    return [_pay_back(state, order_id, left, reason, f"{order_id}:refund", return_id)]


def _pay_back(state: PaymentState, order_id: str, amount: Money, reason: str, key: str,
              return_id: str | None = None) -> Refund | RefundIssuedData:
    """A refund of `amount` under idempotency `key`: through the gateway, or, for a method
    that has none (cash on delivery), recorded at once as a payout the shop makes by hand."""
    if state.method in MANUAL_PAYOUT:
        return RefundIssuedData(order_id=order_id, refund_id=f"manual:{key}", amount=amount,
                                reason=reason, return_id=return_id, manual_payout=True)
    if state.gateway_reference is None:
        raise ValueError(f"order {order_id}: a refund needs the capture it pays back")
    return Refund(order_id, _payment_id(order_id), amount, state.gateway_reference, reason,
                  idempotency_key=key, return_id=return_id)


def _payment_id(order_id: str) -> str:
    return f"pay_{order_id}"


RELEVANT = frozenset({"OrderPlaced", "StockReserved", "OrderCancelled", "OrderReadyToShip",
                      "Delivered", "PickedUp", "ReturnReceived", "GoodwillRefundRequested",
                      "ReturnRequested"})
OPENS = frozenset({"OrderPlaced"})
# From other topics than OrderPlaced's, these may overtake it: stock reserved, and a cash on
# delivery parcel delivered while this service read the orders topic far behind.
PRECEDE = frozenset({"StockReserved", "Delivered", "PickedUp"})
# What carrying out each command can record (see alur replay handlers).
OUTCOMES: dict[type, frozenset[str]] = {
    Charge: frozenset({"PaymentConfirmed", "PaymentFailed"}),
    OpenTransfer: frozenset({"PaymentPending"}),
    RequestPayment: frozenset({"PaymentRequested"}),
    Refund: frozenset({"RefundIssued"}),
    SettleTransfer: frozenset({"PaymentConfirmed", "PaymentExpired"}),
    ReturnTransfer: frozenset({"TransferReturned"}),
    SettleCharge: frozenset({"PaymentConfirmed", "RefundIssued", OR_NOTHING}),
    WithdrawRequest: frozenset({"PaymentRequestWithdrawn", OR_NOTHING}),
}
