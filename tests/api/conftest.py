"""The orders API in this process over a real PostgreSQL schema of its own (the orders
migrations), called through httpx's ASGI transport. Each test gets a fresh schema, so what a
request wrote is exactly what the schema holds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from alur.runtime.db import connect_pool, migrate
from alur.runtime.postgres import PostgresUnitOfWork
from alur.settings import Settings
from services.orders.api import ApiConfig, create_app
from services.orders.bootstrap import DEFINITION
from services.orders.shops import ShopRegistry
from tests.e2e.helpers import order_body, table_counts

CONFIG = ApiConfig(body_limit=16_384, rate_per_second=1000.0, burst=1000)


@dataclass
class Api:
    pool: asyncpg.Pool
    schema: str
    registry: ShopRegistry
    client: httpx.AsyncClient

    async def shop(self, shop_id: str, *, currency: str = "EUR", signing: bool = False,
                   rate: float | None = None, burst: int | None = None) -> tuple[str, str | None]:
        """Register a shop; its API key and signing secret."""
        shop = await self.registry.add_shop(shop_id, shop_id, currency, signing=signing,
                                            rate_per_second=rate, burst=burst)
        _, key = await self.registry.create_key(shop_id)
        return key, shop.signing_secret

    async def counts(self) -> dict[str, int]:
        return await table_counts(self.pool, self.schema)


async def orders_schema(settings: Settings) -> tuple[asyncpg.Pool, str]:
    schema = f"t_api_{uuid.uuid4().hex[:10]}"
    await migrate(settings.pg_dsn, schema, *DEFINITION.migration_dirs())
    return await connect_pool(settings.pg_dsn, schema, 8), schema


@pytest.fixture
async def api(infra: Settings) -> AsyncIterator[Api]:
    pool, schema = await orders_schema(infra)
    app = create_app(pool, lambda: PostgresUnitOfWork(pool, schema), CONFIG)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    registry = ShopRegistry(pool)
    await registry.add_skus(["SKU-MUG", "SKU-PLATE"])
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(pool, schema, registry, client)
    finally:
        await pool.close()
        conn = await asyncpg.connect(infra.pg_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mug_order(quantity: int = 1) -> dict[str, object]:
    body = order_body("SKU-MUG", quantity=quantity)
    del body["shop_id"]
    return body
