"""The sent e-mail log: the fake and the PostgreSQL adapter keep the same promise, and what
is recorded survives a transaction that rolled back (it is written outside of it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from alur.runtime.db import CORE_SQL, connect_pool, migrate
from alur.settings import Settings
from services.notifications.bootstrap import DEFINITION
from services.notifications.sent_log import InMemorySentLog, PostgresSentLog, SentLog


@pytest.fixture(params=["memory", "postgres"])
async def sent_log(request: pytest.FixtureRequest, infra: Settings) -> AsyncIterator[SentLog]:
    if request.param == "memory":
        yield InMemorySentLog()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    assert DEFINITION.migrations is not None
    await migrate(infra.pg_dsn, schema, CORE_SQL, DEFINITION.migrations)
    pool = await connect_pool(infra.pg_dsn, schema, 2)
    try:
        yield PostgresSentLog(pool)
    finally:
        await pool.close()
        conn = await asyncpg.connect(infra.pg_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def test_an_e_mail_is_known_as_sent_once_recorded_and_recording_twice_is_harmless(
        sent_log: SentLog) -> None:
    ntf = f"ntf_{uuid.uuid4().hex}"
    assert not await sent_log.sent(ntf)
    await sent_log.record(ntf)
    await sent_log.record(ntf)
    assert await sent_log.sent(ntf)
    assert not await sent_log.sent(f"ntf_{uuid.uuid4().hex}")
