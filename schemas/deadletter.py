"""The value of a dead-letter record (`<topic>.dlq`): why a consumer gave up on a record, where
the record lay, and its bytes. Not an event, and not a CloudEvent: plain JSON
(`content-type: application/json`), written by alur.runtime.processing and read by
`alur dlq`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Origin(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The record's key as UTF-8 (bytes that are not are "
                                        "replaced); null when it had none.")


class DeadLetterRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str = Field(description="The consuming service that gave up.")
    error: str = Field(description="Why, in a line.")
    attempts: int = Field(ge=0, description="How many times the record was tried.")
    failed_at: datetime
    origin: Origin
    value: str | None = Field(description=(
        "The record's value (its first 64 KiB), as text or base64 (`value_encoding`); null "
        "for a record without a value (a tombstone)."))
    value_encoding: Literal["utf-8", "base64"]
    value_truncated: bool | None = Field(None, exclude_if=lambda v: v is None, description=(
        "Present and true when the value was longer than what is kept."))
    value_bytes: int | None = Field(None, exclude_if=lambda v: v is None,
                                    description="The whole value's size, when truncated.")
    value_sha256: str | None = Field(None, exclude_if=lambda v: v is None,
                                     description="The whole value's SHA-256, when truncated.")
