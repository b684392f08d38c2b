"""The ports of the reliability core. The PostgreSQL adapters and the in-memory fakes both
implement them and pass the same contract tests (tests/contract/)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from schemas import Event


@dataclass(frozen=True)
class AuditRow:
    """One line of the audit log: a consumed or an emitted event and what became of it."""

    direction: Literal["in", "out"]
    topic: str
    outcome: str
    event_id: uuid.UUID | None = None
    type: str | None = None
    order_id: str | None = None
    partition: int | None = None
    offset: int | None = None
    attempts: int = 1
    error: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes | None
    value: bytes
    event_id: uuid.UUID | None = None
    created_at: datetime | None = field(default=None, compare=False)
    type: str = "unknown"


DEAD_LETTER_TYPE = "DeadLetter"
"""The outbox row type of a dead-letter record."""


@dataclass(frozen=True)
class OutboxStats:
    backlog: int
    """Rows not yet published."""
    oldest_age: float
    """Seconds since the oldest unpublished row was written (0 when there is none)."""


@dataclass(frozen=True)
class Timer:
    """A stream's deadline of one kind (e.g. the reservation expiry of order X)."""

    stream_id: str
    kind: str
    due_at: datetime


@dataclass(frozen=True)
class StoredEvent:
    version: int
    origin: Literal["own", "observed"]
    event: Event


class UnitOfWork(Protocol):
    """One transaction: inbox, event store, outbox and audit commit together or not at all.

    Streams may be claimed for a partner call in flight (`claim`): a unit of work that is not
    the claimant (`claimant` False) gets StreamBusy from `load` for a claimed stream."""

    claimant: bool

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None: ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """Undo everything written inside the block if it raises; the outer transaction lives on."""

    async def remember(self, event_id: uuid.UUID) -> bool:
        """Record a consumed event id in the inbox; False if it was there already."""

    async def remember_all(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record many ids at once; returns those that were not in the inbox before."""

    async def forget(self, event_id: uuid.UUID) -> None:
        """Take an id out of the inbox again (its message went to the DLQ, so a redrive runs)."""

    async def unseen(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """The ids that are not in the inbox (reads only)."""

    async def claim(self, stream_ids: Sequence[str], owner: uuid.UUID, ttl: float) -> None:
        """Claim the streams for `ttl` seconds from now (taking over any claim on them), with
        the unit of work's other writes."""

    def release_claims(self, stream_ids: Sequence[str]) -> None:
        """Delete the streams' claims when the unit of work commits."""

    async def preload(self, stream_ids: Sequence[str]) -> None:
        """Load these streams in one go; later `load` calls for them cost nothing."""

    async def load(self, stream_id: str) -> list[StoredEvent]:
        """The stream's events in version order (empty for a new stream)."""

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event],
        origins: Sequence[Literal["own", "observed"]],
    ) -> None:
        """Append after `expected_version`; ConcurrencyConflict if another writer was first.

        The conflict shows at the latest when the unit of work commits."""

    def publish(self, event: Event) -> None:
        """Put an own event in the outbox (its class's topic, keyed by subject) and audit it."""

    def send(self, topic: str, key: bytes | None, value: bytes, type: str) -> None:
        """Put a record that is not an own event in the outbox for `topic`: a dead letter
        (type DEAD_LETTER_TYPE, `topic` already the `.dlq` name) or a record for a shop."""

    def audit(self, row: AuditRow) -> None: ...

    def schedule(self, stream_id: str, kind: str, due_at: datetime | None) -> None:
        """Set the stream's timer of this kind to `due_at`, or cancel it (None); written with
        the unit of work's other rows."""

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        """Up to `limit` timers due by `now`, earliest first, held by this unit of work until
        it ends: a concurrent unit of work (another replica) does not see them, nor the timers
        of a stream another unit of work is writing (they come due again next round)."""


class Outbox(Protocol):
    """What the relay needs: unpublished rows in order, marking them, pruning old ones."""

    async def unpublished(self, limit: int) -> list[OutboxRow]: ...

    async def mark_published(self, published: Sequence[tuple[int, int, int]]) -> None:
        """Mark rows published: (row id, partition, offset) each."""

    async def prune(self, older_than_seconds: float) -> int: ...

    async def stats(self) -> OutboxStats:
        """How far behind publishing is (the relay's health, seen from the database)."""
