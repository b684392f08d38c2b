"""Events the orders service publishes on the `orders` topic."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import AfterValidator, AwareDatetime, Field, WithJsonSchema, model_validator
from pydantic.networks import validate_email

from schemas.envelope import Event, Model, Money
from schemas.upcast import step

PaymentMethod = Literal["card", "ewallet", "qris", "bank_transfer", "cod", "cash"]
# Banks whose virtual accounts the gateway opens, by their code; and the e-wallets it pushes
# payment requests to. The customer picks one at checkout (or the gateway's default).
Bank = Literal["bca", "mandiri", "bni", "bri"]
Wallet = Literal["gopay", "ovo", "dana", "shopeepay"]
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


def _phone(value: str) -> str:
    """A phone number in E.164 (`+` and 8 to 15 digits). Spaces, dots, dashes and brackets
    are dropped; `00` stands for `+`; a national number (`0812…`) and one written without its
    `+` (`62812…`) are Indonesian, the country of Alur's shops."""
    digits = re.sub(r"[\s.()/-]", "", value)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0"):
        digits = "+62" + digits[1:]
    elif digits.startswith("62"):
        digits = "+" + digits
    if not re.fullmatch(r"\+[1-9][0-9]{7,14}", digits):
        raise ValueError("not a phone number: write it as +<country code><number> (E.164) or "
                         "as an Indonesian number (08…)")
    return digits


def _card(value: str) -> str:
    card = re.sub(r"[\s-]", "", value).upper()
    if not re.fullmatch(r"[A-Z0-9]{4,32}", card):
        raise ValueError("a loyalty card number is 4 to 32 letters and digits (spaces and "
                         "dashes are dropped)")
    return card


Phone = Annotated[str, AfterValidator(_phone), WithJsonSchema({
    "type": "string", "pattern": r"^\+?[0-9 .()/-]{8,24}$",
    "description": "E.164, or an Indonesian number such as 0812-3456-7890."})]
LoyaltyCard = Annotated[str, AfterValidator(_card), WithJsonSchema({
    "type": "string", "minLength": 4, "maxLength": 40})]
IdentifierKind = Literal["reference", "loyalty_card", "email", "phone"]


class Customer(Model):
    """Who buys. Any of the four identifiers names the customer; Alur resolves them to one
    customer per shop (`alur_customer_id` on the order). A till sale may name nobody."""

    customer_id: str | None = Field(None, min_length=1, max_length=128, description=(
        "The shop's own reference for the customer."))
    email: Email | None = Field(None, description="Where order e-mails go.")
    phone: Phone | None = Field(None, description="Normalised to E.164.")
    loyalty_card: LoyaltyCard | None = Field(None, description=(
        "A loyalty card number, as scanned at a till; spaces and dashes are dropped."))
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="Name used in messages.")

    def identifiers(self) -> list[tuple[IdentifierKind, str]]:
        """(kind, value) as identity compares them, strongest first: the shop's reference,
        the card, the e-mail address (in lower case), the phone number."""
        found: list[tuple[IdentifierKind, str | None]] = [
            ("reference", self.customer_id), ("loyalty_card", self.loyalty_card),
            ("email", self.email.lower() if self.email else None), ("phone", self.phone)]
        return [(kind, value) for kind, value in found if value is not None]


class CustomerIdentifier(Model):
    """An identifier as identity compares it, without the identifier itself: a keyed hash
    (HMAC-SHA256 with the deployment's ALUR_IDENTITY_PEPPER) of shop, kind and normalised
    value."""

    kind: IdentifierKind
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


class Sealed(Model):
    """Personal data sealed with its customer's own key (alur.runtime.keyring): AES-256-GCM,
    the customer's id as associated data. Forgetting the customer deletes the key."""

    key_id: str = Field(description="The customer whose key seals it (`cus_…`).")
    fields: list[str] = Field(description="Which personal fields are inside, e.g. email.")
    nonce: str = Field(description="Base64.")
    ciphertext: str = Field(description="Base64.")


