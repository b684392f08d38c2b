"""The order's life as the orders service sees it: pure, no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal

from schemas import (
    Customer,
    Delivery,
    Event,
    GoodwillRefundRequestedData,
    LoyaltyPointsAccruedData,
    LoyaltyPointsRedeemedData,
    LoyaltyPointsReleasedData,
    LoyaltyPointsReversedData,
    Model,
    Money,
    OrderCancelledData,
    OrderCompletedData,
    OrderLine,
    OrderPlacedData,
    OrderReadyToShipData,
    OrderReturnedData,
    OrderStuckData,
    PaymentInstruction,
    PickupConfirmedData,
    ReceiptConfirmedData,
    Redemption,
    ReturnClosedData,
    ReturnLine,
    ReturnRequestedData,
    ReviewSubmittedData,
    Tax,
)
from schemas.money import minor_units

# Status moves forward only; an event that arrives late (another topic lagging) cannot move
# the order back. A return moves on from delivered/completed: return_requested ->
# return_received, then back to where it came from once a partial return is closed
# (ReturnClosed), or to returned once the last units came back (OrderReturned).
STAGES: tuple[str, ...] = (
    "placed", "reserved", "awaiting_payment", "paid", "shipment_created", "shipped",
    "in_transit", "out_for_delivery", "ready_for_pickup", "delivered", "completed",
)
TERMINAL = frozenset({"completed", "cancelled", "returned"})
# Settled: nothing more is due from the platform. Delivered orders wait for the customer (and
# auto-completion), so stuck-order counts and traces treat them as settled.
SETTLED_EVENTS = ("OrderCompleted", "OrderCancelled", "OrderReturned", "Delivered")
STAGE_OF_EVENT = {
    "OrderPlaced": "placed", "StockReserved": "reserved", "PaymentPending": "awaiting_payment",
    "PaymentRequested": "awaiting_payment",
    "PaymentConfirmed": "paid", "ShipmentCreated": "shipment_created", "Shipped": "shipped",
    "InTransit": "in_transit", "OutForDelivery": "out_for_delivery",
    "ReadyForPickup": "ready_for_pickup", "Delivered": "delivered", "PickedUp": "delivered",
    "OrderCompleted": "completed",
}
# What the platform's "no" is called when it ends an order.
CANCELS = {"StockRejected": "out_of_stock", "PaymentFailed": "payment_failed",
           "PaymentExpired": "payment_expired", "ReservationExpired": "reservation_expired"}
SUPPORTED_PAYMENT_METHODS = frozenset({"card", "ewallet", "qris", "bank_transfer", "cod"})
SUPPORTED_DELIVERY_METHODS = frozenset({"home_delivery", "click_and_collect"})
# A till sale was paid at the counter (cash, or card on the till's own terminal) and the goods
# were handed over: it completes once payments has recorded the payment.
POS_PAYMENT_METHODS = frozenset({"cash", "card"})
# A business "no" (rejection, decline, expiry) cancels until the parcel leaves; compensations
# (release, refund, and a booked parcel stopped) follow.
CANCELLABLE = frozenset({"placed", "reserved", "awaiting_payment", "paid", "shipment_created"})
MAX_AMOUNT = 10**13  # minor units: far above any order, far below PostgreSQL's bigint
AFTER_DELIVERY = frozenset({"delivered", "completed"})
# Waiting on the customer, each with its own deadline: not "stuck" on the platform.
CUSTOMER_WAITS = frozenset({"awaiting_payment", "ready_for_pickup", "delivered"})
RETURNING = ("return_requested", "return_received")


@dataclass(frozen=True)
class Policy:
    """Deadlines of an order: release to shipping after payment (the customer's window to
    cancel), auto-completion after delivery, the stuck-order threshold."""

    complete_after: timedelta = timedelta(days=14)
    stuck_after: timedelta = timedelta(minutes=15)
    release_after: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class ShopTerms:
    """What a shop's orders are written with: its tax (PPN in Indonesia, 11% by default;
    prices either include it or have it added), the locale its customers read amounts and
    dates in, and how many days home delivery takes (for the estimate in the confirmation;
    click-and-collect is ready the next day)."""

    tax_name: str = "PPN"
    tax_rate_bp: int = 1100  # basis points: 1100 = 11%
    prices_include_tax: bool = True
    locale: str | None = None
    delivery_days: int = 3
    cod_fee: int = 0  # minor units of the shop's currency cash on delivery adds to an order


INDONESIA = ShopTerms(locale="id_ID")  # a new shop's terms unless it says otherwise
NO_TERMS = ShopTerms(tax_rate_bp=0)  # no tax line (a caller that names no shop)
PICKUP_DAYS = 1


def tax_of(subtotal: Money, terms: ShopTerms) -> Tax | None:
    """The order's tax line, rounded half up to a minor unit, or None at a 0% rate. Prices
    that include the tax hold rate/(1+rate) of it; otherwise it is added to the subtotal."""
    if terms.tax_rate_bp <= 0:
        return None
    if terms.prices_include_tax:
        amount = (subtotal.amount * terms.tax_rate_bp * 2 + 10_000 + terms.tax_rate_bp) \
            // (2 * (10_000 + terms.tax_rate_bp))
    else:
        amount = (subtotal.amount * terms.tax_rate_bp * 2 + 10_000) // 20_000
    return Tax(name=terms.tax_name, rate_bp=terms.tax_rate_bp,
               included=terms.prices_include_tax,
               amount=Money(amount=amount, currency=subtotal.currency))


def estimated_delivery(delivery: Delivery, terms: ShopTerms, placed: datetime) -> date:
    days = PICKUP_DAYS if delivery.method == "click_and_collect" else terms.delivery_days
    return (placed + timedelta(days=days)).date()


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
    order_id: str | None = None
    customer_id: str | None = None
    total: Money | None = None
    lines: tuple[tuple[str, int], ...] = ()
    delivered_at: datetime | None = None
    reviewed: bool = False
    values: tuple[tuple[str, int], ...] = ()  # what each SKU's units cost on the order, all told
    return_id: str | None = None  # the return under way
    return_lines: tuple[ReturnLine, ...] = ()
    return_refund: int | None = None  # what it pays back (None: an old whole-order return)
    return_last: bool = True  # it takes back every unit still kept
    resume: str | None = None  # the status a partial return goes back to once closed
    refunded_return: bool = False  # its refund was issued
    settled_units: int = 0  # of its units, restocked or written off
    returned: tuple[tuple[str, int], ...] = ()  # units taken back by closed returns
    returned_money: int = 0  # what closed returns paid back, minor units
    closed_returns: frozenset[str] = frozenset()
    points: int = 0  # loyalty points accrued and not reversed
    held_points: int = 0  # loyalty points the order spends (held until it is paid)
    redeemed_value: int = 0  # what they pay of the total, minor units
    points_spent: bool = False  # LoyaltyPointsRedeemed recorded
    points_released: bool = False  # LoyaltyPointsReleased recorded
    stuck_reported: datetime | None = None  # the `since` an OrderStuck was emitted for
    channel: str = "online"
    sold_at: datetime | None = None  # point-of-sale: when the till sold it
    store_id: str | None = None  # point-of-sale: the store whose till sold it
    pickup_store: str | None = None  # click-and-collect: where the customer collects it
    location: str | None = None  # where inventory holds its stock (StockReserved)
    cod: bool = False
    ready_to_ship: bool = False  # OrderReadyToShip recorded
    paid: bool = False  # PaymentConfirmed recorded
    goodwill: int = 0  # goodwill refunds requested, minor units
    stock_decided: bool = False  # StockReserved or StockRejected recorded

    @property
    def return_requested(self) -> bool:
        return self.return_id is not None

    @property
    def on_shelf(self) -> bool:
        """A click-and-collect order served from the pickup store's own shelf."""
        return self.pickup_store is not None and self.location == self.pickup_store

    def kept(self) -> dict[str, int]:
        """The units the customer still has (ordered, less those closed returns took back)."""
        kept = dict(self.lines)
        for sku, quantity in self.returned:
            kept[sku] = kept.get(sku, 0) - quantity
        return {sku: n for sku, n in kept.items() if n > 0}

    @property
    def paid_money(self) -> int:
        """What the payment method owes for the order: its total less the points spent."""
        return 0 if self.total is None else self.total.amount - self.redeemed_value

    @property
    def given_back(self) -> int:
        """Paid back without cancelling the order: goodwill and closed partial returns."""
        return self.goodwill + self.returned_money


