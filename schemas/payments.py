"""Events the payments service publishes on the `payments` topic."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from schemas.envelope import Event, Model, Money
from schemas.orders import Bank, PaymentMethod, Wallet


class PaymentConfirmedData(Model):
    order_id: str
    payment_id: str
    method: PaymentMethod
    amount: Money
    gateway_reference: str = Field(description="The gateway's id for the capture.")


class PaymentPendingData(Model):
    order_id: str
    payment_id: str
    amount: Money
    virtual_account: str = Field(description="Bank account number the customer pays into.")
    expires_at: AwareDatetime
    bank: Bank | None = Field(None, description="The bank that holds the virtual account.")


class PaymentRequestedData(Model):
    order_id: str
    payment_id: str
    method: Literal["qris", "ewallet"]
    amount: Money
    request_id: str = Field(description="The gateway's id for the payment request.")
    expires_at: AwareDatetime = Field(description="When the request lapses unpaid.")
    qr_string: str | None = Field(None, description="qris: the dynamic QR payload (EMVCo "
                                  "merchant-presented, amount included) the customer scans.")
    wallet: Wallet | None = Field(None, description="ewallet: the app the request was pushed to.")


class PaymentFailedData(Model):
    order_id: str
    payment_id: str
    amount: Money
    reason: str = Field(description="declined, insufficient_funds, gateway_timeout, ...")


class PaymentExpiredData(Model):
    order_id: str
    payment_id: str


class PaymentRequestWithdrawnData(Model):
    """The order was cancelled while its QRIS code or e-wallet push was still unpaid: the
    gateway withdrew the request, so the customer can no longer pay it."""

    order_id: str
    payment_id: str
    request_id: str


class RefundIssuedData(Model):
    order_id: str
    refund_id: str
    amount: Money
    reason: str = Field(description="cancelled, returned, late_transfer or goodwill.")
    return_id: str | None = Field(None, description="The return it pays back (reason "
                                  "returned), when the return named its refund.")
    manual_payout: bool = Field(False, description="The payment method has no refund (cash "
                                "on delivery): the shop pays the customer back by hand, and "
                                "`refund_id` is `manual:…`.")


class TransferReturnedData(Model):
    order_id: str
    transfer_id: str = Field(description="The gateway's id for the transfer sent back.")
    amount: Money
    refund_id: str = Field(description="The gateway's id for the refund of the transfer.")
    reason: str = Field(description="duplicate (the order was paid by another transfer) or "
                        "wrong_amount (not the amount due).")


class _PaymentsEvent(Event):
    topic: ClassVar[str] = "payments"


class PaymentConfirmed(_PaymentsEvent):
    type: Literal["PaymentConfirmed"] = "PaymentConfirmed"
    data: PaymentConfirmedData


class PaymentPending(_PaymentsEvent):
    type: Literal["PaymentPending"] = "PaymentPending"
    data: PaymentPendingData


class PaymentRequested(_PaymentsEvent):
    """The customer was asked to pay in an app: a QRIS code to scan, or a push to approve in
    an e-wallet. The gateway reports the payment (signed callback), or it lapses."""

    type: Literal["PaymentRequested"] = "PaymentRequested"
    data: PaymentRequestedData


class PaymentFailed(_PaymentsEvent):
    type: Literal["PaymentFailed"] = "PaymentFailed"
    data: PaymentFailedData


class PaymentExpired(_PaymentsEvent):
    type: Literal["PaymentExpired"] = "PaymentExpired"
    data: PaymentExpiredData


class PaymentRequestWithdrawn(_PaymentsEvent):
    type: Literal["PaymentRequestWithdrawn"] = "PaymentRequestWithdrawn"
    data: PaymentRequestWithdrawnData


class RefundIssued(_PaymentsEvent):
    type: Literal["RefundIssued"] = "RefundIssued"
    data: RefundIssuedData


class TransferReturned(_PaymentsEvent):
    """Money paid into an order's account that the order does not take (a second transfer, or
    not the amount due) went back to the customer. The order's own payment is untouched."""

    type: Literal["TransferReturned"] = "TransferReturned"
    data: TransferReturnedData
