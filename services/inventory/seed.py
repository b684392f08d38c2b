"""Setting stock levels from the command line and the demo (people use the admin API)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alur.runtime.db import connect_pool, migrate
from alur.settings import Settings
from services.inventory.adapters import PostgresStock
from services.inventory.bootstrap import DEFINITION
from services.inventory.domain import Site


async def set_locations(settings: Settings, sites: Mapping[str, Site]) -> None:
    """Record what each location is (warehouse or store, region, ship-from-store)."""
    await migrate(settings.pg_dsn, "inventory", *DEFINITION.migration_dirs())
    pool = await connect_pool(settings.pg_dsn, "inventory", 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            for location, site in sites.items():
                await PostgresStock.on(conn).set_location(location, site)
    finally:
        await pool.close()


async def set_stock(settings: Settings, rows: Sequence[tuple[str, str, int]]) -> None:
    """Set on-hand units for (location, sku, on_hand) rows in one transaction."""
    await migrate(settings.pg_dsn, "inventory", *DEFINITION.migration_dirs())
    pool = await connect_pool(settings.pg_dsn, "inventory", 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            stock = PostgresStock.on(conn)
            for location, sku, on_hand in rows:
                await stock.set_on_hand(location, sku, on_hand)
    finally:
        await pool.close()