def place_order(
    order_id: str, customer: Customer, lines: Sequence[OrderLine],
    payment: PaymentInstruction, delivery: Delivery, currency: str | None = None, *,
    reference: str | None = None, intake: Literal["http", "kafka"] = "http",
    loyalty_points: int | None = None, terms: ShopTerms = NO_TERMS,
    placed: datetime | None = None,
) -> OrderPlacedData:
    """Validate a new order that ships (online or marketplace) and compute its total and tax
    by the shop's `terms`; `currency`, when given, is the shop's. `loyalty_points` are spent
    on it (whether the customer holds them is decided when the order is recorded). With
    `placed`, the order carries its estimated delivery date."""
    total, tax = _taxed(_total(lines, currency), terms)
    cod_fee = None
    if payment.method == "cod" and terms.cod_fee > 0:
        # The courier collects it with the order: in the total, outside the tax base.
        cod_fee = Money(amount=terms.cod_fee, currency=total.currency)
        total = Money(amount=total.amount + terms.cod_fee, currency=total.currency)
    redemption = None if not loyalty_points else redeem(loyalty_points, total)
    if payment.method not in SUPPORTED_PAYMENT_METHODS:
        raise InvalidOrder(f"payment method {payment.method!r} is not supported online")
    if payment.method in ("card", "ewallet") and not payment.token:
        raise InvalidOrder(f"payment method {payment.method!r} needs a gateway token")
    if payment.method == "qris" and total.currency != "IDR":
        raise InvalidOrder(f"QRIS pays rupiah only, and this order is in {total.currency}")
    if delivery.method not in SUPPORTED_DELIVERY_METHODS:
        raise InvalidOrder(f"delivery method {delivery.method!r} is for point-of-sale only")
    if delivery.method == "home_delivery" and (delivery.address is None
                                               or delivery.address.line1 is None):
        raise InvalidOrder("home delivery needs an address with its street (line1)")
    if delivery.method == "click_and_collect" and not delivery.store_id:
        raise InvalidOrder("click-and-collect needs a store_id")
    if delivery.method == "click_and_collect" and payment.method == "cod":
        raise InvalidOrder("cash on delivery needs home delivery")
    if not customer.identifiers():
        raise InvalidOrder("an order names its customer: a customer_id (the shop's reference), "
                           "an email, a phone or a loyalty_card")
    return OrderPlacedData(
        order_id=order_id, customer=customer, lines=list(lines), total=total, payment=payment,
        delivery=delivery, reference=reference, intake=intake, redemption=redemption,
        taxes=[] if tax is None else [tax],
        locale=terms.locale, cod_fee=cod_fee,
        estimated_delivery=None if placed is None else estimated_delivery(delivery, terms,
                                                                          placed))


