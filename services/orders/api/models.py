"""What shops send and receive: the request and response bodies of the orders API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas import Channel, Customer, Delivery, Money, OrderLine, PaymentInstruction
from schemas.envelope import EVENT_FOR_DATA
from schemas.orders import IdentifierKind, ReturnLine
from services.orders.domain import RELEVANT

MAX_LINES = 100
# What an order's timeline in the orders service holds: its own events and those it observes.
WEBHOOK_EVENTS = sorted({str(cls.model_fields["type"].default) for cls in EVENT_FOR_DATA.values()
                         if cls.topic == "orders"} | RELEVANT)

EXAMPLE_ORDER: dict[str, Any] = {
    "channel": "online",
    "customer": {"customer_id": "cus-1042", "email": "siti@example.co.id",
                 "phone": "0812-3456-7890", "name": "Siti Rahayu"},
    "lines": [{"sku": "SKU-BATIK", "quantity": 2,
               "unit_price": {"amount": 125000, "currency": "IDR"}}],
    "payment": {"method": "ewallet", "token": "tok_ovo", "wallet": "ovo"},
    "delivery": {"method": "home_delivery", "address": {
        "line1": "Jl. Merdeka No. 12", "city": "Jakarta", "postal_code": "10110",
        "country": "ID"}},
}


def _unstorable(value: Any, path: str = "") -> str | None:
    """The path of the first string holding NUL or a lone surrogate (PostgreSQL and UTF-8
    cannot hold them), if any."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            return path or "body"
    elif isinstance(value, dict):
        for k, v in value.items():
            found = _unstorable(k, path) or _unstorable(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _unstorable(v, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        where = _unstorable(data)
        if where is not None:
            raise ValueError(f"{where}: text must not contain NUL or unpaired surrogates")
        return data


class PlaceOrder(_Body):
    """A shop's request to place an order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_ORDER]})

    shop_id: str | None = Field(None, max_length=64, description=(
        "Optional; when sent it must be the shop of the API key."))
    channel: Channel = Field("online", description=(
        "Sales channel: `online` (the shop's storefront) or `marketplace`; a till's sales go "
        "to POST /v1/pos/sales."))
    reference: str | None = Field(None, min_length=1, max_length=128,
                                  pattern=r"^[\x21-\x7e]+$", description=(
        "The shop's own order reference (printable ASCII). An order named by a reference the "
        "shop used before is not placed again: the answer names the first order, with "
        "`duplicate` true, or, if the order differs, is a 409 reference-reused."))
    customer: Customer
    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES, description=(
        f"1 to {MAX_LINES} lines, one per SKU, all in the shop's currency."))
    payment: PaymentInstruction
    delivery: Delivery
    loyalty_points: int | None = Field(None, ge=1, le=100_000_000, strict=True, description=(
        "Loyalty points the customer spends on the order, a point paying a round amount of "
        "the currency: Rp1.000, ¥100, or one unit (100 minor units) of a currency with cents. "
        "Held when the order is placed (409 insufficient-points if the "
        "customer does not hold them), spent when it is paid, given back if it is cancelled or "
        "returned. They pay less than the total: the payment method is charged the rest."))


MAX_SALES = 500


class TillPayment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["cash", "card"] = Field(
        description="Paid at the counter: cash, or card on the till's own terminal.")


class TillSale(BaseModel):
    """One sale as the till recorded it."""

    model_config = ConfigDict(extra="forbid")

    sale_id: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$", description=(
        "The till's receipt number, unique per store: uploading it again is harmless."))
    sold_at: AwareDatetime = Field(description="When the till sold it, with its offset.")
    customer: Customer = Field(default_factory=Customer, description=(
        "Who bought, if the till knows (a scanned loyalty card, a phone number, an e-mail "
        "for the receipt); omitted, the sale is anonymous."))
    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)
    payment: TillPayment


class SalesBatch(_Body):
    """A till's upload: sales already paid and handed over in one store."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "store_id": "ST-LIS",
        "sales": [{"sale_id": "LIS-0001-000123", "sold_at": "2026-11-22T09:41:00+00:00",
                   "customer": EXAMPLE_ORDER["customer"], "lines": EXAMPLE_ORDER["lines"],
                   "payment": {"method": "cash"}}]}]})

    store_id: str = Field(min_length=1, max_length=64, description="The store the till is in.")
    sales: list[TillSale] = Field(min_length=1, max_length=MAX_SALES, description=(
        f"1 to {MAX_SALES} sales. Either every sale is recorded or none is."))


