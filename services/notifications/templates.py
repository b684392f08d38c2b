"""E-mail templates, one per customer-facing event type (OrderCompleted: a till sale's
receipt). The words are English; amounts and dates are written in the shop's locale, recorded
on the order (schemas/money.py), e.g. Rp150.000 and 4 Desember 2026 for id_ID."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_percent

from schemas import Event, Money
from schemas.money import DEFAULT_LOCALE
from schemas.orders import OrderPlacedData, Tax
from schemas.payments import PaymentRequestedData

SUBJECTS = {
    "OrderPlaced": "We received your order {order}",
    "OrderCancelled": "Your order {order} was cancelled",
    "PaymentConfirmed": "Payment received for order {order}",
    "PaymentFailed": "Payment for order {order} did not go through",
    "PaymentPending": "How to pay for order {order} by bank transfer",
    "PaymentRequested": "How to pay for order {order} in your app",
    "PaymentExpired": "The time to pay for order {order} ran out",
    "RefundIssued": "We refunded order {order}",
    "DeliveryFailed": "We missed you: delivery of order {order} will be tried again",
    "ReadyForPickup": "Your order {order} is ready for pickup",
    "ReturnShipmentCreated": "A courier will collect the return of order {order}",
    "ReturnReceived": "We received the return of order {order}",
    "OrderReturned": "The return of order {order} is complete",
    "ReturnClosed": "The return of part of order {order} is complete",
    "ShipmentCreated": "Your order {order} is being prepared for shipping",
    "Shipped": "Your order {order} is on its way",
    "Delivered": "Your order {order} was delivered",
    "OrderCompleted": "Your receipt for order {order}",
}


def render(event: Event, name: str, order: OrderPlacedData | None = None,
           locale: str | None = None) -> tuple[str, str]:
    """(subject, plain-text body) for an e-mail about `event`; `order` is what the order's
    OrderPlaced recorded (its lines, tax and estimate go into the confirmation and the till's
    receipt), `locale` the one amounts and dates are written in."""
    loc = (locale or DEFAULT_LOCALE).replace("-", "_")
    subject = SUBJECTS[event.type].format(order=event.subject)
    lines = [f"Hello {name},", "", subject + "."]
    data = event.data
    if event.type == "OrderPlaced":
        lines += _summary(data, loc)
        if data.estimated_delivery is not None:
            lines.append(_estimate(data, loc))
    if event.type == "OrderCompleted" and order is not None:
        lines += _summary(order, loc)
    if event.type in ("ShipmentCreated", "Shipped", "DeliveryFailed", "Delivered",
                      "ReturnShipmentCreated"):
        lines.append(f"Tracking number: {data.tracking_number}.")
    if event.type in ("ShipmentCreated", "ReturnShipmentCreated"):
        lines.append(f"Carrier: {data.carrier}.")
    if event.type == "PaymentPending":
        amount = data.amount
        bank = f"{BANKS[data.bank]} virtual account" if data.bank else "account"
        lines.append(f"Transfer {amount.format(loc)} to {bank} "
                     f"{data.virtual_account} before {data.expires_at:%Y-%m-%d %H:%M} UTC.")
    if event.type == "PaymentRequested":
        lines += _app_payment(data, loc)
    if event.type == "RefundIssued":
        amount = data.amount
        lines.append(f"Refunded: {amount.format(loc)}.")
        if data.manual_payout:
            lines.append("Cash on delivery cannot be paid back automatically: the shop will "
                         "contact you to pay it back by hand.")
        if order is not None and order.total.amount > 0:
            lines += [f"Of which {_tax_name(tax, loc)}: "
                      f"{tax.share(amount.amount, order.total.amount).format(loc)}."
                      for tax in order.taxes]
    if event.type == "ReturnClosed":
        lines += [f"  {x.quantity} x {x.sku}" for x in data.lines]
        lines.append(f"Paid back for them: {data.refunded.format(loc)}. You keep the rest of "
                     "the order.")
    if event.type == "ReadyForPickup":
        lines.append(f"Collect it at store {data.store_id}.")
    if event.type == "OrderCancelled":
        lines.append(f"Reason: {data.reason.replace('_', ' ')}.")
    lines += ["", "Thank you for shopping with us."]
    return subject, "\n".join(lines) + "\n"


BANKS = {"bca": "BCA", "mandiri": "Mandiri", "bni": "BNI", "bri": "BRI"}
WALLETS = {"gopay": "GoPay", "ovo": "OVO", "dana": "DANA", "shopeepay": "ShopeePay"}


def _app_payment(data: PaymentRequestedData, loc: str) -> list[str]:
    """How to pay a QRIS code or approve an e-wallet push, and by when."""
    by = f"before {data.expires_at:%Y-%m-%d %H:%M} UTC"
    if data.method == "qris":
        return [f"Scan the QRIS code in your banking or e-wallet app and pay "
                f"{data.amount.format(loc)} {by}. The code's text, for an app that reads it:",
                f"  {data.qr_string}"]
    wallet = WALLETS.get(data.wallet or "", "e-wallet")
    return [f"Open your {wallet} app and approve the payment of {data.amount.format(loc)} {by}."]


def _summary(order: OrderPlacedData, loc: str) -> list[str]:
    """Order number, one line per SKU, the tax and the total."""
    out = [f"Order number: {order.reference or order.order_id}", ""]
    rows = [(f"{line.quantity} x {line.sku}", line.unit_price.format(loc),
             line.unit_price.times(line.quantity).format(loc)) for line in order.lines]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for what, each, amount in rows:
        out.append(f"  {what.ljust(widths[0])}  {each.rjust(widths[1])} each  "
                   f"{amount.rjust(widths[2])}")
    out.append("")
    total, fee = order.total, order.cod_fee
    goods = _less(total, fee.amount) if fee is not None else total
    added = [tax for tax in order.taxes if not tax.included]
    if added:
        out.append(f"Subtotal: {_less(goods, sum(t.amount.amount for t in added)).format(loc)}")
        out += [f"{_tax_name(tax, loc)}: {tax.amount.format(loc)}" for tax in added]
    if fee is not None:
        out.append(f"Cash on delivery fee: {fee.format(loc)}")
    out.append(f"Total: {total.format(loc)}.")
    out += [f"The total includes {_tax_name(tax, loc)}: {tax.amount.format(loc)}."
            for tax in order.taxes if tax.included]
    if order.redemption is not None:
        paid = order.redemption.value
        out.append(f"Loyalty points spent: {order.redemption.points} "
                   f"({paid.format(loc)}); to pay: "
                   f"{_less(total, paid.amount).format(loc)}.")
    return out


def _less(total: Money, amount: int) -> Money:
    return Money(amount=total.amount - amount, currency=total.currency)


def _tax_name(tax: Tax, loc: str) -> str:
    return f"{tax.name} {format_percent(Decimal(tax.rate_bp) / 10_000, '#,##0.##%', locale=loc)}"


def _estimate(order: OrderPlacedData, loc: str) -> str:
    when: date = order.estimated_delivery  # type: ignore[assignment]
    what = "Ready for pickup" if order.delivery.method == "click_and_collect" \
        else "Estimated delivery"
    return f"{what}: {format_date(when, 'long', locale=loc)}."
