"""PostgreSQL adapters of the core ports (asyncpg). One connection and transaction per unit.

A unit of work costs few round trips however many messages it handles: the batch's inbox ids
and streams are fetched in one statement each; appends, outbox, audit and timer rows are
buffered and written at commit in one statement (one data-modifying CTE per table); and a
savepoint is only issued when a handler reaches for the connection itself (e.g. the stock
table).
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar, cast

import asyncpg

from alur.runtime import alarm
from alur.runtime.db import ACQUIRE_TIMEOUT, CONNECTION_ERRORS, advisory_key
from alur.runtime.errors import ConcurrencyConflict, InfrastructureError, StreamBusy
from alur.runtime.ports import (
    AuditRow,
    OutboxRow,
    OutboxStats,
    StoredEvent,
    Timer,
)
from schemas import Event, decode, encode

_AUDIT_COLUMNS = ("direction", "topic", "partition", "offset", "event_id", "type", "order_id",
                  "outcome", "attempts", "error")
_OUTBOX_COLUMNS = ("event_id", "topic", "key", "value", "type")
_EVENT_COLUMNS = ("stream_id", "version", "event_id", "type", "origin", "body")
# The flush's column types, in the order of the columns above (events' body is JSON text).
_TYPES = {
    "events": ("text", "int", "uuid", "text", "text", "jsonb"),
    "audit": ("text", "text", "int", "bigint", "uuid", "text", "text", "text", "int", "text"),
    "outbox": ("uuid", "text", "bytea", "bytea", "text"),
}

log = logging.getLogger("alur.postgres")
# Errors that end the transaction as a whole, not one message's savepoint: the connection is
# gone, or the server chose this transaction as a deadlock's (or serialization failure's)
# victim. A deadlock's other side waits for locks this transaction took for *earlier*
# messages, so retrying only the message meets it again; rolling back frees them.
TRANSACTION_ERRORS = (*CONNECTION_ERRORS, asyncpg.TransactionRollbackError)


def notify_channel(schema: str) -> str:
    """Where the outbox's trigger (sql/004_outbox_notify.sql) tells the relay of new rows."""
    return f"alur_outbox_{schema}"


def stream_lock_key(schema: str, stream_id: str) -> int:
    """The advisory lock of one stream: every writer of the stream (the consumer's batch, a
    timer round, a partner's callback, an API request) holds it until its transaction ends."""
    return advisory_key(f"{schema}/{stream_id}")


_UNSET = object()  # a timer the unit of work had not touched (the savepoints' undo log)


