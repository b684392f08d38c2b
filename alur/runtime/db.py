"""PostgreSQL pools bound to one service schema, and ordered SQL migrations applied at start."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from asyncpg.exceptions import (
    InsufficientResourcesError,
    InternalClientError,
    OperatorInterventionError,
)

from alur.runtime.errors import ConcurrencyConflict, InfrastructureError

if TYPE_CHECKING:
    from alur.runtime.health import Watchdog

CORE_SQL = Path(__file__).parent / "sql"
# The server is gone, restarting, shutting down or out of connections, or the connection broke
# in the middle of an operation (asyncpg then leaves it in a state no query can use): the work
# can be tried again on a new connection once the server answers. TimeoutError is an OSError.
CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                     InternalClientError, OperatorInterventionError, InsufficientResourcesError)
# What a periodic job meets when the database is down or a writer raced it: next round.
DATABASE_ERRORS = (*CONNECTION_ERRORS, asyncpg.PostgresError, InfrastructureError,
                   ConcurrencyConflict)
# A query that waits longer than this is treated as a lost connection (the server froze, or a
# lock is held by a stuck session): the work is retried instead of hanging for good.
COMMAND_TIMEOUT = 60.0
ACQUIRE_TIMEOUT = 30.0


async def every(seconds: float, job: Callable[[], Awaitable[None]], what: str,
                log: logging.Logger, *, watchdog: Watchdog | None = None,
                loop: str | None = None) -> None:
    """Run `job` now and then every `seconds`, for good; a database error is logged as
    "cannot <what>" and does not stop the rounds. With a watchdog, `loop` reports to it."""
    while True:
        try:
            await job()
        except DATABASE_ERRORS as exc:
            log.warning("cannot %s: %s", what, exc)
            if watchdog is not None and loop is not None:
                watchdog.failed(loop, f"cannot {what}: {exc}")
        else:
            if watchdog is not None and loop is not None:
                watchdog.ok(loop)
        await asyncio.sleep(seconds)


async def transaction_only_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing beyond what asyncpg always does
    (roll back a transaction left open). Its default would send four statements on every
    release (RESET ALL, pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *), about 40 % of all
    statements under load, to undo session state no pooled connection here ever takes:
    session settings come from `server_settings`, advisory locks are transaction-scoped
    (`pg_advisory_xact_lock`), and the relay's LISTEN and session lock and the migrations'
    lock live on connections of their own, outside any pool."""


async def connect_pool(dsn: str, schema: str, size: int = 4) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in `schema` first."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size,
            # application_name: pg_stat_activity and pg_locks show whose connection it is.
            server_settings={"search_path": schema, "application_name": f"alur-{schema}"},
            command_timeout=COMMAND_TIMEOUT, reset=transaction_only_reset,
        )
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot reach PostgreSQL: {exc}") from exc
    if pool is None:  # only a pool created without awaiting is None
        raise InfrastructureError("cannot reach PostgreSQL: no pool")
    return pool


def advisory_key(name: str) -> int:
    """A stable 64-bit key for pg_advisory_lock derived from a name: the one hash every lock
    Alur takes from Python goes through (streams, relays, migrations, idempotency keys).
    BLAKE2b with an 8-byte digest, which a batch computes for each of its streams."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


async def migrate(dsn: str, schema: str, *directories: Path) -> list[str]:
    """Apply every not yet applied `NNN_name.sql` of the directories, in name order; then each
    repeatable `R_name.sql` whose text changed since it was last applied (or that never was).

    A repeatable migration holds definitions that are replaced whole (`CREATE OR REPLACE
    FUNCTION`): a change to such a function is an edit of its one file, not a copy of it in a
    new numbered migration. Runs under an advisory lock so replicas starting together migrate
    once. Each file is applied in its own transaction together with its bookkeeping row.
    """
    every = sorted((p for d in directories for p in d.glob("*.sql")), key=lambda p: p.name)
    names = [p.name for p in every]
    if len(set(names)) != len(names):
        raise ValueError(f"migration names collide in {directories}: {names}")
    files = [p for p in every if not p.name.startswith("R_")]
    repeatable = [p for p in every if p.name.startswith("R_")]
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(f"migrate:{schema}"))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(),"
            " checksum text)"  # a repeatable migration's text as last applied (sha256)
        )
        await conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
        done = {r["name"]: r["checksum"]
                for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
        for path in files:
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
        for path in repeatable:
            text = path.read_text()
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if done.get(path.name) == checksum:
                continue
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)"
                    " ON CONFLICT (name) DO UPDATE SET checksum = $2, applied_at = now()",
                    path.name, checksum)
            applied.append(path.name)
    finally:
        await conn.close()
    return applied
