"""The one codec: events travel as UTF-8 JSON of the envelope."""

from __future__ import annotations

import json

from pydantic import TypeAdapter, ValidationError

from schemas.catalogue import AnyEvent
from schemas.envelope import Event
from schemas.upcast import upcast

_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

# What `encode` makes: a CloudEvent in the JSON event format, which on Kafka is the structured
# content mode (the whole event in the value, this media type in the `content-type` header).
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


class DecodeError(ValueError):
    """The bytes are not a valid event of the catalogue; never retriable."""

    retriable = False


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def decode(raw: bytes | str | None) -> Event:
    """The event in `raw`, upcast to its current form (schemas/upcast.py) if it was recorded
    in an older one; DecodeError for anything else, a record without a value included."""
    if raw is None:
        raise DecodeError("no value (a tombstone): not an event")
    try:
        return _adapter.validate_json(raw)
    except ValidationError as exc:
        refused = exc
    except (ValueError, TypeError, RecursionError) as exc:  # the parser itself gave up
        raise DecodeError(f"{type(exc).__name__}: {exc}"[:500]) from None
    # Not the current form: perhaps an older one. Only then is the JSON read twice.
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON at all: the first refusal says so
        raise DecodeError(_summarise(refused)) from None
    current = upcast(record) if isinstance(record, dict) else record
    if current == record:
        raise DecodeError(_summarise(refused)) from None
    try:
        return _adapter.validate_json(json.dumps(current))
    except ValidationError as exc:
        raise DecodeError(_summarise(exc)) from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def json_schema() -> dict[str, object]:
    return _adapter.json_schema()
