"""PostgreSQL adapters of the core ports (asyncpg). One connection and transaction per unit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg

from alur.runtime.errors import ConcurrencyConflict, InfrastructureError
from alur.runtime.ports import AuditRow, OutboxRow, StoredEvent
from schemas import Event, decode, encode

_AUDIT_COLUMNS = ("direction", "topic", "partition", "offset", "event_id", "type", "order_id",
                  "outcome", "attempts", "error")
_OUTBOX_COLUMNS = ("event_id", "topic", "key", "value")

# Errors after which the connection or the server is gone: the whole batch is retried.
CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                     asyncpg.CannotConnectNowError)


def notify_channel(schema: str) -> str:
    return f"alur_outbox_{schema}"


class PostgresUnitOfWork:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema
        self.conn: asyncpg.Connection | None = None
        self._tx: asyncpg.transaction.Transaction | None = None
        self._outbox: list[tuple[object, ...]] = []
        self._audit: list[tuple[object, ...]] = []

    async def __aenter__(self) -> PostgresUnitOfWork:
        try:
            self.conn = await self._pool.acquire()
            self._tx = self.conn.transaction()
            await self._tx.start()
        except CONNECTION_ERRORS as exc:
            await self._release()
            raise InfrastructureError(f"PostgreSQL unavailable: {exc}") from exc
        self._outbox, self._audit = [], []
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.conn is not None and self._tx is not None
        try:
            if exc_type is None:
                if self._audit:
                    await self.conn.copy_records_to_table(
                        "audit", records=self._audit, columns=_AUDIT_COLUMNS,
                        schema_name=self._schema)
                if self._outbox:
                    await self.conn.copy_records_to_table(
                        "outbox", records=self._outbox, columns=_OUTBOX_COLUMNS,
                        schema_name=self._schema)
                    await self.conn.execute("SELECT pg_notify($1, '')",
                                            notify_channel(self._schema))
                await self._tx.commit()
            else:
                await self._tx.rollback()
        except CONNECTION_ERRORS as err:
            raise InfrastructureError(f"PostgreSQL failed at commit: {err}") from err
        finally:
            await self._release()

    async def _release(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                await self._pool.release(conn)
            except CONNECTION_ERRORS:
                conn.terminate()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        assert self.conn is not None
        n_outbox, n_audit = len(self._outbox), len(self._audit)
        try:
            async with self.conn.transaction():
                yield
        except BaseException:
            del self._outbox[n_outbox:]
            del self._audit[n_audit:]
            raise

    async def remember(self, event_id: uuid.UUID) -> bool:
        assert self.conn is not None
        status = await self.conn.execute(
            "INSERT INTO inbox (event_id) VALUES ($1) ON CONFLICT DO NOTHING", event_id)
        return bool(status == "INSERT 0 1")

    async def load(self, stream_id: str) -> list[StoredEvent]:
        assert self.conn is not None
        rows = await self.conn.fetch(
            "SELECT version, origin, body FROM events WHERE stream_id = $1 ORDER BY version",
            stream_id)
        return [StoredEvent(r["version"], r["origin"], decode(r["body"])) for r in rows]

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event],
        origins: Sequence[Literal["own", "observed"]],
    ) -> None:
        assert self.conn is not None
        records = [
            (stream_id, expected_version + i + 1, e.id, e.type, origin, e.model_dump_json())
            for i, (e, origin) in enumerate(zip(events, origins, strict=True))
        ]
        try:
            async with self.conn.transaction():
                await self.conn.executemany(
                    "INSERT INTO events (stream_id, version, event_id, type, origin, body) "
                    "VALUES ($1, $2, $3, $4, $5, $6::jsonb)", records)
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyConflict(
                f"stream {stream_id} moved past version {expected_version}") from exc

    def publish(self, event: Event) -> None:
        self._outbox.append((event.id, event.topic, event.subject.encode(), encode(event)))
        self.audit(AuditRow(direction="out", topic=event.topic, outcome="emitted",
                            event_id=event.id, type=event.type, order_id=event.subject))

    def dead_letter(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._outbox.append((None, topic, key, value))

    def audit(self, row: AuditRow) -> None:
        self._audit.append(tuple(getattr(row, c) for c in _AUDIT_COLUMNS))


class PostgresOutbox:
    """The relay's view of one service's outbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def unpublished(self, limit: int) -> list[OutboxRow]:
        rows = await self._pool.fetch(
            "SELECT id, topic, key, value, event_id, created_at FROM outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1", limit)
        return [OutboxRow(r["id"], r["topic"], r["key"], r["value"], r["event_id"],
                          r["created_at"]) for r in rows]

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
