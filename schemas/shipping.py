"""Events the shipping service publishes on the `shipping` topic."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from schemas.envelope import Event, Model, Money
from schemas.orders import ReturnLine


class ShipmentCreatedData(Model):
    order_id: str
    shipment_id: str
    carrier: str
    tracking_number: str = Field(description="The carrier's tracking number.")


class ParcelData(Model):
    """A status change of a parcel, as reported by its carrier."""

    order_id: str
    shipment_id: str
    tracking_number: str


class DeliveryFailedData(Model):
    order_id: str
    shipment_id: str
    tracking_number: str
    reason: str
    next_attempt_at: AwareDatetime | None = None


class ReadyForPickupData(Model):
    order_id: str
    shipment_id: str
    store_id: str


class PickedUpData(Model):
    order_id: str
    shipment_id: str
    store_id: str


class ReturnShipmentCreatedData(Model):
    """The carrier is booked to collect a return from the customer (or their store)."""

    order_id: str
    return_id: str
    shipment_id: str
    carrier: str
    tracking_number: str = Field(description="The carrier's tracking number of the return.")


class ReturnReceivedData(Model):
    order_id: str
    return_id: str
    lines: list[ReturnLine] = Field(min_length=1)
    refund: Money | None = Field(None, description="What the return pays back, as requested "
                                 "(ReturnRequested.refund).")
    last: bool = Field(True, description="The return takes back every unit still kept.")


class ShipmentRecalledData(Model):
    """The order was cancelled after the courier collected its parcel: the carrier turned the
    parcel back to the warehouse instead of delivering it."""

    order_id: str
    shipment_id: str
    carrier: str
    tracking_number: str
    parcel_status: str = Field(description="The parcel's last reported step when it was "
                               "recalled: created (collected, not yet reported), shipped, "
                               "in_transit, ...")


class ReturnedToSenderData(ParcelData):
    """A recalled parcel is back at the warehouse it left."""


class ShippedData(ParcelData):
    pass


class InTransitData(ParcelData):
    pass


class OutForDeliveryData(ParcelData):
    pass


class DeliveredData(ParcelData):
    pass


class _ShippingEvent(Event):
    topic: ClassVar[str] = "shipping"


class ShipmentCreated(_ShippingEvent):
    type: Literal["ShipmentCreated"] = "ShipmentCreated"
    data: ShipmentCreatedData


class Shipped(_ShippingEvent):
    type: Literal["Shipped"] = "Shipped"
    data: ShippedData


class InTransit(_ShippingEvent):
    type: Literal["InTransit"] = "InTransit"
    data: InTransitData


class OutForDelivery(_ShippingEvent):
    type: Literal["OutForDelivery"] = "OutForDelivery"
    data: OutForDeliveryData


class DeliveryFailed(_ShippingEvent):
    type: Literal["DeliveryFailed"] = "DeliveryFailed"
    data: DeliveryFailedData


class Delivered(_ShippingEvent):
    type: Literal["Delivered"] = "Delivered"
    data: DeliveredData


class ReadyForPickup(_ShippingEvent):
    type: Literal["ReadyForPickup"] = "ReadyForPickup"
    data: ReadyForPickupData


class PickedUp(_ShippingEvent):
    type: Literal["PickedUp"] = "PickedUp"
    data: PickedUpData


class ReturnShipmentCreated(_ShippingEvent):
    type: Literal["ReturnShipmentCreated"] = "ReturnShipmentCreated"
    data: ReturnShipmentCreatedData


class ReturnReceived(_ShippingEvent):
    type: Literal["ReturnReceived"] = "ReturnReceived"
    data: ReturnReceivedData


class ShipmentRecalled(_ShippingEvent):
    type: Literal["ShipmentRecalled"] = "ShipmentRecalled"
    data: ShipmentRecalledData


class ReturnedToSender(_ShippingEvent):
    type: Literal["ReturnedToSender"] = "ReturnedToSender"
    data: ReturnedToSenderData
