"""In-memory fakes of the core ports, for handler unit tests. Same contract as postgres.py."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from alur.runtime.errors import ConcurrencyConflict, StreamBusy
from alur.runtime.ports import (
    AuditRow,
    OutboxRow,
    OutboxStats,
    StoredEvent,
    Timer,
)
from schemas import Event, encode


@dataclass
class MemoryState:
    """Everything one service schema holds. `extra` is for service tables (e.g. stock)."""

    inbox: set[uuid.UUID] = field(default_factory=set)
    streams: dict[str, list[StoredEvent]] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    audit: list[AuditRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    timers: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # Streams some open unit of work reads or writes (the fake's stream locks): their timers
    # are not due to anyone else until it ends.
    held_streams: set[str] = field(default_factory=set)
    # stream -> (owner, when the claim lapses): partner calls in flight.
    claims: dict[str, tuple[uuid.UUID, datetime]] = field(default_factory=dict)
    next_outbox_id: int = 1


class InMemoryUnitOfWork:
    """Works on a copy of the state and swaps it in at commit, so a failure leaves no trace."""

    def __init__(self, state: MemoryState) -> None:
        self._committed = state
        self.state = state
        self._held: set[str] = set()
        self._timers_before: dict[tuple[str, str], datetime] = {}
        self.claimant = False
        self._released: list[str] = []

    async def __aenter__(self) -> InMemoryUnitOfWork:
        self.state = copy.deepcopy(self._committed)
        self._timers_before = dict(self.state.timers)
        self._released = []
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        held = self._committed.held_streams
        if exc_type is None:
            # Timers are rows of their own: only those this unit of work changed are written,
            # over what units of work that ended meanwhile wrote.
            timers = dict(self._committed.timers)
            for key in self._timers_before.keys() - self.state.timers.keys():
                timers.pop(key, None)
            timers.update({key: due for key, due in self.state.timers.items()
                           if self._timers_before.get(key) != due})
            for stream_id in self._released:
                self.state.claims.pop(stream_id, None)
            self._committed.__dict__.update(self.state.__dict__)
            self._committed.timers = timers
        self._committed.held_streams = held - self._held
        self._held = set()
        self.state = self._committed

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        snapshot = copy.deepcopy(self.state)
        try:
            yield
        except BaseException:
            self.state.__dict__.update(snapshot.__dict__)
            raise

    async def remember(self, event_id: uuid.UUID) -> bool:
        if event_id in self.state.inbox:
            return False
        self.state.inbox.add(event_id)
        return True

    async def remember_all(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        new = set(event_ids) - self.state.inbox
        self.state.inbox |= new
        return new

    async def forget(self, event_id: uuid.UUID) -> None:
        self.state.inbox.discard(event_id)

    async def unseen(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return set(event_ids) - self.state.inbox

    async def claim(self, stream_ids: Sequence[str], owner: uuid.UUID, ttl: float) -> None:
        until = datetime.now(UTC) + timedelta(seconds=ttl)
        for stream_id in stream_ids:  # written at commit, with the rest
            self.state.claims[stream_id] = (owner, until)

    def release_claims(self, stream_ids: Sequence[str]) -> None:
        self._released.extend(stream_ids)

    async def preload(self, stream_ids: Sequence[str]) -> None:
        self._hold(stream_ids)  # everything else is in memory already

    async def load(self, stream_id: str) -> list[StoredEvent]:
        self._hold([stream_id])
        self._check_claim(stream_id)
        return list(self.state.streams.get(stream_id, []))

    def _check_claim(self, stream_id: str) -> None:
        claim = self._committed.claims.get(stream_id)
        if not self.claimant and claim is not None and claim[1] > datetime.now(UTC):
            raise StreamBusy(stream_id)

    def _hold(self, stream_ids: Iterable[str]) -> None:
        self._held |= set(stream_ids)
        self._committed.held_streams |= self._held

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event],
        origins: Sequence[Literal["own", "observed"]],
    ) -> None:
        self._hold([stream_id])
        if stream_id in self.state.streams:
            self._check_claim(stream_id)
        stream = self.state.streams.setdefault(stream_id, [])
        if len(stream) != expected_version:
            raise ConcurrencyConflict(f"stream {stream_id} moved past version {expected_version}")
        known = {s.event.id for st in self.state.streams.values() for s in st}
        if any(e.id in known for e in events):
            raise ConcurrencyConflict(f"event already stored in {stream_id}")
        for i, (e, origin) in enumerate(zip(events, origins, strict=True)):
            stream.append(StoredEvent(expected_version + i + 1, origin, e))

    def publish(self, event: Event) -> None:
        self._enqueue(event.id, event.topic, event.subject.encode(), encode(event), event.type)
        self.audit(AuditRow(direction="out", topic=event.topic, outcome="emitted",
                            event_id=event.id, type=event.type, order_id=event.subject))

    def send(self, topic: str, key: bytes | None, value: bytes, type: str) -> None:
        self._enqueue(None, topic, key, value, type)

    def _enqueue(self, event_id: uuid.UUID | None, topic: str, key: bytes | None,
                 value: bytes, type_: str) -> None:
        self.state.outbox.append({
            "id": self.state.next_outbox_id, "event_id": event_id, "topic": topic, "key": key,
            "value": value, "created_at": datetime.now(UTC), "published_at": None,
            "type": type_,
        })
        self.state.next_outbox_id += 1

    def audit(self, row: AuditRow) -> None:
        self.state.audit.append(row)

    def schedule(self, stream_id: str, kind: str, due_at: datetime | None) -> None:
        if due_at is None:
            self.state.timers.pop((stream_id, kind), None)
        else:
            self.state.timers[(stream_id, kind)] = due_at

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        others = self._committed.held_streams - self._held
        due = sorted((t, s, k) for (s, k), t in self.state.timers.items()
                     if t <= now and s not in others)[:limit]
        self._hold(s for _, s, _ in due)
        return [Timer(s, k, t) for t, s, k in due]


class InMemoryOutbox:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def unpublished(self, limit: int) -> list[OutboxRow]:
        rows = [r for r in self._state.outbox if r["published_at"] is None][:limit]
        return [OutboxRow(r["id"], r["topic"], r["key"], r["value"], r["event_id"],
                          r["created_at"], r["type"]) for r in rows]

    async def mark_published(self, published: Sequence[tuple[int, int, int]]) -> None:
        by_id = {row_id: (p, o) for row_id, p, o in published}
        for r in self._state.outbox:
            if r["id"] in by_id:
                r["published_at"] = datetime.now(UTC)
                r["partition"], r["offset"] = by_id[r["id"]]

    async def prune(self, older_than_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        keep = [r for r in self._state.outbox
                if r["published_at"] is None or r["published_at"] >= cutoff]
        pruned = len(self._state.outbox) - len(keep)
        self._state.outbox[:] = keep
        return pruned

    async def stats(self) -> OutboxStats:
        waiting = [r["created_at"] for r in self._state.outbox if r["published_at"] is None]
        age = (datetime.now(UTC) - min(waiting)).total_seconds() if waiting else 0.0
        return OutboxStats(len(waiting), max(0.0, age))