def record_sale(
    order_id: str, customer: Customer, lines: Sequence[OrderLine], method: str, store_id: str,
    sale_id: str, sold_at: datetime, now: datetime, currency: str | None = None,
    max_age: timedelta = timedelta(days=30), skew: timedelta = timedelta(minutes=5),
    terms: ShopTerms = NO_TERMS,
) -> OrderPlacedData:
    """Validate a till's sale: paid at the counter and handed over in the store at `sold_at`,
    uploaded now (possibly hours later)."""
    total, tax = _taxed(_total(lines, currency), terms)
    if method not in POS_PAYMENT_METHODS:
        raise InvalidOrder(f"a till sale is paid by {' or '.join(sorted(POS_PAYMENT_METHODS))}"
                           f", not {method!r}")
    if sold_at > now + skew:
        raise InvalidOrder(f"sold_at {sold_at.isoformat()} is in the future")
    if sold_at < now - max_age:
        raise InvalidOrder(f"sold_at {sold_at.isoformat()} is more than "
                           f"{max_age.days} days ago; record it as a stock adjustment instead")
    return OrderPlacedData(
        order_id=order_id, customer=customer, lines=list(lines), total=total,
        payment=PaymentInstruction(method=method),
        delivery=Delivery(method="in_store", store_id=store_id), sold_at=sold_at,
        sale_id=sale_id, taxes=[] if tax is None else [tax], locale=terms.locale)


