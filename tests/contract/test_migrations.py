"""Migrations on a real PostgreSQL: numbered ones once each, in name order; repeatable ones
(`R_*.sql`) again whenever their text changes, after the numbered ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from alur.runtime.db import CORE_SQL, migrate
from alur.settings import Settings
from tests.conftest import ROOT


@pytest.fixture
async def schema(infra: Settings) -> AsyncIterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(infra.pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def call(infra: Settings, schema: str, sql: str) -> object:
    conn = await asyncpg.connect(infra.pg_dsn, server_settings={"search_path": schema})
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_a_repeatable_migration_is_applied_again_only_when_its_text_changes(
        infra: Settings, schema: str, tmp_path: Path) -> None:
    (tmp_path / "001_table.sql").write_text("CREATE TABLE t (x integer);")
    function = tmp_path / "R_answer.sql"
    function.write_text("CREATE OR REPLACE FUNCTION answer() RETURNS integer"
                        " LANGUAGE sql AS 'SELECT count(*)::int + 1 FROM t';")
    assert await migrate(infra.pg_dsn, schema, tmp_path) == ["001_table.sql", "R_answer.sql"]
    assert await migrate(infra.pg_dsn, schema, tmp_path) == []
    assert await call(infra, schema, "SELECT answer()") == 1
    function.write_text(function.read_text().replace("+ 1", "+ 2"))
    (tmp_path / "002_more.sql").write_text("INSERT INTO t VALUES (1);")
    # the numbered one first: a repeatable one may use what it made
    assert await migrate(infra.pg_dsn, schema, tmp_path) == ["002_more.sql", "R_answer.sql"]
    assert await call(infra, schema, "SELECT answer()") == 3


async def test_the_orders_migrations_apply_once_on_a_fresh_schema(
        infra: Settings, schema: str) -> None:
    orders = ROOT / "services" / "orders" / "migrations"
    applied = await migrate(infra.pg_dsn, schema, CORE_SQL, orders)
    assert applied[-1] == "R_sales_facts.sql" and "111_cod_fee.sql" in applied
    assert await migrate(infra.pg_dsn, schema, CORE_SQL, orders) == []
    assert await call(infra, schema, "SELECT count(*) FROM sales_orders") == 0
