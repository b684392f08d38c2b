"""E-mail templates, one per customer-facing event type (OrderCompleted: a till sale's
receipt)."""

from __future__ import annotations

from schemas import Event

SUBJECTS = {
    "OrderPlaced": "We received your order {order}",
    "OrderCancelled": "Your order {order} was cancelled",
    "PaymentConfirmed": "Payment received for order {order}",
    "PaymentFailed": "Payment for order {order} did not go through",
    "PaymentPending": "How to pay for order {order} by bank transfer",
    "PaymentExpired": "The time to pay for order {order} ran out",
    "RefundIssued": "We refunded order {order}",
    "DeliveryFailed": "We missed you: delivery of order {order} will be tried again",
    "ReadyForPickup": "Your order {order} is ready for pickup",
    "ReturnShipmentCreated": "A courier will collect the return of order {order}",
    "ReturnReceived": "We received the return of order {order}",
    "OrderReturned": "The return of order {order} is complete",
    "ShipmentCreated": "Your order {order} is being prepared for shipping",
    "Shipped": "Your order {order} is on its way",
    "Delivered": "Your order {order} was delivered",
    "OrderCompleted": "Your receipt for order {order}",
}


def render(event: Event, name: str) -> tuple[str, str]:
    """(subject, plain-text body) for an e-mail about `event`."""
    order = event.subject
    subject = SUBJECTS[event.type].format(order=order)
    lines = [f"Hello {name},", "", subject + "."]
    data = event.data
    if event.type == "OrderPlaced":
        total = data.total
        lines.append(f"Total: {total.amount / 100:.2f} {total.currency}.")
    if event.type in ("ShipmentCreated", "Shipped", "DeliveryFailed", "Delivered",
                      "ReturnShipmentCreated"):
        lines.append(f"Tracking number: {data.tracking_number}.")
    if event.type in ("ShipmentCreated", "ReturnShipmentCreated"):
        lines.append(f"Carrier: {data.carrier}.")
    if event.type == "PaymentPending":
        amount = data.amount
        lines.append(f"Transfer {amount.amount / 100:.2f} {amount.currency} to account "
                     f"{data.virtual_account} before {data.expires_at:%Y-%m-%d %H:%M} UTC.")
    if event.type == "RefundIssued":
        amount = data.amount
        lines.append(f"Refunded: {amount.amount / 100:.2f} {amount.currency}.")
    if event.type == "ReadyForPickup":
        lines.append(f"Collect it at store {data.store_id}.")
    if event.type == "OrderCancelled":
        lines.append(f"Reason: {data.reason.replace('_', ' ')}.")
    lines += ["", "Thank you for shopping with us."]
    return subject, "\n".join(lines) + "\n"
