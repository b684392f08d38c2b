"""PostgreSQL pools bound to one service schema, and ordered SQL migrations applied at start."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from alur.runtime.errors import InfrastructureError

CORE_SQL = Path(__file__).parent / "sql"
# The database is down or dropped the connection: a periodic job tries again next round.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def every(seconds: float, job: Callable[[], Awaitable[None]], what: str,
                log: logging.Logger) -> None:
    """Run `job` now and then every `seconds`, for good; a database error is logged as
    "cannot <what>" and does not stop the rounds."""
    while True:
        try:
            await job()
        except DATABASE_ERRORS as exc:
            log.warning("cannot %s: %s", what, exc)
        await asyncio.sleep(seconds)


async def connect_pool(dsn: str, schema: str, size: int = 4) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in `schema` first."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size, server_settings={"search_path": schema},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot reach PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


def advisory_key(name: str) -> int:
    """A stable 64-bit key for pg_advisory_lock derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def migrate(dsn: str, schema: str, *directories: Path) -> list[str]:
    """Apply every not yet applied `NNN_name.sql` of the directories, in name order.

    Runs under an advisory lock so replicas starting together migrate once.
    Each file is applied in its own transaction together with its bookkeeping row.
    """
    files = sorted((p for d in directories for p in d.glob("*.sql")), key=lambda p: p.name)
    names = [p.name for p in files]
    if len(set(names)) != len(names):
        raise ValueError(f"migration names collide in {directories}: {names}")
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(f"migrate:{schema}"))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in files:
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
    finally:
        await conn.close()
    return applied