class Address(Model):
    line1: str | None = Field(None, min_length=1, max_length=200, description=(
        "The street. In an event, null once sealed with the customer's personal data."))
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO-3166 alpha-2 code.")


class PaymentInstruction(Model):
    """How the customer pays: `card` (captured at once), `ewallet` (a push to the customer's
    wallet app, paid when approved there), `qris` (a dynamic QR code any Indonesian banking or
    wallet app pays), `bank_transfer` (a virtual account at the customer's bank), `cod` (cash
    to the courier), `cash` (at a till)."""

    method: PaymentMethod = Field(description="How the customer pays.")
    token: str | None = Field(
        None, max_length=64, description="Gateway payment token (card: the card; ewallet: the "
        "customer's linked wallet account), never a PAN."
    )
    bank: Bank | None = Field(None, description="bank_transfer only: the bank whose virtual "
                              "account the customer pays into (the gateway's default if none).")
    wallet: Wallet | None = Field(None, description="ewallet only: the wallet app the payment "
                                  "request is pushed to (the one the token is linked to if none).")

    @model_validator(mode="after")
    def _fits_method(self) -> PaymentInstruction:
        if self.bank is not None and self.method != "bank_transfer":
            raise ValueError("bank is for bank_transfer only")
        if self.wallet is not None and self.method != "ewallet":
            raise ValueError("wallet is for ewallet only")
        return self


class Delivery(Model):
    method: DeliveryMethod = Field(description="Home delivery, store pickup, or handed over.")
    address: Address | None = Field(None, description="Required for home delivery.")
    store_id: str | None = Field(None, description="Pickup store for click-and-collect.")


class Redemption(Model):
    """Loyalty points the customer spends on the order: held when it is placed, spent when it
    is paid, given back if it is cancelled or returned. The payment method is charged the
    total minus their value."""

    points: int = Field(gt=0, strict=True)
    value: Money = Field(description="What the points pay of the total.")


class Tax(Model):
    """The order's tax line, by the shop's terms when it was placed: in Indonesia PPN, 11% by
    default. Prices either include it (the total is the lines' sum and holds the tax) or do
    not (the total is the lines' sum plus the tax)."""

    name: str = Field(min_length=1, max_length=32, description="e.g. PPN, VAT.")
    rate_bp: int = Field(ge=0, le=10_000, strict=True,
                         description="The rate in basis points: 1100 is 11%.")
    included: bool = Field(description="Whether the lines' prices include the tax.")
    amount: Money = Field(description="The tax on the order, rounded half up to a minor unit.")

    def share(self, part: int, of: int) -> Money:
        """The tax in `part` of an amount `of` (a refund of part of the total), rounded half
        up to a minor unit."""
        return Money(amount=(2 * self.amount.amount * part + of) // (2 * of),
                     currency=self.amount.currency)


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
    personal: Sealed | None = Field(None, description=(
        "The customer's personal data (the identifiers, the name, the street), sealed with "
        "the customer's key; `customer` and `delivery.address.line1` are then empty."))
    redemption: Redemption | None = Field(None, description=(
        "Loyalty points spent on the order, if any."))
    alur_customer_id: str | None = Field(None, max_length=64, description=(
        "Alur's id for the customer (`cus_…`), resolved from the customer's identifiers when "
        "the order was placed; null for an anonymous till sale and for orders placed before "
        "customers were resolved."))
    taxes: list[Tax] = Field(default_factory=list, description=(
        "The order's tax lines by the shop's terms when it was placed (PPN in Indonesia); "
        "empty when the shop charges none. Version 2: version 1 had one optional `tax`."))
    locale: str | None = Field(None, max_length=35, description=(
        "The shop's locale (CLDR, e.g. id_ID) that amounts and dates are written in for the "
        "customer; null: en."))
    estimated_delivery: date | None = Field(None, description=(
        "When the parcel should arrive (or, for click-and-collect, be ready), as the "
        "confirmation e-mail tells the customer. Null for till sales."))
    cod_fee: Money | None = Field(None, description=(
        "Cash on delivery's collection fee, by the shop's terms: part of the total, which "
        "the courier collects. Null when the order is not cash on delivery or the shop "
        "charges none."))

    def tax(self) -> Money | None:
        """The tax in the total, all tax lines together; None when there are none."""
        if not self.taxes:
            return None
        return Money(amount=sum(t.amount.amount for t in self.taxes),
                     currency=self.taxes[0].amount.currency)