class RecordedSale(BaseModel):
    sale_id: str
    order_id: str
    already_recorded: bool = Field(description="True when an earlier upload recorded it.")


class SalesRecorded(BaseModel):
    sales: list[RecordedSale]


class Accepted(BaseModel):
    order_id: str = Field(description="Id of the new order.", examples=["ord_5f1c..."])
    status_url: str = Field(description="Where to follow the order.")
    duplicate: bool = Field(False, description=(
        "True when the order's `reference` named an order placed before: nothing new was "
        "placed, and `order_id` is that order's."))


class TimelineEntry(BaseModel):
    version: int
    type: str = Field(description="Event type, e.g. StockReserved.")
    source: str
    time: datetime
    event_id: str


class Tracking(BaseModel):
    carrier: str
    tracking_number: str
    shipment_id: str


class ReturnView(BaseModel):
    return_id: str
    status: Literal["requested", "received", "closed"] = Field(description=(
        "requested (the carrier collects it), received (back at the warehouse: its stock and "
        "refund follow), closed (restocked or written off, and paid back)."))
    lines: list[ReturnLine]
    refund: Money | None = Field(None, description="What it pays back.")
    last: bool = Field(description="It took back every unit the customer still had: the "
                       "order ends returned.")
    tracking: Tracking | None = Field(None, description="The carrier collecting it.")


class BankTransfer(BaseModel):
    virtual_account: str = Field(description="The account the customer pays the total into.")
    amount: int = Field(description="Integer minor units to transfer.")
    currency: str
    pay_before: datetime = Field(description="Unpaid by then, the order is cancelled.")
    bank: str | None = Field(None, description="The bank that holds the account: bca, "
                             "mandiri, bni or bri.")


class AppPayment(BaseModel):
    method: str = Field(description="qris (a QR code to scan) or ewallet (a push to approve "
                        "in the wallet app).")
    request_id: str = Field(description="The gateway's id for the payment request.")
    amount: int = Field(description="Integer minor units to pay.")
    currency: str
    pay_before: datetime = Field(description="Unpaid by then, the order is cancelled.")
    qr_string: str | None = Field(None, description="qris: the QR code's payload, to render "
                                  "as a QR code for the customer.")
    wallet: str | None = Field(None, description="ewallet: gopay, ovo, dana or shopeepay.")


class OrderView(BaseModel):
    order_id: str
    shop_id: str
    channel: str
    status: str = Field(description="placed, reserved, paid, shipment_created, shipped, "
                        "delivered, completed, cancelled, return_requested, return_received, "
                        "returned (a partial return, once closed, leaves it delivered or "
                        "completed)")
    total_amount: int = Field(description="Integer minor units.")
    currency: str
    placed_at: datetime
    tracking: Tracking | None = Field(None, description="Once the parcel is booked.")
    return_tracking: Tracking | None = Field(None, description="Once the carrier is booked "
                                             "to collect a requested return.")
    bank_transfer: BankTransfer | None = Field(
        None, description="For a bank-transfer order once its virtual account is open.")
    app_payment: AppPayment | None = Field(
        None, description="For a QRIS or e-wallet order once its payment is requested.")
    returns: list[ReturnView] = Field(default_factory=list, description="Its returns, "
                                      "oldest first.")
    timeline: list[TimelineEntry]


class OrderSummary(BaseModel):
    order_id: str
    channel: str
    status: str
    total_amount: int
    currency: str
    placed_at: datetime


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at "
                                    "the end.")


class ReturnRequest(_Body):
    lines: list[ReturnLine] = Field(min_length=1, max_length=MAX_LINES)
    reason: str = Field(min_length=1, max_length=500)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"lines": [{"sku": "SKU-MUG", "quantity": 1, "restock": "write_off"}],
         "reason": "arrived chipped"}]})


