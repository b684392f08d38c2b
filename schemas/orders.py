"""Events the orders service publishes on the `orders` topic."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import AfterValidator, AwareDatetime, Field, WithJsonSchema
from pydantic.networks import validate_email

from schemas.envelope import Event, Model, Money

PaymentMethod = Literal["card", "ewallet", "bank_transfer", "cod", "cash"]
DeliveryMethod = Literal["home_delivery", "click_and_collect", "in_store"]


# A plain address email_validator surely accepts: an ASCII dot-atom local part and a domain of
# ASCII labels under an alphabetic top-level domain. Anything else (quoted or international
# local parts, IDNA, "--" in a label, special-use domains, a display name) takes pydantic's
# EmailStr path, which is also the judge of what is refused and how the refusal reads.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def _email(value: str) -> str:
    """EmailStr's answer, without its cost for the common address: email_validator takes
    about 170 us an address, and every service decodes each OrderPlaced (and replay reads
    them by the thousand). A plain address normalises to itself with its domain in lower
    case, which is what email_validator makes of it (tests/unit/test_schemas.py checks the
    two agree)."""
    m = _PLAIN_EMAIL.fullmatch(value)
    if m is not None and len(value) <= 254 and value.index("@") <= 64:
        domain = m.group(1).lower()
        if "--" not in domain and not any(domain == d or domain.endswith("." + d)
                                          for d in _SPECIAL_USE):
            return value[:m.start(1)] + domain
    return validate_email(value)[1]  # what EmailStr does, refusals worded as it words them


# Validated as pydantic's EmailStr is, and described the same in the JSON Schema.
Email = Annotated[str, AfterValidator(_email), WithJsonSchema({"type": "string",
                                                                "format": "email"})]


class OrderLine(Model):
    sku: str = Field(min_length=1, max_length=64, description="Stock keeping unit.")
    quantity: int = Field(gt=0, le=1000, strict=True, description="Units ordered.")
    unit_price: Money = Field(description="Price of one unit.")


class Customer(Model):
    customer_id: str = Field(min_length=1, description="The shop's id for the customer.")
    email: Email = Field(description="Where order e-mails go.")
    name: str = Field(min_length=1, max_length=200, description="Name used in messages.")


class Address(Model):
    line1: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO-3166 alpha-2 code.")


class PaymentInstruction(Model):
    method: PaymentMethod = Field(description="How the customer pays.")
    token: str | None = Field(
        None, max_length=64, description="Gateway payment token (card/ewallet), never a PAN."
    )


class Delivery(Model):
    method: DeliveryMethod = Field(description="Home delivery, store pickup, or handed over.")
    address: Address | None = Field(None, description="Required for home delivery.")
    store_id: str | None = Field(None, description="Pickup store for click-and-collect.")


class OrderPlacedData(Model):
    order_id: str
    customer: Customer
    lines: list[OrderLine] = Field(min_length=1)
    total: Money
    payment: PaymentInstruction
    delivery: Delivery
    sold_at: AwareDatetime | None = Field(None, description=(
        "Point-of-sale only: when the till sold it. The upload may come hours later."))
    sale_id: str | None = Field(None, max_length=64, description=(
        "Point-of-sale only: the till's receipt number, unique per shop and store."))
    reference: str | None = Field(None, max_length=128, description=(
        "The shop's own order reference, unique per shop: an order it names twice is placed "
        "once."))
    intake: Literal["http", "kafka"] = Field("http", description=(
        "How the order reached Alur: the HTTP API or the shop's Kafka intake topic."))


class OrderCancelledData(Model):
    order_id: str
    reason: str = Field(description="e.g. out_of_stock, customer_request, payment_failed.")


class OrderReadyToShipData(Model):
    """The order may ship: paid (or, for cash on delivery, its stock reserved) and not
    cancelled. Orders decides it in the order's stream, so a later cancellation follows it on
    the order's partition and shipping sees the two in that order."""

    order_id: str


class OrderCompletedData(Model):
    order_id: str


class OrderStuckData(Model):
    order_id: str
    status: str = Field(description="The non-terminal status the order is stuck in.")
    since: AwareDatetime


class ReceiptConfirmedData(Model):
    order_id: str


class ReturnLine(Model):
    sku: str
    quantity: int = Field(gt=0, strict=True)


class ReturnRequestedData(Model):
    order_id: str
    return_id: str
    lines: list[ReturnLine] = Field(min_length=1)
    reason: str


class OrderReturnedData(Model):
    order_id: str
    return_id: str
    refunded: Money


class ReviewSubmittedData(Model):
    order_id: str
    rating: int = Field(ge=1, le=5, strict=True)
    text: str = Field("", max_length=5000)


class LoyaltyPointsAccruedData(Model):
    order_id: str
    customer_id: str
    points: int = Field(gt=0)


class LoyaltyPointsReversedData(Model):
    order_id: str
    customer_id: str
    points: int = Field(gt=0)


class _OrdersEvent(Event):
    topic: ClassVar[str] = "orders"


class OrderPlaced(_OrdersEvent):
    type: Literal["OrderPlaced"] = "OrderPlaced"
    data: OrderPlacedData


class OrderCancelled(_OrdersEvent):
    type: Literal["OrderCancelled"] = "OrderCancelled"
    data: OrderCancelledData


class OrderReadyToShip(_OrdersEvent):
    type: Literal["OrderReadyToShip"] = "OrderReadyToShip"
    data: OrderReadyToShipData


class OrderCompleted(_OrdersEvent):
    type: Literal["OrderCompleted"] = "OrderCompleted"
    data: OrderCompletedData


class OrderStuck(_OrdersEvent):
    type: Literal["OrderStuck"] = "OrderStuck"
    data: OrderStuckData


class ReceiptConfirmed(_OrdersEvent):
    type: Literal["ReceiptConfirmed"] = "ReceiptConfirmed"
    data: ReceiptConfirmedData


class ReturnRequested(_OrdersEvent):
    type: Literal["ReturnRequested"] = "ReturnRequested"
    data: ReturnRequestedData


class OrderReturned(_OrdersEvent):
    type: Literal["OrderReturned"] = "OrderReturned"
    data: OrderReturnedData


class ReviewSubmitted(_OrdersEvent):
    type: Literal["ReviewSubmitted"] = "ReviewSubmitted"
    data: ReviewSubmittedData


class LoyaltyPointsAccrued(_OrdersEvent):
    type: Literal["LoyaltyPointsAccrued"] = "LoyaltyPointsAccrued"
    data: LoyaltyPointsAccruedData


class LoyaltyPointsReversed(_OrdersEvent):
    type: Literal["LoyaltyPointsReversed"] = "LoyaltyPointsReversed"
    data: LoyaltyPointsReversedData