class StreamCache:
    """The committed events of the streams this process wrote or read last (least recently
    used out first), so that a stream's history is decoded once per process instead of once
    per event handled. Never trusted blindly: `preload` reads every event after the cached
    ones, under the stream's lock, and checks the cached last one is still in the database."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._streams: OrderedDict[str, tuple[StoredEvent, ...]] = OrderedDict()

    def get(self, stream_id: str) -> tuple[StoredEvent, ...] | None:
        events = self._streams.get(stream_id)
        if events is not None:
            self._streams.move_to_end(stream_id)
        return events

    def put(self, stream_id: str, events: tuple[StoredEvent, ...]) -> None:
        if not events:
            return
        self._streams[stream_id] = events
        self._streams.move_to_end(stream_id)
        while len(self._streams) > self._size:
            self._streams.popitem(last=False)

    def drop(self, stream_id: str) -> None:
        self._streams.pop(stream_id, None)


# Orders in flight at 300 orders/s for several seconds, a few events each.
STREAM_CACHE_SIZE = 4096
_caches: dict[str, StreamCache] = {}


def stream_cache(schema: str) -> StreamCache:
    """The process's cache of one service schema's streams."""
    if schema not in _caches:
        _caches[schema] = StreamCache(STREAM_CACHE_SIZE)
    return _caches[schema]


class Attachment(Protocol):
    """A service's buffer of its own table writes that rides on a unit of work: undone with a
    message's savepoint, written in the unit of work's one flush statement at commit (so a
    batch's stock changes, say, cost no round trip of their own)."""

    def mark(self) -> object:
        """Where the buffer stands, for `undo`."""

    def undo(self, mark: object) -> None:
        """Forget what was buffered since `mark`."""

    def flush(self, array: Callable[[Sequence[object], str], str]) -> list[tuple[str, str]]:
        """The statements that write the buffer, as (name, statement) CTEs of the flush (a
        later one may read an earlier one's RETURNING by its name); `array(values,
        pg_type)` binds a parameter and returns its placeholder."""


A = TypeVar("A", bound=Attachment)


class PostgresUnitOfWork:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema
        self._cache = stream_cache(schema)
        # False for a unit of work that only reads (the API's GETs): it takes no stream lock,
        # and sees what was committed when each statement began.
        self.lock_streams = True
        # True for the batch whose partner calls hold the streams' claims: it ignores them.
        self.claimant = False
        self.conn: asyncpg.Connection | None = None
        self._tx: asyncpg.transaction.Transaction | None = None
        self._outbox: list[tuple[object, ...]] = []
        self._audit: list[tuple[object, ...]] = []
        self._events: list[tuple[object, ...]] = []
        self._streams: dict[str, list[StoredEvent]] = {}
        self._timers: dict[tuple[str, str], datetime | None] = {}
        self._busy: set[str] = set()  # claimed by another unit of work's partner call
        self._released: list[str] = []
        self._savepoints: list[list[object]] = []  # [name, issued] per open savepoint
        self._names = itertools.count()
        # Undo logs for savepoints, so that marking one costs the same however many streams
        # and timers the batch holds: streams added (read or begun), the stream of each event
        # appended, and each timer change with the value it replaced.
        self._added: list[str] = []
        self._appended: list[str] = []
        self._timer_log: list[tuple[tuple[str, str], object]] = []
        self._json: dict[uuid.UUID, str] = {}
        self._attached: dict[str, Attachment] = {}

    def attached(self, key: str, make: Callable[[asyncpg.Connection], A]) -> A:
        """This unit of work's attachment `key`, made on first use with its connection."""
        found = self._attached.get(key)
        if found is None:
            assert self.conn is not None
            found = self._attached[key] = make(self.conn)
        return cast(A, found)

    async def __aenter__(self) -> PostgresUnitOfWork:
        try:
            self.conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT)
            self._tx = self.conn.transaction()
            await self._tx.start()
        except CONNECTION_ERRORS as exc:
            await self._release(broken=True)
            raise InfrastructureError(f"PostgreSQL unavailable: {exc}") from exc
        self._outbox, self._audit, self._events, self._streams = [], [], [], {}
        self._timers = {}
        self._added, self._appended, self._timer_log = [], [], []
        self._json = {}
        self._busy, self._released = set(), []
        self._attached = {}
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.conn is not None and self._tx is not None
        # A connection that failed mid-operation is in no state to roll back or to be reset
        # for the next user: it is dropped, and the pool opens a new one when asked.
        broken = isinstance(exc, CONNECTION_ERRORS)
        try:
            if exc_type is None:
                await self._flush()
                await self._tx.commit()
                for stream_id, stream in self._streams.items():
                    self._cache.put(stream_id, tuple(stream))
                self._wake_loops()
            elif not broken:
                await self._tx.rollback()
        except asyncpg.UniqueViolationError as err:
            await self._tx.rollback()
            raise ConcurrencyConflict(f"another writer appended first: {err}") from err
        except CONNECTION_ERRORS as err:
            broken = True
            raise InfrastructureError(f"PostgreSQL failed at commit: {err}") from err
        except BaseException:
            # The server refused what was flushed (a value it cannot store): the transaction
            # is aborted; end it before the connection goes back.
            try:
                await self._tx.rollback()
            except CONNECTION_ERRORS:
                broken = True
            raise
        finally:
            await self._release(broken)

    async def _flush(self) -> None:
        """Everything buffered, in one statement: a round trip per commit, not one per table.
        (Data-modifying CTEs each run once, to completion, whether the query reads them.)"""
        assert self.conn is not None
        parts: list[str] = []
        named: list[tuple[str, str]] = []
        args: list[object] = []

        def array(values: Sequence[object], pg_type: str) -> str:
            args.append(list(values))
            return f"${len(args)}::{'text' if pg_type == 'jsonb' else pg_type}[]"

        for table, rows, columns in (("events", self._events, _EVENT_COLUMNS),
                                     ("audit", self._audit, _AUDIT_COLUMNS),
                                     ("outbox", self._outbox, _OUTBOX_COLUMNS)):
            if rows:
                types = _TYPES[table]
                arrays = [array(column, t) for column, t in
                          zip(zip(*rows, strict=True), types, strict=True)]
                names = [f"c{i}" for i in range(len(columns))]
                values = ", ".join(f"{n}::jsonb" if t == "jsonb" else n
                                   for n, t in zip(names, types, strict=True))
                quoted = ", ".join(f'"{c}"' for c in columns)
                parts.append(f"INSERT INTO {table} ({quoted}) SELECT {values} FROM "
                             f"unnest({', '.join(arrays)}) AS r({', '.join(names)})")
        set_ = [(s, k, due) for (s, k), due in self._timers.items() if due is not None]
        cancelled = [(s, k) for (s, k), due in self._timers.items() if due is None]
        if cancelled:  # a (stream, kind) is either set or cancelled, never both
            streams, kinds = zip(*cancelled, strict=True)
            parts.append(f"DELETE FROM timers t USING unnest({array(streams, 'text')}, "
                         f"{array(kinds, 'text')}) AS c(s, k) "
                         "WHERE t.stream_id = c.s AND t.kind = c.k")
        if set_:
            streams, kinds, dues = zip(*set_, strict=True)
            parts.append(f"INSERT INTO timers (stream_id, kind, due_at) SELECT * FROM unnest("
                         f"{array(streams, 'text')}, {array(kinds, 'text')}, "
                         f"{array(dues, 'timestamptz')}) "
                         "ON CONFLICT (stream_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at")
        for attachment in self._attached.values():
            named.extend(attachment.flush(array))
        if self._released:
            released = array(self._released, "text")
            parts.append(f"DELETE FROM claims WHERE stream_id = ANY({released})")
        named.extend((f"w{i}", part) for i, part in enumerate(parts))
        if named:
            await self.conn.execute(
                "WITH " + ", ".join(f"{name} AS ({part})" for name, part in named)
                + " SELECT 1", *args)

    def _wake_loops(self) -> None:
        """Tell the process's polling loops what was committed (alur.runtime.alarm)."""
        dues = [due for due in self._timers.values() if due is not None]
        if dues and alarm.TIMERS is not None:
            alarm.TIMERS.due(min(dues))
        if self._events and alarm.WRITES is not None:
            alarm.WRITES.due(datetime.now(UTC))

    async def _release(self, broken: bool = False) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            if broken:
                conn.terminate()
            try:
                await self._pool.release(conn)
            except Exception as exc:  # its reset failed: the pool dropped it, and reconnects
                log.debug("connection dropped on release: %s", exc)

    async def connection(self) -> asyncpg.Connection:
        """The transaction's connection, for adapters that write their own tables. Issues the
        savepoint of the enclosing `savepoint()` block first, so their writes can be undone."""
        assert self.conn is not None
        for savepoint in self._savepoints:
            if not savepoint[1]:
                await self.conn.execute(f"SAVEPOINT {savepoint[0]}")
                savepoint[1] = True
        return self.conn

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        assert self.conn is not None
        marks = (len(self._outbox), len(self._audit), len(self._events), len(self._added),
                 len(self._appended), len(self._timer_log))
        attached = {key: a.mark() for key, a in self._attached.items()}
        savepoint: list[object] = [f"alur_sp_{next(self._names)}", False]
        self._savepoints.append(savepoint)
        try:
            yield
        except BaseException:
            self._savepoints.pop()
            if savepoint[1]:
                await self.conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint[0]}")
            n_outbox, n_audit, n_events, n_added, n_appended, n_timers = marks
            del self._outbox[n_outbox:], self._audit[n_audit:], self._events[n_events:]
            for timer, before in reversed(self._timer_log[n_timers:]):
                if before is _UNSET:
                    self._timers.pop(timer, None)
                else:
                    self._timers[timer] = cast(datetime | None, before)
            for stream_id in reversed(self._appended[n_appended:]):
                if stream_id in self._streams:
                    self._streams[stream_id].pop()
            for stream_id in self._added[n_added:]:
                self._streams.pop(stream_id, None)
            del self._timer_log[n_timers:], self._appended[n_appended:], self._added[n_added:]
            for key in list(self._attached):
                if key in attached:
                    self._attached[key].undo(attached[key])
                else:  # made inside the block: all of it goes
                    del self._attached[key]
            raise
        self._savepoints.pop()
        if savepoint[1]:
            await self.conn.execute(f"RELEASE SAVEPOINT {savepoint[0]}")

    async def remember(self, event_id: uuid.UUID) -> bool:
        return event_id in await self.remember_all([event_id])

    async def remember_all(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        conn = await self.connection()
        rows = await conn.fetch(
            "INSERT INTO inbox (event_id) SELECT DISTINCT unnest($1::uuid[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id", list(event_ids))
        return {r["event_id"] for r in rows}

    async def forget(self, event_id: uuid.UUID) -> None:
        conn = await self.connection()
        await conn.execute("DELETE FROM inbox WHERE event_id = $1", event_id)

    async def unseen(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        conn = await self.connection()
        rows = await conn.fetch(
            "SELECT i FROM unnest($1::uuid[]) AS i "
            "WHERE NOT EXISTS (SELECT 1 FROM inbox WHERE event_id = i)", list(event_ids))
        return {r["i"] for r in rows}

    async def claim(self, stream_ids: Sequence[str], owner: uuid.UUID, ttl: float) -> None:
        if not stream_ids:
            return
        conn = await self.connection()
        await conn.execute(
            "INSERT INTO claims (stream_id, owner, expires_at) "
            "SELECT s, $2, now() + make_interval(secs => $3) FROM unnest($1::text[]) AS s "
            "ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner, "
            "expires_at = EXCLUDED.expires_at", sorted(set(stream_ids)), owner, ttl)

    def release_claims(self, stream_ids: Sequence[str]) -> None:
        self._released.extend(stream_ids)

    async def preload(self, stream_ids: Sequence[str]) -> None:
        wanted = [s for s in dict.fromkeys(stream_ids) if s not in self._streams]
        if not wanted:
            return
        assert self.conn is not None
        # Lock before reading, in one global order (sorted keys), so that two writers of a
        # stream take turns instead of one failing at commit; a batch then never redoes its
        # work because a callback wrote one of its orders meanwhile.
        if self.lock_streams:
            keys = sorted({stream_lock_key(self._schema, s) for s in wanted})
            await self.conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", keys)
        # What this process committed already comes from the cache; the database sends only
        # the events after it, and the id of the cached last event, to prove it current.
        cached = [self._cache.get(s) for s in wanted]
        for stream_id, events in zip(wanted, cached, strict=True):
            self._streams[stream_id] = list(events or ())
            self._added.append(stream_id)
        known = [len(c) if c else 0 for c in cached]
        confirmed = await self._read_after(wanted, known)
        stale = [s for s, n in zip(wanted, known, strict=True) if n and s not in confirmed]
        if stale:  # the database is not what this process remembers (restored, truncated)
            for stream_id in stale:
                self._cache.drop(stream_id)
                self._streams[stream_id] = []
            await self._read_after(stale, [0] * len(stale))

    async def _read_after(self, stream_ids: Sequence[str], known: Sequence[int]) -> set[str]:
        """Append to each stream its events after version `known`; returns the streams whose
        event at `known` is the one this unit of work holds last."""
        assert self.conn is not None
        # A writer that is not the claimant learns in the same statement which of its streams
        # have a partner call in flight (version -1): read after the locks were taken, so a
        # claim committed before it holds them is seen.
        rows = await self.conn.fetch(
            "SELECT e.stream_id, e.version, e.origin, e.event_id,"
            " CASE WHEN e.version > w.known THEN e.body END AS body"
            " FROM unnest($1::text[], $2::int[]) AS w(stream_id, known)"
            " JOIN events e ON e.stream_id = w.stream_id AND e.version >= w.known"
            " UNION ALL SELECT c.stream_id, -1, NULL, NULL, NULL FROM claims c"
            " WHERE $3 AND c.stream_id = ANY($1::text[]) AND c.expires_at > now()"
            " ORDER BY 1, 2", list(stream_ids), list(known),
            self.lock_streams and not self.claimant)
        confirmed: set[str] = set()
        for r in rows:
            if r["version"] == -1:
                self._busy.add(r["stream_id"])
                continue
            stream = self._streams[r["stream_id"]]
            if r["body"] is None:
                if stream and stream[-1].event.id == r["event_id"]:
                    confirmed.add(r["stream_id"])
                continue
            stream.append(StoredEvent(r["version"], r["origin"], decode(r["body"])))
        return confirmed

    async def load(self, stream_id: str) -> list[StoredEvent]:
        await self.preload([stream_id])
        if stream_id in self._busy:
            raise StreamBusy(stream_id)
        return list(self._streams[stream_id])

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event],
        origins: Sequence[Literal["own", "observed"]],
    ) -> None:
        if expected_version == 0 and stream_id not in self._streams:
            # A new stream (an order id just made): nothing to lock or read. Should another
            # writer begin it meanwhile after all, the commit fails on the (stream, version)
            # key, a ConcurrencyConflict as for any stale version.
            self._streams[stream_id] = []
            self._added.append(stream_id)
        else:
            await self.preload([stream_id])
            if stream_id in self._busy:
                raise StreamBusy(stream_id)
        stream = self._streams[stream_id]
        if len(stream) != expected_version:
            raise ConcurrencyConflict(
                f"stream {stream_id} is at version {len(stream)}, not {expected_version}")
        for event, origin in zip(events, origins, strict=True):
            stored = StoredEvent(len(stream) + 1, origin, event)
            stream.append(stored)
            self._appended.append(stream_id)
            body = event.model_dump_json()
            self._json[event.id] = body
            self._events.append((stream_id, stored.version, event.id, event.type, origin,
                                 body))

    def publish(self, event: Event) -> None:
        body = self._json.get(event.id)  # an event is stored and published: serialised once
        value = body.encode() if body is not None else encode(event)
        self._outbox.append((event.id, event.topic, event.subject.encode(), value, event.type))
        self.audit(AuditRow(direction="out", topic=event.topic, outcome="emitted",
                            event_id=event.id, type=event.type, order_id=event.subject))

    def send(self, topic: str, key: bytes | None, value: bytes, type: str) -> None:
        self._outbox.append((None, topic, key, value, type))

    def audit(self, row: AuditRow) -> None:
        self._audit.append(tuple(getattr(row, c) for c in _AUDIT_COLUMNS))

    def schedule(self, stream_id: str, kind: str, due_at: datetime | None) -> None:
        self._timer_log.append(((stream_id, kind), self._timers.get((stream_id, kind), _UNSET)))
        self._timers[(stream_id, kind)] = due_at

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        # A timer is held through its stream's lock, taken without waiting: a stream another
        # unit of work holds (a batch, another replica's round) waits for the next round.
        # Locking the timer rows instead, then waiting for the streams, would deadlock with a
        # batch that holds a stream and writes its timer row at commit. Every writer of a
        # timer row holds its stream's lock, so the rows need no lock of their own.
        conn = await self.connection()
        rows = await conn.fetch(
            "SELECT stream_id, kind, due_at FROM timers WHERE due_at <= $1 "
            "ORDER BY due_at, stream_id, kind LIMIT $2", now, 2 * limit)
        held = await conn.fetch(
            "SELECT n FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n) "
            "WHERE pg_try_advisory_xact_lock(k) LIMIT $2",
            [stream_lock_key(self._schema, r["stream_id"]) for r in rows], limit)
        taken = [rows[n - 1] for n in sorted(h["n"] for h in held)]
        return [Timer(r["stream_id"], r["kind"], r["due_at"]) for r in taken]