def _taxed(subtotal: Money, terms: ShopTerms) -> tuple[Money, Tax | None]:
    """The total the customer pays, and its tax line."""
    tax = tax_of(subtotal, terms)
    if tax is None or tax.included:
        return subtotal, tax
    total = subtotal + tax.amount
    if total.amount > MAX_AMOUNT:
        raise InvalidOrder(f"the order total with {tax.name} is at most {MAX_AMOUNT} minor "
                           "units")
    return total, tax


def _total(lines: Sequence[OrderLine], currency: str | None) -> Money:
    """The lines' total, once they pass the checks every order must."""
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
    total = Money(amount=0, currency=currencies.pop())
    for line in lines:
        total = total + line.unit_price.times(line.quantity)
    if total.amount > MAX_AMOUNT:
        raise InvalidOrder(f"the order total is at most {MAX_AMOUNT} minor units")
    if total.amount <= 0:
        raise InvalidOrder("the order total must be positive")
    return total


# A loyalty point is earned per this many minor units of a currency spent, and pays as much:
# one whole unit where a unit buys little enough (1.00 EUR, 1.00 USD), a round amount where it
# buys less (Rp1.000, ¥100, ₩1,000, ₫10,000).
POINT_UNITS: dict[str, int] = {"IDR": 1_000, "JPY": 100, "KRW": 1_000, "VND": 10_000,
                               "CLP": 1_000, "ISK": 100, "PYG": 10_000, "UGX": 1_000}


def point_value(currency: str) -> int:
    """Minor units of `currency` one loyalty point pays (and is earned by)."""
    return POINT_UNITS.get(currency) or int(10 ** minor_units(currency))


def redeem(points: int, total: Money) -> Redemption:
    """`points` spent on an order of `total`: they pay part of it, never all (a payment
    method pays the rest, at least one minor unit)."""
    unit = point_value(total.currency)
    value = points * unit
    if value >= total.amount:
        raise InvalidOrder(f"{points} loyalty points pay {value} minor units, not less than the "
                           f"order total {total.amount}: points pay part of an order, at most "
                           f"{(total.amount - 1) // unit} points on this one")
    return Redemption(points=points, value=Money(amount=value, currency=total.currency))


def release_points(state: OrderState, order_id: str,
                   reason: Literal["cancelled", "returned"]) -> list[Model]:
    """Give back the points the order held or spent, once: it is cancelled or returned."""
    if state.held_points <= 0 or state.points_released or state.customer_id is None:
        return []
    return [LoyaltyPointsReleasedData(order_id=order_id, customer_id=state.customer_id,
                                      points=state.held_points, reason=reason)]


def cancel(state: OrderState, order_id: str) -> list[Model]:
    """The customer (through the shop) cancels: allowed until the order is released to
    shipping (`Policy.release_after` after payment), so that no parcel is ever booked for it."""
    if state.channel == "pos":
        raise NotAllowedNow("a till sale was handed over already; it cannot be cancelled")
    if state.status not in CANCELLABLE:
        raise NotAllowedNow(f"an order that is {state.status} can no longer be cancelled")
    if state.ready_to_ship:
        raise NotAllowedNow("the order was released to shipping; it can no longer be cancelled")
    return [OrderCancelledData(order_id=order_id, reason="customer_request"),
            *release_points(state, order_id, "cancelled")]


def confirm_receipt(state: OrderState, order_id: str) -> list[Model]:
    """The customer has the parcel: the order is complete."""
    if state.status != "delivered":
        raise NotAllowedNow(f"receipt can be confirmed once delivered; the order is {state.status}")
    return [ReceiptConfirmedData(order_id=order_id), *complete(state, order_id)]


def confirm_pickup(state: OrderState, order_id: str) -> PickupConfirmedData:
    """The store handed the order over from its own shelf: shipping records it picked up. (A
    parcel sent to the store is handed over at the carrier's counter, which reports it.)"""
    if not state.on_shelf or state.pickup_store is None:
        raise NotAllowedNow("only a click-and-collect order set aside on its store's own shelf "
                            "is handed over by the store; a parcel sent to the store is "
                            "handed over by its carrier")
    if state.status != "ready_for_pickup":
        raise NotAllowedNow(f"the order can be handed over once it is ready for pickup; it is "
                            f"{state.status}")
    return PickupConfirmedData(order_id=order_id, store_id=state.pickup_store)