class ReturnAccepted(BaseModel):
    order_id: str
    return_id: str
    refund: Money | None = Field(None, description=(
        "What the return pays back once it is received: the returned lines' share of what "
        "was paid (tax included), or for the last return all that is left."))
    last: bool = Field(True, description="It takes back every unit the customer still had.")


class GoodwillRequest(_Body):
    amount: Money = Field(description=(
        "What to pay back, in the order's currency (minor units): less than what was paid for "
        "the order and not given back yet."))
    reason: str = Field(min_length=1, max_length=500, description="The complaint, in a line.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"amount": {"amount": 25000, "currency": "IDR"},
         "reason": "the parcel came two days late"}]})


class GoodwillAccepted(BaseModel):
    order_id: str
    goodwill_id: str


class ReviewRequest(_Body):
    rating: int = Field(ge=1, le=5, strict=True, description="1 to 5 stars.")
    text: str = Field("", max_length=5000)


class WebhookRequest(_Body):
    url: AnyHttpUrl = Field(description="Where events are POSTed, signed with the secret.")
    events: list[str] = Field(min_length=1, max_length=len(WEBHOOK_EVENTS), description=(
        "Event types to deliver: " + ", ".join(WEBHOOK_EVENTS)))


class Webhook(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    created_at: datetime
    previous_secret_valid_until: datetime | None = Field(
        None, description="After a rotation, deliveries are signed with both secrets until then.")


class WebhookSecret(Webhook):
    secret: str = Field(description="Shown once: verify deliveries with it.")


class CustomerIdentifierView(BaseModel):
    kind: IdentifierKind
    value: str | None = Field(description="Normalised: e-mail in lower case, phone in E.164. "
                              "Opened from the order that brought it; null if it cannot be.")
    linked_at: datetime
    order_id: str = Field(description="The order that brought it.")


class CustomerOrder(BaseModel):
    order_id: str
    channel: str
    status: str = Field(description="Where the order is in the sales flow: placed, paid, "
                        "delivered, completed, cancelled or returned.")
    payment_method: str | None
    total_amount: int | None = Field(description="Integer minor units.")
    currency: str | None
    placed_at: datetime = Field(description="A till sale: when the till sold it.")


class LedgerEntry(BaseModel):
    kind: Literal["accrued", "reversed", "held", "redeemed", "released", "expired"] = Field(
        description="accrued (an order completed), reversed (it was returned), held (an order "
        "spends them), redeemed (that order was paid: spent), released (it was cancelled or "
        "returned: given back), expired.")
    order_id: str
    at: datetime
    change: int = Field(description="Points, signed, as the entry moved the balance.")
    balance: int = Field(description="The balance after the entry.")


class Loyalty(BaseModel):
    balance: int = Field(description="Points the customer holds now; never negative.")
    issued: int
    reversed: int
    held: int = Field(description="Held for orders not paid yet.")
    redeemed: int = Field(description="Spent on orders that were paid.")
    expired: int
    expiry_days: float = Field(description="Points expire this many days after earned.")
    ledger: list[LedgerEntry] = Field(description="Oldest first.")


class Amount(BaseModel):
    amount: int = Field(description="Integer minor units.")
    currency: str


class CustomerView(BaseModel):
    customer_id: str = Field(description="Alur's id for the customer, stable per shop.")
    erased: bool = Field(description="The customer was forgotten: no personal data is left.")
    identifiers: list[CustomerIdentifierView]
    orders: list[CustomerOrder] = Field(description="Every channel, newest first.")
    order_count: int
    lifetime_value: list[Amount] = Field(description=(
        "Totals of the orders paid and neither cancelled nor returned, per currency."))
    first_order_at: datetime | None
    last_order_at: datetime | None
    preferred_channel: str | None = Field(description="The channel of most orders.")
    preferred_payment_method: str | None
    loyalty: Loyalty


class CustomerMatches(BaseModel):
    items: list[CustomerView] = Field(description="The customer the identifier names, if any.")


class Forgotten(BaseModel):
    customer_id: str
    erased: bool = True
