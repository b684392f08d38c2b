"""The whole event catalogue as one discriminated union, and the topics it travels on."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.inventory import (
    LowStock,
    ReservationExpired,
    StockCommitted,
    StockRejected,
    StockReleased,
    StockReserved,
    StockRestocked,
    StockTransferReceived,
    StockTransferShipped,
    StockWrittenOff,
)
from schemas.notifications import NotificationFailed, NotificationSent
from schemas.orders import (
    CustomerIdentified,
    GoodwillRefundRequested,
    LoyaltyPointsAccrued,
    LoyaltyPointsRedeemed,
    LoyaltyPointsReleased,
    LoyaltyPointsReversed,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderReadyToShip,
    OrderReturned,
    OrderStuck,
    PickupConfirmed,
    ReceiptConfirmed,
    ReturnClosed,
    ReturnRequested,
    ReviewSubmitted,
)
from schemas.payments import (
    PaymentConfirmed,
    PaymentExpired,
    PaymentFailed,
    PaymentPending,
    PaymentRequested,
    PaymentRequestWithdrawn,
    RefundIssued,
    TransferReturned,
)
from schemas.shipping import (
    Delivered,
    DeliveryFailed,
    InTransit,
    OutForDelivery,
    PickedUp,
    ReadyForPickup,
    ReturnedToSender,
    ReturnReceived,
    ReturnShipmentCreated,
    ShipmentCreated,
    ShipmentRecalled,
    Shipped,
)

AnyEvent = Annotated[
    OrderPlaced | OrderReadyToShip | OrderCancelled | OrderCompleted | OrderStuck
    | ReceiptConfirmed | PickupConfirmed
    | ReturnRequested | ReturnClosed | OrderReturned | GoodwillRefundRequested | ReviewSubmitted
    | LoyaltyPointsAccrued
    | LoyaltyPointsReversed | CustomerIdentified | LoyaltyPointsRedeemed | LoyaltyPointsReleased
    | StockReserved | StockRejected | StockReleased | StockCommitted | StockRestocked
    | StockWrittenOff | StockTransferShipped | StockTransferReceived
    | LowStock
    | ReservationExpired
    | PaymentConfirmed | PaymentPending | PaymentRequested | PaymentFailed | PaymentExpired
    | PaymentRequestWithdrawn
    | RefundIssued
    | TransferReturned
    | ShipmentCreated | Shipped | InTransit | OutForDelivery | DeliveryFailed | Delivered
    | ReadyForPickup | PickedUp | ReturnShipmentCreated | ReturnReceived | ShipmentRecalled
    | ReturnedToSender
    | NotificationSent | NotificationFailed,
    Field(discriminator="type"),
]

# One topic per producing service, keyed by order id; failures go to `<topic>.dlq`.
TOPICS: tuple[str, ...] = ("orders", "inventory", "payments", "shipping", "notifications")


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


ALL_TOPICS: tuple[str, ...] = TOPICS + tuple(dlq_topic(t) for t in TOPICS)
