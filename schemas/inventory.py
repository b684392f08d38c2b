"""Events the inventory service publishes on the `inventory` topic."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from schemas.envelope import Event, Model


class StockLine(Model):
    sku: str
    quantity: int = Field(gt=0, strict=True)


class StockReservedData(Model):
    order_id: str
    reservation_id: str
    location: str = Field(description="Warehouse or store holding the reserved units.")
    lines: list[StockLine] = Field(min_length=1)
    expires_at: AwareDatetime = Field(description=(
        "Released unless paid or committed before this; a cash-on-delivery reservation "
        "is held until it ships or the order is cancelled."))


class StockRejectedData(Model):
    order_id: str
    short_skus: list[str] = Field(min_length=1, description="SKUs no location could supply.")


class StockReleasedData(Model):
    order_id: str
    reservation_id: str
    reason: str = Field(description="payment_failed, payment_expired, cancelled or expired.")


class StockCommittedData(Model):
    order_id: str
    reservation_id: str
    location: str
    recounted: list[StockLine] = Field(default_factory=list, description=(
        "Point-of-sale: units the till sold beyond what the books held; on hand was counted "
        "up by these before the sale was committed."))


class StockRestockedData(Model):
    order_id: str
    return_id: str
    location: str
    lines: list[StockLine] = Field(min_length=1)


class StockWrittenOffData(Model):
    """Returned units that cannot be sold again: they stay off the shelf, written off."""

    order_id: str
    return_id: str
    location: str = Field(description="The location the units were returned to.")
    lines: list[StockLine] = Field(min_length=1)


class StockTransferShippedData(Model):
    """A click-and-collect order's units left a warehouse for the pickup store: taken off the
    warehouse's shelf (as a commit does) and counted in transit to the store until they
    arrive. They are the order's all the way: never on sale at either end."""

    order_id: str
    transfer_id: str
    from_location: str
    to_location: str = Field(description="The store the customer collects from.")
    lines: list[StockLine] = Field(min_length=1)


class StockTransferReceivedData(Model):
    """The transferred units arrived at the store: no longer in transit, on the store's
    books and held there for the customer until they collect them."""

    order_id: str
    transfer_id: str
    location: str = Field(description="The store that received them.")
    lines: list[StockLine] = Field(min_length=1)


class LowStockData(Model):
    sku: str
    location: str
    available: int
    threshold: int


class ReservationExpiredData(Model):
    order_id: str
    reservation_id: str


class _InventoryEvent(Event):
    topic: ClassVar[str] = "inventory"


class StockReserved(_InventoryEvent):
    type: Literal["StockReserved"] = "StockReserved"
    data: StockReservedData


class StockRejected(_InventoryEvent):
    type: Literal["StockRejected"] = "StockRejected"
    data: StockRejectedData


class StockReleased(_InventoryEvent):
    type: Literal["StockReleased"] = "StockReleased"
    data: StockReleasedData


class StockCommitted(_InventoryEvent):
    type: Literal["StockCommitted"] = "StockCommitted"
    data: StockCommittedData


class StockRestocked(_InventoryEvent):
    type: Literal["StockRestocked"] = "StockRestocked"
    data: StockRestockedData


class StockWrittenOff(_InventoryEvent):
    type: Literal["StockWrittenOff"] = "StockWrittenOff"
    data: StockWrittenOffData


class StockTransferShipped(_InventoryEvent):
    type: Literal["StockTransferShipped"] = "StockTransferShipped"
    data: StockTransferShippedData


class StockTransferReceived(_InventoryEvent):
    type: Literal["StockTransferReceived"] = "StockTransferReceived"
    data: StockTransferReceivedData


class LowStock(_InventoryEvent):
    type: Literal["LowStock"] = "LowStock"
    data: LowStockData


class ReservationExpired(_InventoryEvent):
    type: Literal["ReservationExpired"] = "ReservationExpired"
    data: ReservationExpiredData