class OrderCancelledData(Model):
    order_id: str
    reason: str = Field(description="e.g. out_of_stock, customer_request, payment_failed.")


class OrderReadyToShipData(Model):
    """The order may ship: paid (or, for cash on delivery, its stock reserved) and not
    cancelled. Orders decides it in the order's stream, so a later cancellation follows it on
    the order's partition and shipping sees the two in that order."""

    order_id: str
    location: str | None = Field(None, description=(
        "Where the order's stock is held (inventory's StockReserved): the parcel leaves from "
        "there. For click-and-collect from the pickup store's own shelf, the store itself: "
        "no parcel is sent, the store sets the goods aside. Null on orders released before "
        "locations were recorded."))


class OrderCompletedData(Model):
    order_id: str


class OrderStuckData(Model):
    order_id: str
    status: str = Field(description="The non-terminal status the order is stuck in.")
    since: AwareDatetime


class ReceiptConfirmedData(Model):
    order_id: str


class PickupConfirmedData(Model):
    order_id: str
    store_id: str = Field(description="The store that handed the order over from its shelf.")


class ReturnLine(Model):
    sku: str
    quantity: int = Field(gt=0, strict=True)
    restock: Literal["stock", "write_off"] = Field(
        "stock", description="stock: the units go back on the shelf they left; write_off: "
        "they cannot be sold again (damaged) and are written off.")


class ReturnRequestedData(Model):
    order_id: str
    return_id: str
    lines: list[ReturnLine] = Field(min_length=1)
    reason: str
    refund: Money | None = Field(None, description=(
        "What the return pays back once it is received: the returned lines' share of what "
        "was paid, or for the last return all that is left. Absent on returns recorded "
        "before partial returns, which took the whole order back."))
    last: bool = Field(True, description=(
        "It takes back every unit not returned before: the order ends returned."))
    at_store: str | None = Field(None, description=(
        "A till sale returned over the counter of this store: no parcel; its units go back "
        "on (or are written off at) that store, and the money is paid back at the till, the "
        "way the sale was paid (cash, or the store's card terminal)."))


class ReturnClosedData(Model):
    """A partial return is complete (its units back on the shelf or written off, its money
    paid back); the order goes on with the units the customer kept."""

    order_id: str
    return_id: str
    refunded: Money
    lines: list[ReturnLine] = Field(min_length=1)


class OrderReturnedData(Model):
    order_id: str
    return_id: str
    refunded: Money


class ReviewSubmittedData(Model):
    order_id: str
    rating: int = Field(ge=1, le=5, strict=True)
    text: str = Field("", max_length=5000)


class LoyaltyPointsRedeemedData(Model):
    """The points held for the order are spent: it was paid."""

    order_id: str
    customer_id: str
    points: int = Field(gt=0)


class LoyaltyPointsReleasedData(Model):
    """The points held for (or spent on) the order go back to the customer: it was cancelled
    or returned."""

    order_id: str
    customer_id: str
    points: int = Field(gt=0)
    reason: Literal["cancelled", "returned"]


