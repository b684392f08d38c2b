"""Alur's event contract: envelope, catalogue, codec. Import events from here."""

from schemas.catalogue import ALL_TOPICS, TOPICS, AnyEvent, dlq_topic
from schemas.codec import DecodeError, decode, encode
from schemas.envelope import (
    EVENT_TYPES,
    Channel,
    Event,
    Model,
    Money,
    caused_by,
    first_event,
    now,
)
from schemas.inventory import *  # noqa: F403
from schemas.notifications import *  # noqa: F403
from schemas.orders import *  # noqa: F403
from schemas.payments import *  # noqa: F403
from schemas.shipping import *  # noqa: F403

__all__ = [
    "ALL_TOPICS", "TOPICS", "AnyEvent", "dlq_topic", "DecodeError", "decode",
    "encode", "EVENT_TYPES", "Channel", "Event", "Model", "Money", "caused_by", "first_event",
    "now",
]