class PostgresOutbox:
    """The relay's view of one service's outbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def unpublished(self, limit: int) -> list[OutboxRow]:
        rows = await self._pool.fetch(
            "SELECT id, topic, key, value, event_id, created_at, type FROM outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1", limit)
        return [OutboxRow(r["id"], r["topic"], r["key"], r["value"], r["event_id"],
                          r["created_at"], r["type"]) for r in rows]

    async def mark_published(self, published: Sequence[tuple[int, int, int]]) -> None:
        if not published:
            return
        ids, partitions, offsets = zip(*published, strict=True)
        await self._pool.execute(
            'UPDATE outbox o SET published_at = now(), partition = p.partition, "offset" = p.off '
            "FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS p(id, partition, off) "
            "WHERE o.id = p.id", list(ids), list(partitions), list(offsets))

    async def prune(self, older_than_seconds: float) -> int:
        status = await self._pool.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            older_than_seconds)
        return int(status.split()[-1])

    async def stats(self) -> OutboxStats:
        row = await self._pool.fetchrow(
            "SELECT count(*) AS backlog, coalesce(extract(epoch FROM now() - min(created_at)), 0)"
            " AS age FROM outbox WHERE published_at IS NULL")
        assert row is not None
        return OutboxStats(int(row["backlog"]), max(0.0, float(row["age"])))