def complete(state: OrderState, order_id: str) -> list[Model]:
    """The order completes, and its customer earns a loyalty point per point value paid with
    money and kept (not given back as goodwill)."""
    done: list[Model] = [OrderCompletedData(order_id=order_id)]
    points = _earned(state, state.given_back)
    if points > 0 and state.customer_id is not None:
        done.append(LoyaltyPointsAccruedData(order_id=order_id, customer_id=state.customer_id,
                                             points=points))
    return done


def _earned(state: OrderState, given_back: int) -> int:
    """The points an order earns: its total less the points spent on it and `given_back`."""
    if state.total is None:
        return 0
    kept = state.total.amount - state.redeemed_value - given_back
    return max(0, kept // point_value(state.total.currency))


GOODWILL_AFTER = frozenset({"paid", "shipment_created", "shipped", "in_transit",
                            "out_for_delivery", "ready_for_pickup", "delivered", "completed"})


def goodwill_refund(state: OrderState, order_id: str, goodwill_id: str, amount: Money,
                    reason: str) -> list[Model]:
    """The shop pays part of the order back for a complaint, without a return. Allowed once
    the order is paid online and while it is neither cancelled nor being returned; all of an
    order's goodwill stays below what was paid (a cancel or a return gives back the rest). On a
    completed order the points it earned on the amount are reversed."""
    if state.channel == "pos":
        raise NotAllowedNow("a till sale's money is given back at the till")
    if not state.paid or state.status not in GOODWILL_AFTER:
        raise NotAllowedNow(f"a goodwill refund needs a paid order that is neither cancelled "
                            f"nor being returned; the order is {state.status}")
    if state.total is None or amount.currency != state.total.currency:
        raise InvalidOrder(f"the order is in {state.total.currency if state.total else '?'}, "
                           f"not {amount.currency}")
    if amount.amount <= 0:
        raise InvalidOrder("a goodwill refund is a positive amount")
    left = state.paid_money - state.given_back
    if amount.amount >= left:
        raise InvalidOrder(f"a goodwill refund pays back part of what was paid: at most "
                           f"{left - 1} minor units on this order (to give it all back, cancel "
                           "it or take a return)")
    decided: list[Model] = [GoodwillRefundRequestedData(
        order_id=order_id, goodwill_id=goodwill_id, amount=amount, reason=reason)]
    if state.status == "completed":
        decided += _reverse(state, order_id,
                            state.points - _earned(state, state.given_back + amount.amount))
    return decided


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
    """A return of delivered units, within the window after delivery: any of the units the
    customer still has, each line saying whether its units go back on the shelf or are
    written off. Several returns may follow one another, one at a time. A return pays back
    its lines' share of what was paid (tax included, as the total includes it); the one that
    takes back the last units pays back all that is left, so that the order's refunds add up
    to what was paid, to the unit. A till sale is returned over the counter of the store that
    sold it (`at_store`): its window runs from the sale."""
    if state.return_requested:
        raise NotAllowedNow(f"return {state.return_id} of this order is under way; the next "
                            "can be requested once it is closed")
    if state.delivered_at is None or state.status not in AFTER_DELIVERY:
        raise NotAllowedNow(f"only a delivered order can be returned; the order is {state.status}")
    if (now - state.delivered_at).total_seconds() > window_days * 86400:
        raise NotAllowedNow(f"the return window of {window_days:g} days after delivery is over")
    ordered, kept = dict(state.lines), state.kept()
    seen: set[str] = set()
    for line in lines:
        if line.sku not in ordered:
            raise InvalidOrder(f"{line.sku} is not on this order")
        if line.sku in seen:
            raise InvalidOrder("each SKU may appear on one return line only")
        if line.quantity > kept.get(line.sku, 0):
            raise InvalidOrder(f"{line.quantity} x {line.sku} returned but the customer has "
                               f"{kept.get(line.sku, 0)} of the {ordered[line.sku]} ordered")
        seen.add(line.sku)
    last = all(kept[sku] == next((x.quantity for x in lines if x.sku == sku), 0)
               for sku in kept)
    return ReturnRequestedData(order_id=order_id, return_id=return_id, lines=list(lines),
                               reason=reason, refund=_return_refund(state, lines, last),
                               last=last, at_store=state.store_id or (
                                   state.pickup_store if state.on_shelf else None))


def _return_refund(state: OrderState, lines: Sequence[ReturnLine], last: bool) -> Money:
    """The returned lines' share of what was paid for the order, never more than is left
    of it; the last return gets all that is left."""
    currency = state.total.currency if state.total else "IDR"  # delivered, so placed
    left = max(0, state.paid_money - state.given_back)
    if last:
        return Money(amount=left, currency=currency)
    values, quantities = dict(state.values), dict(state.lines)
    returned = sum(values[x.sku] * x.quantity // quantities[x.sku] for x in lines)
    whole = sum(values.values())
    share = state.paid_money * returned // whole if whole else 0
    return Money(amount=min(share, left), currency=currency)


def evolve(state: OrderState, event: Event) -> OrderState:
    # Facts that do not move the status, recorded whatever the status is.
    kind = event.type
    if kind == "OrderPlaced":
        data = event.data
        spends = data.redemption
        state = replace(state, order_id=data.order_id,
                        customer_id=data.alur_customer_id or data.customer.customer_id,
                        held_points=spends.points if spends else 0,
                        redeemed_value=spends.value.amount if spends else 0,
                        total=data.total, lines=_per_sku(
                            (x.sku, x.quantity) for x in data.lines),
                        values=_per_sku((x.sku, x.unit_price.amount * x.quantity)
                                        for x in data.lines),
                        channel=event.channel, sold_at=data.sold_at,
                        store_id=data.delivery.store_id if event.channel == "pos" else None,
                        pickup_store=data.delivery.store_id
                        if data.delivery.method == "click_and_collect" else None,
                        cod=data.payment.method == "cod")
    elif kind == "OrderReadyToShip":
        return replace(state, ready_to_ship=True)
    elif kind == "PaymentConfirmed":
        state = replace(state, paid=True)
    elif kind in ("StockReserved", "StockRejected"):
        state = replace(state, stock_decided=True, location=event.data.location
                        if kind == "StockReserved" else None)
    elif kind == "OrderCompleted" and state.channel == "pos":
        # Handed over at the counter: reviews are open from the sale.
        state = replace(state, delivered_at=state.sold_at or event.time)
    elif kind == "ReviewSubmitted":
        return replace(state, reviewed=True)
    elif kind == "GoodwillRefundRequested":
        return replace(state, goodwill=state.goodwill + event.data.amount.amount)
    elif kind in ("Delivered", "PickedUp"):
        state = replace(state, delivered_at=state.delivered_at or event.time)
    elif kind == "LoyaltyPointsRedeemed":
        return replace(state, points_spent=True)
    elif kind == "LoyaltyPointsReleased":
        return replace(state, points_released=True)
    elif kind == "LoyaltyPointsAccrued":
        return replace(state, points=state.points + event.data.points)
    elif kind == "LoyaltyPointsReversed":
        return replace(state, points=state.points - event.data.points)
    elif kind == "OrderStuck":
        return replace(state, stuck_reported=event.data.since)
    elif kind == "RefundIssued" and event.data.reason == "returned" \
            and event.data.return_id in (None, state.return_id):
        return replace(state, refunded_return=True)
    elif kind in ("StockRestocked", "StockWrittenOff") \
            and event.data.return_id == state.return_id:
        units = sum(x.quantity for x in event.data.lines)
        return replace(state, settled_units=state.settled_units + units)
    if kind == "ReturnRequested":
        data = event.data
        return _enter(replace(state, return_id=data.return_id, return_lines=tuple(data.lines),
                              return_refund=data.refund.amount if data.refund else None,
                              return_last=data.last, resume=state.status,
                              refunded_return=False, settled_units=0),
                      # over the counter: the units are back as the customer hands them over
                      "return_received" if data.at_store else "return_requested", event)
    if kind == "ReturnReceived" and state.status == "return_requested" \
            and event.data.return_id == state.return_id:
        return _enter(state, "return_received", event)
    if kind == "ReturnClosed":
        data = event.data
        back = _per_sku([*state.returned, *((x.sku, x.quantity) for x in data.lines)])
        return _enter(replace(state, return_id=None, return_lines=(), return_refund=None,
                              returned=back, returned_money=state.returned_money
                              + data.refunded.amount,
                              closed_returns=state.closed_returns | {data.return_id}),
                      state.resume or "delivered", event)
    if kind == "OrderReturned":
        return _enter(state, "returned", event)
    if state.status in TERMINAL or state.status in RETURNING:
        return state
    if kind == "OrderCancelled":
        return _enter(replace(state, cancel_reason=event.data.reason), "cancelled", event)
    stage = STAGE_OF_EVENT.get(kind)
    if stage is None:
        return state
    if state.status is None or STAGES.index(stage) > STAGES.index(state.status):
        placed_at = event.time if stage == "placed" else state.placed_at
        return replace(_enter(state, stage, event), placed_at=placed_at)
    return state


def _per_sku(pairs: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """(sku, n) pairs summed per SKU, in the order SKUs first appear."""
    sums: dict[str, int] = {}
    for sku, n in pairs:
        sums[sku] = sums.get(sku, 0) + n
    return tuple(sums.items())


def _enter(state: OrderState, status: str, event: Event) -> OrderState:
    return replace(state, status=status, since=event.time)


def decide(state: OrderState, event: Event) -> list[Model]:
    """The platform's answers: cancel on a business "no" (giving back the points the order
    held), complete a picked-up order, close a return once its money and stock are back; and
    spend the points an order held once it is paid."""
    return [*_answer(state, event), *_spend_points(state, event)]


def _spend_points(state: OrderState, event: Event) -> list[Model]:
    if event.type != "PaymentConfirmed" or state.held_points <= 0 or state.points_spent \
            or state.points_released or state.customer_id is None:
        return []
    return [LoyaltyPointsRedeemedData(order_id=event.subject, customer_id=state.customer_id,
                                      points=state.held_points)]


def _answer(state: OrderState, event: Event) -> list[Model]:
    after = evolve(state, event)
    if event.type in CANCELS and state.status not in TERMINAL and state.status in CANCELLABLE:
        return [OrderCancelledData(order_id=event.subject, reason=CANCELS[event.type]),
                *release_points(after, event.subject, "cancelled")]
    if event.type == "PickedUp" and after.status == "delivered":
        return complete(after, event.subject)
    if _sale_recorded(after) and not _sale_recorded(state):
        return complete(after, event.subject)
    if _return_closable(after) and not _return_closable(state):
        return _close_return(after, event.subject)
    return []


def decide_under(policy: Policy) -> Callable[[OrderState, Event], list[Model]]:
    """`decide`, and with no window to cancel in (`release_after` 0, as in a flash sale) the
    release to shipping as soon as the order may ship, in the same transaction as the event
    that made it so, instead of on the next round of timers."""
    if policy.release_after > timedelta(0):
        return decide

    def decide_and_release(state: OrderState, event: Event) -> list[Model]:
        decided = _answer(state, event)
        after = evolve(state, event)
        if not decided and _may_ship(after):
            decided = [OrderReadyToShipData(order_id=event.subject, location=after.location)]
        return [*decided, *_spend_points(state, event)]

    return decide_and_release


def _may_ship(state: OrderState) -> bool:
    """An order that ships (online or marketplace), paid (or reserved, for cash on delivery),
    not cancelled, and not yet released to shipping. Shipping books only on OrderReadyToShip,
    so a cancel decided before it means no parcel at all, and one decided after it reaches
    shipping after it (on the order's partition)."""
    waits_in = "reserved" if state.cod else "paid"
    return state.channel != "pos" and not state.ready_to_ship and state.status == waits_in


def _sale_recorded(state: OrderState) -> bool:
    """A till sale whose payment is recorded: it was handed over at the counter already, so
    it completes (inventory takes its units off the store's books on its own time)."""
    return state.channel == "pos" and state.status == "paid"


def _return_closable(state: OrderState) -> bool:
    """The returned parcel arrived, its money went back (if it had any to pay back) and its
    units are on the shelf or written off."""
    units = sum(x.quantity for x in state.return_lines)
    return (state.status == "return_received" and state.settled_units >= units
            and (state.refunded_return or state.return_refund == 0))


def _close_return(state: OrderState, order_id: str) -> list[Model]:
    """A partial return closes (ReturnClosed) and the points earned on its money are
    reversed; the last one returns the order, gives back the points it spent and reverses
    the rest of those it earned."""
    if state.return_id is None or state.total is None:
        return []
    currency = state.total.currency
    left = state.paid_money - state.given_back
    refunded = left if state.return_refund is None else state.return_refund
    if not state.return_last:
        over = state.points - _earned(state, state.given_back + refunded)
        return [ReturnClosedData(order_id=order_id, return_id=state.return_id,
                                 refunded=Money(amount=refunded, currency=currency),
                                 lines=list(state.return_lines)),
                *_reverse(state, order_id, over)]
    return [OrderReturnedData(order_id=order_id, return_id=state.return_id,
                              refunded=Money(amount=refunded, currency=currency)),
            *release_points(state, order_id, "returned"),
            *_reverse(state, order_id, state.points)]


def _reverse(state: OrderState, order_id: str, points: int) -> list[Model]:
    if points <= 0 or state.customer_id is None:
        return []
    return [LoyaltyPointsReversedData(order_id=order_id, customer_id=state.customer_id,
                                      points=points)]


def deadlines_under(policy: Policy) -> Callable[[OrderState], dict[str, datetime]]:
    def deadlines(state: OrderState) -> dict[str, datetime]:
        due: dict[str, datetime] = {}
        if _may_ship(state) and state.since is not None:
            due["release"] = state.since + policy.release_after
        if state.status == "delivered" and state.delivered_at is not None:
            due["auto_complete"] = state.delivered_at + policy.complete_after
        if (state.status not in TERMINAL and state.status not in CUSTOMER_WAITS
                and state.since is not None and state.stuck_reported != state.since):
            due["stuck"] = state.since + policy.stuck_after
        return due

    return deadlines


def on_timer(state: OrderState, kind: str) -> list[Model]:
    if state.order_id is None:  # no OrderPlaced: no order, nothing is due
        return []
    if kind == "release" and _may_ship(state):
        return [OrderReadyToShipData(order_id=state.order_id, location=state.location)]
    if kind == "auto_complete" and state.status == "delivered":
        return complete(state, state.order_id)
    if kind == "stuck" and state.status is not None and state.since is not None:
        return [OrderStuckData(order_id=state.order_id, status=state.status, since=state.since)]
    return []


# Reported by shipping about the order's parcel: only ever after the order was released to it.
PARCEL_SIDE = frozenset({
    "ShipmentCreated", "Shipped", "InTransit", "OutForDelivery", "DeliveryFailed", "Delivered",
    "ReadyForPickup", "PickedUp", "ShipmentRecalled", "ReturnedToSender"})
RETURN_SIDE = frozenset({"ReturnShipmentCreated", "ReturnReceived"})


def refuse(state: OrderState, event: Event) -> str | None:
    """Why another service's event cannot be true of this order, if it cannot: nothing is
    shipped before the order is released, returned before a return is asked for, refunded
    before it is paid, paid twice, or reserved twice."""
    kind = event.type
    if kind in PARCEL_SIDE and not state.ready_to_ship:
        return f"it was never released to shipping (it is {state.status})"
    if kind in RETURN_SIDE and state.return_id is None and not state.closed_returns:
        return "no return was requested"
    if kind in RETURN_SIDE and event.data.return_id != state.return_id \
            and event.data.return_id not in state.closed_returns:
        return f"return {event.data.return_id} was never requested"
    if kind == "RefundIssued" and not state.paid:
        return "nothing was paid"
    if kind == "PaymentConfirmed" and state.paid:
        return "it was paid already"
    if kind in ("StockReserved", "StockRejected") and state.stock_decided:
        return "its stock was decided already"
    return None


OPENS = frozenset({"OrderPlaced"})  # recorded by the API before anyone else hears of the order
RELEVANT = frozenset({
    "StockReserved", "StockRejected", "ReservationExpired", "StockRestocked", "StockWrittenOff",
    "PaymentPending", "PaymentRequested", "PaymentConfirmed", "PaymentFailed", "PaymentExpired",
    "RefundIssued", "ShipmentCreated", "Shipped", "InTransit", "OutForDelivery", "DeliveryFailed",
    "Delivered", "ReadyForPickup", "PickedUp", "ReturnShipmentCreated", "ReturnReceived",
    "ShipmentRecalled", "ReturnedToSender",
})
