"""One example payload per event type: the source of the golden samples in `samples/`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import schemas as s
from schemas.envelope import EVENT_TYPES, Event, Model

ORDER = "ord_0001"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EUR = s.Money(amount=4998, currency="EUR")
LINES = [s.StockLine(sku="SKU-RED-MUG", quantity=2)]
RLINES = [s.ReturnLine(sku="SKU-RED-MUG", quantity=1)]
PARCEL = dict(order_id=ORDER, shipment_id="shp_1", tracking_number="SIM1234567890")

PAYLOADS: dict[str, Model] = {
    "OrderPlaced": s.OrderPlacedData(
        order_id=ORDER,
        customer=s.Customer(customer_id="cus_1", email="ada@example.com", name="Ada"),
        lines=[s.OrderLine(sku="SKU-RED-MUG", quantity=2,
                           unit_price=s.Money(amount=2499, currency="EUR"))],
        total=EUR,
        payment=s.PaymentInstruction(method="card", token="tok_visa"),
        delivery=s.Delivery(method="home_delivery", address=s.Address(
            line1="1 Main St", city="Lisbon", postal_code="1000-001", country="PT")),
        taxes=[s.Tax(name="IVA", rate_bp=2300, included=True,
                     amount=s.Money(amount=935, currency="EUR"))],
    ),
    "OrderCancelled": s.OrderCancelledData(order_id=ORDER, reason="out_of_stock"),
    "OrderCompleted": s.OrderCompletedData(order_id=ORDER),
    "OrderReadyToShip": s.OrderReadyToShipData(order_id=ORDER),
    "OrderStuck": s.OrderStuckData(order_id=ORDER, status="paid", since=AT),
    "ReceiptConfirmed": s.ReceiptConfirmedData(order_id=ORDER),
    "PickupConfirmed": s.PickupConfirmedData(order_id=ORDER, store_id="ST-JAKARTA"),
    "ReturnRequested": s.ReturnRequestedData(
        order_id=ORDER, return_id="ret_1", lines=RLINES, reason="damaged"),
    "OrderReturned": s.OrderReturnedData(order_id=ORDER, return_id="ret_1", refunded=EUR),
    "ReturnClosed": s.ReturnClosedData(
        order_id=ORDER, return_id="ret_1", refunded=s.Money(amount=2499, currency="EUR"),
        lines=[s.ReturnLine(sku="SKU-RED-MUG", quantity=1, restock="write_off")]),
    "GoodwillRefundRequested": s.GoodwillRefundRequestedData(
        order_id=ORDER, goodwill_id="gw_1", amount=s.Money(amount=500, currency="EUR"),
        reason="the parcel came two days late"),
    "ReviewSubmitted": s.ReviewSubmittedData(order_id=ORDER, rating=5, text="Lovely mug."),
    "LoyaltyPointsRedeemed": s.LoyaltyPointsRedeemedData(
        order_id=ORDER, customer_id="cus_5f0c3b1e9a2d4c6b8e7f1a2b3c4d5e6f", points=10),
    "LoyaltyPointsReleased": s.LoyaltyPointsReleasedData(
        order_id=ORDER, customer_id="cus_5f0c3b1e9a2d4c6b8e7f1a2b3c4d5e6f", points=10,
        reason="cancelled"),
    "CustomerIdentified": s.CustomerIdentifiedData(
        order_id=ORDER, customer_id="cus_5f0c3b1e9a2d4c6b8e7f1a2b3c4d5e6f", new=True,
        identifiers=[s.CustomerIdentifier(kind="reference", digest="5" * 64),
                     s.CustomerIdentifier(kind="email", digest="a" * 64)]),
    "LoyaltyPointsAccrued": s.LoyaltyPointsAccruedData(
        order_id=ORDER, customer_id="cus_1", points=49),
    "LoyaltyPointsReversed": s.LoyaltyPointsReversedData(
        order_id=ORDER, customer_id="cus_1", points=49),
    "StockReserved": s.StockReservedData(
        order_id=ORDER, reservation_id="res_1", location="WH-1", lines=LINES, expires_at=AT),
    "StockRejected": s.StockRejectedData(order_id=ORDER, short_skus=["SKU-RED-MUG"]),
    "StockReleased": s.StockReleasedData(order_id=ORDER, reservation_id="res_1",
                                         reason="payment_failed"),
    "StockCommitted": s.StockCommittedData(order_id=ORDER, reservation_id="res_1",
                                           location="WH-1"),
    "StockRestocked": s.StockRestockedData(
        order_id=ORDER, return_id="ret_1", location="WH-1", lines=LINES),
    "StockWrittenOff": s.StockWrittenOffData(
        order_id=ORDER, return_id="ret_1", location="WH-1",
        lines=[s.StockLine(sku="SKU-RED-MUG", quantity=1)]),
    "StockTransferShipped": s.StockTransferShippedData(
        order_id=ORDER, transfer_id="trf_1", from_location="WH-1", to_location="ST-JAKARTA",
        lines=LINES),
    "StockTransferReceived": s.StockTransferReceivedData(
        order_id=ORDER, transfer_id="trf_1", location="ST-JAKARTA", lines=LINES),
    "LowStock": s.LowStockData(sku="SKU-RED-MUG", location="WH-1", available=3, threshold=5),
    "ReservationExpired": s.ReservationExpiredData(order_id=ORDER, reservation_id="res_1"),
    "PaymentConfirmed": s.PaymentConfirmedData(
        order_id=ORDER, payment_id="pay_1", method="card", amount=EUR,
        gateway_reference="ch_1"),
    "PaymentPending": s.PaymentPendingData(
        order_id=ORDER, payment_id="pay_1", amount=EUR, virtual_account="8808123456",
        expires_at=AT),
    "PaymentRequested": s.PaymentRequestedData(
        order_id=ORDER, payment_id="pay_1", method="qris",
        amount=s.Money(amount=150000, currency="IDR"), request_id="pr_1", expires_at=AT,
        qr_string="00020101021251440014ID.CO.QRIS.WWW0215ID10260000000010303UMI5204599953033605"
                  "4061500005802ID5908ALUR SIM6007JAKARTA61051011062120108ord_00016304C141"),
    "PaymentFailed": s.PaymentFailedData(
        order_id=ORDER, payment_id="pay_1", amount=EUR, reason="declined"),
    "PaymentExpired": s.PaymentExpiredData(order_id=ORDER, payment_id="pay_1"),
    "PaymentRequestWithdrawn": s.PaymentRequestWithdrawnData(
        order_id=ORDER, payment_id="pay_1", request_id="pr_1"),
    "RefundIssued": s.RefundIssuedData(order_id=ORDER, refund_id="ref_1", amount=EUR,
                                       reason="returned"),
    "TransferReturned": s.TransferReturnedData(
        order_id=ORDER, transfer_id="tr_2", amount=EUR, refund_id="ref_2", reason="duplicate"),
    "ShipmentCreated": s.ShipmentCreatedData(
        order_id=ORDER, shipment_id="shp_1", carrier="simcourier",
        tracking_number="SIM1234567890"),
    "Shipped": s.ShippedData(**PARCEL),
    "InTransit": s.InTransitData(**PARCEL),
    "OutForDelivery": s.OutForDeliveryData(**PARCEL),
    "DeliveryFailed": s.DeliveryFailedData(**PARCEL, reason="nobody_home", next_attempt_at=AT),
    "Delivered": s.DeliveredData(**PARCEL),
    "ReadyForPickup": s.ReadyForPickupData(order_id=ORDER, shipment_id="shp_1",
                                           store_id="ST-LIS"),
    "PickedUp": s.PickedUpData(order_id=ORDER, shipment_id="shp_1", store_id="ST-LIS"),
    "ReturnShipmentCreated": s.ReturnShipmentCreatedData(
        order_id=ORDER, return_id="ret_1", shipment_id="shp_2", carrier="kilat",
        tracking_number="KIL000000000000001"),
    "ReturnReceived": s.ReturnReceivedData(order_id=ORDER, return_id="ret_1", lines=RLINES),
    "ShipmentRecalled": s.ShipmentRecalledData(
        order_id=ORDER, shipment_id="shp_1", carrier="kilat",
        tracking_number="KIL000000000000001", parcel_status="in_transit"),
    "ReturnedToSender": s.ReturnedToSenderData(**PARCEL),
    "NotificationSent": s.NotificationSentData(
        order_id=ORDER, notification_id="ntf_1", channel="email",
        template="OrderPlaced.email", about_event_id=uuid.UUID(int=1)),
    "NotificationFailed": s.NotificationFailedData(
        order_id=ORDER, notification_id="ntf_1", channel="webhook",
        template="OrderPlaced.webhook", about_event_id=uuid.UUID(int=1), error="HTTP 503"),
}


def example_event(type_name: str) -> Event:
    """A fully populated event of the given type with fixed ids and time."""
    cls = EVENT_TYPES[type_name]
    n = sorted(EVENT_TYPES).index(type_name) + 100
    return cls(  # type: ignore[call-arg]  # each subclass defaults `type`
        id=uuid.UUID(int=n), source=f"alur/{cls.topic}", time=AT, subject=ORDER,
        shop_id="shop_demo", channel="online", correlation_id=uuid.UUID(int=99),
        causation_id=None if type_name == "OrderPlaced" else uuid.UUID(int=98),
        data=PAYLOADS[type_name],
    )
