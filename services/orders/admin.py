"""Operators' access to the shop registry (the `alur shops`, `alur keys` and `alur catalogue`
commands, the demo and the tests): a registry on a short-lived pool, schema migrated first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alur.runtime.db import connect_pool, migrate
from alur.settings import Settings
from services.orders.bootstrap import DEFINITION
from services.orders.domain import INDONESIA, ShopTerms
from services.orders.shops import ShopRegistry


@asynccontextmanager
async def registry(settings: Settings) -> AsyncIterator[ShopRegistry]:
    await migrate(settings.pg_dsn, "orders", *DEFINITION.migration_dirs())
    pool = await connect_pool(settings.pg_dsn, "orders", 2)
    try:
        yield ShopRegistry(pool)
    finally:
        await pool.close()


async def onboard(settings: Settings, shop_id: str, currency: str, skus: list[str], *,
                  signing: bool = False, rate_per_second: float | None = None,
                  burst: int | None = None,
                  terms: ShopTerms | None = None) -> tuple[str, str | None]:
    """Register a shop (if new) and the SKUs; returns a new API key and the signing secret.
    With `terms`, the shop has them (a shop registered before gets them too)."""
    async with registry(settings) as shops:
        existing = {s.shop_id: s for s in await shops.shops()}
        shop = existing.get(shop_id) or await shops.add_shop(
            shop_id, shop_id, currency, signing=signing, rate_per_second=rate_per_second,
            burst=burst, terms=terms or INDONESIA)
        if terms is not None and shop.terms != terms:
            shop = await shops.set_terms(shop_id, terms)
        await shops.add_skus(skus)
        _, key = await shops.create_key(shop_id)
        return key, shop.signing_secret
