"""The event envelope (CloudEvents 1.0 attributes plus Alur's routing fields) and money."""

from __future__ import annotations

import os
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.money import format_money, minor_units

# online: the shop's own storefront; marketplace: a marketplace selling for the shop; pos: a
# till's sale. Online and marketplace orders take the same flow; pos ones are handed over.
Channel = Literal["online", "marketplace", "pos"]

# Every event class registers itself here: type name -> class, and payload class -> event class.
EVENT_TYPES: dict[str, type[Event]] = {}
EVENT_FOR_DATA: dict[type[BaseModel], type[Event]] = {}


class Model(BaseModel):
    """Base for payloads: immutable, and tolerant of fields added later in the same version."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Money(Model):
    """An amount in integer minor units of an ISO-4217 currency (schemas/money.py says how many
    a currency has: 2 for EUR, 0 for JPY and IDR). Never a float."""

    amount: int = Field(ge=0, strict=True, description=(
        "Integer minor units: 1999 for 19.99 EUR, 1500 for 1,500 JPY, 150000 for Rp150.000 "
        "(IDR is counted in whole rupiah, as the Indonesian gateways count it)."))
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO-4217 currency code.")

    @field_validator("currency")
    @classmethod
    def _known(cls, currency: str) -> str:
        minor_units(currency)
        return currency

    def format(self, locale: str | None = None) -> str:
        """As a person of `locale` reads it, e.g. 'Rp150.000' (id_ID), '19,99 €' (pt_PT)."""
        return format_money(self.amount, self.currency, locale)

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def times(self, quantity: int) -> Money:
        return Money(amount=self.amount * quantity, currency=self.currency)


class Event(Model):
    """A CloudEvents 1.0 event in structured JSON. `subject` is the order id and the Kafka key.

    Alur's own attributes are CloudEvents extensions, named as the spec asks (lower-case
    letters and digits): `shopid`, `channel`, `correlationid`, `causationid` (absent on the
    first event of a flow) and `schemaversion`. In Python they keep their snake_case names.
    Records written before the rename carry `shop_id`, `correlation_id`, `causation_id` and
    `schema_version`; those names still decode (the Python names double as validation names),
    and nothing writes them any more."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)
    topic: ClassVar[str]

    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents spec version.")
    id: uuid.UUID = Field(description="Unique event id; consumers deduplicate on it.")
    source: str = Field(description="Producing service, e.g. 'alur/orders'.")
    type: str = Field(description="Event type name, past tense.")
    time: AwareDatetime = Field(description="When the producing service recorded the event.")
    subject: str = Field(min_length=1, description="The order id (Kafka key).")
    shop_id: str = Field(min_length=1, alias="shopid",
                         description="The shop the order belongs to.")
    channel: Channel = Field(description="Sales channel of the order.")
    correlation_id: uuid.UUID = Field(alias="correlationid",
                                      description="Id shared by every event of one order flow.")
    causation_id: uuid.UUID | None = Field(
        None, alias="causationid", exclude_if=lambda cause: cause is None,
        description="Id of the event that caused this; absent on the first event of a flow.")
    schema_version: int = Field(1, ge=1, alias="schemaversion",
                                description="Version of this type's payload schema.")
    data: Any

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        type_field = cls.model_fields["type"]
        name = type_field.default
        if isinstance(name, str) and name:
            EVENT_TYPES[name] = cls
            EVENT_FOR_DATA[cls.model_fields["data"].annotation] = cls  # type: ignore[index]


def now() -> datetime:
    return datetime.now(UTC)


_ID_BYTES: deque[bytes] = deque()
_IDS_A_READ = 256


def random_uuid() -> uuid.UUID:
    """A version-4 UUID, like `uuid.uuid4()`, from os.urandom read 256 ids at a time. Each
    os.urandom call gives up the GIL for its system call, and a service has other threads
    (faust's consumer, the executor's): under load the event loop then waited for the GIL
    again at every id (a microbenchmark with one busy thread: 400 us an id, 6 us from the
    buffer). Safe across threads (a deque's append and popleft are atomic) and forks (the
    child starts with an empty buffer)."""
    try:
        raw = _ID_BYTES.popleft()
    except IndexError:
        block = os.urandom(16 * _IDS_A_READ)
        _ID_BYTES.extend(block[i:i + 16] for i in range(16, len(block), 16))
        raw = block[:16]
    return uuid.UUID(bytes=raw, version=4)


os.register_at_fork(after_in_child=_ID_BYTES.clear)


def first_event(
    data: Model, *, source: str, subject: str, shop_id: str, channel: Channel,
    event_id: uuid.UUID | None = None, at: datetime | None = None,
) -> Event:
    """Wrap a payload that starts a flow (no cause): correlation id = its own id."""
    cls = EVENT_FOR_DATA[type(data)]
    eid = event_id or random_uuid()
    return cls(  # type: ignore[call-arg]  # each subclass defaults `type`
        id=eid, source=source, time=at or now(), subject=subject, shop_id=shop_id,
        channel=channel, correlation_id=eid, causation_id=None, data=data,
    )


def caused_by(
    cause: Event, data: Model, *, source: str, event_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> Event:
    """Wrap a payload decided in reaction to `cause`: same subject, shop and correlation."""
    cls = EVENT_FOR_DATA[type(data)]
    return cls(  # type: ignore[call-arg]  # each subclass defaults `type`
        id=event_id or random_uuid(), source=source, time=at or now(), subject=cause.subject,
        shop_id=cause.shop_id, channel=cause.channel, correlation_id=cause.correlation_id,
        causation_id=cause.id, data=data,
    )