class CustomerIdentifiedData(Model):
    """These identifiers name this customer from now on: the first order of a new customer
    brings all of its identifiers, a later order those not known before. Written in the
    order's stream, in the transaction that placed it, so a replay gives the same links."""

    order_id: str
    customer_id: str = Field(description="Alur's id for the customer (`cus_…`).")
    identifiers: list[CustomerIdentifier] = Field(min_length=1)
    new: bool = Field(description="True when this order made the customer known.")


class LoyaltyPointsAccruedData(Model):
    order_id: str
    customer_id: str
    points: int = Field(gt=0)


class GoodwillRefundRequestedData(Model):
    """The shop pays part of what the customer paid back for a complaint, without a return
    (payments refunds it through the payment method: RefundIssued, reason `goodwill`). What
    was paid for the order less its goodwill refunds stays above zero: to give everything
    back, the order is cancelled or returned."""

    order_id: str
    goodwill_id: str = Field(min_length=1, max_length=64)
    amount: Money = Field(description="Positive, in the order's currency.")
    reason: str = Field(min_length=1, max_length=500, description="The complaint, in a line.")


class LoyaltyPointsReversedData(Model):
    order_id: str
    customer_id: str
    points: int = Field(gt=0)


class _OrdersEvent(Event):
    topic: ClassVar[str] = "orders"


class OrderPlaced(_OrdersEvent):
    type: Literal["OrderPlaced"] = "OrderPlaced"
    schema_version: Literal[2] = Field(2, alias="schemaversion", description=(
        "Version 2: the order's tax lines (`taxes`). Version 1 is upcast on reading."))
    data: OrderPlacedData


@step("OrderPlaced", 1)
def _tax_lines(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had one optional `tax`; version 2 has the list of tax lines `taxes`. Orders
    placed before tax lines were recorded, and those of a shop that charges none, had no tax:
    they have no tax lines."""
    tax = data.pop("tax", None)
    data["taxes"] = [tax] if tax is not None else []
    return data


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


class PickupConfirmed(_OrdersEvent):
    """The store handed a click-and-collect order from its own shelf to its customer (the
    shop's staff said so through the API); shipping records it picked up."""

    type: Literal["PickupConfirmed"] = "PickupConfirmed"
    data: PickupConfirmedData


class ReturnRequested(_OrdersEvent):
    type: Literal["ReturnRequested"] = "ReturnRequested"
    data: ReturnRequestedData


class GoodwillRefundRequested(_OrdersEvent):
    type: Literal["GoodwillRefundRequested"] = "GoodwillRefundRequested"
    data: GoodwillRefundRequestedData


class OrderReturned(_OrdersEvent):
    type: Literal["OrderReturned"] = "OrderReturned"
    data: OrderReturnedData


class ReturnClosed(_OrdersEvent):
    type: Literal["ReturnClosed"] = "ReturnClosed"
    data: ReturnClosedData


class ReviewSubmitted(_OrdersEvent):
    type: Literal["ReviewSubmitted"] = "ReviewSubmitted"
    data: ReviewSubmittedData


class LoyaltyPointsRedeemed(_OrdersEvent):
    type: Literal["LoyaltyPointsRedeemed"] = "LoyaltyPointsRedeemed"
    data: LoyaltyPointsRedeemedData


class LoyaltyPointsReleased(_OrdersEvent):
    type: Literal["LoyaltyPointsReleased"] = "LoyaltyPointsReleased"
    data: LoyaltyPointsReleasedData


class CustomerIdentified(_OrdersEvent):
    type: Literal["CustomerIdentified"] = "CustomerIdentified"
    data: CustomerIdentifiedData


class LoyaltyPointsAccrued(_OrdersEvent):
    type: Literal["LoyaltyPointsAccrued"] = "LoyaltyPointsAccrued"
    data: LoyaltyPointsAccruedData


class LoyaltyPointsReversed(_OrdersEvent):
    type: Literal["LoyaltyPointsReversed"] = "LoyaltyPointsReversed"
    data: LoyaltyPointsReversedData
