"""The one codec: events travel as UTF-8 JSON of the envelope."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from schemas.catalogue import AnyEvent
from schemas.envelope import Event

_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


class DecodeError(ValueError):
    """The bytes are not a valid event of the catalogue; never retriable."""

    retriable = False


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def decode(raw: bytes | str | None) -> Event:
    """The event in `raw`; DecodeError for anything else, a record without a value included."""
    if raw is None:
        raise DecodeError("no value (a tombstone): not an event")
    try:
        return _adapter.validate_json(raw)
    except ValidationError as exc:
        raise DecodeError(_summarise(exc)) from None
    except (ValueError, TypeError, RecursionError) as exc:  # the parser itself gave up
        raise DecodeError(f"{type(exc).__name__}: {exc}"[:500]) from None


def decode_obj(obj: object) -> Event:
    try:
        return _adapter.validate_python(obj)
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
