"""The customers projection rebuilt by replay: `alur replay customers`.

The projection is SQL (migrations/106_customers.sql): `customers_fold` folds event envelopes
into `customer_identifiers`, `customer_orders` and `loyalty_ledger`, and the `projections`
trigger keeps the live tables in step with the orders event store. A replay folds the same
events into tables of schema `customers_rebuild` (its session puts that schema first on the
search_path), from the event store or from the `orders` topic (every event the projection
folds is published there, keyed by order), for every shop or one, and compares the rebuild
with the live rows. Only `--swap` writes live tables, and only from the event store: it
rebuilds and replaces the shop's rows in one transaction that holds the live tables locked
against the trigger, so no event slips between the read and the swap. Folding is idempotent
(ON CONFLICT DO NOTHING on each row's key), so a record the relay published twice counts once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import asyncpg

from alur.runtime.slice import STORED_SHOP
from alur.runtime.topics import records
from schemas import DecodeError, decode
from services.orders.sales import SCHEMA, _peek

REBUILD = "customers_rebuild"
# Each table with the key a row is compared by and the rows of one shop.
TABLES: dict[str, str] = {
    "customer_identifiers": "shop_id = $1",
    "customer_orders": "shop_id = $1",
    "loyalty_ledger": "order_id IN (SELECT order_id FROM {schema}.customer_orders"
                      " WHERE shop_id = $1)",
}
STORE_CHUNK = 2000  # orders folded by one statement


@dataclass
class TableDiff:
    same: int
    only_live: int
    only_rebuilt: int


@dataclass
class CustomersComparison:
    events_read: int
    tables: dict[str, TableDiff] = field(default_factory=dict)
    swapped: bool = False

    @property
    def equal(self) -> bool:
        return all(not (d.only_live or d.only_rebuilt) for d in self.tables.values())


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


async def _fresh(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {REBUILD} CASCADE")
    await conn.execute(f"CREATE SCHEMA {REBUILD}")
    for table in TABLES:
        await conn.execute(
            f"CREATE TABLE {REBUILD}.{table} (LIKE {SCHEMA}.{table} INCLUDING ALL)")


async def _fold_store(conn: asyncpg.Connection, shop: str | None, progress: bool) -> int:
    ids = [r["stream_id"] for r in await conn.fetch(
        f"SELECT stream_id FROM {SCHEMA}.events WHERE type = 'OrderPlaced'"
        f" AND ($1::text IS NULL OR {STORED_SHOP} = $1) ORDER BY stream_id", shop)]
    read = 0
    for at in range(0, len(ids), STORE_CHUNK):
        chunk = ids[at:at + STORE_CHUNK]
        read += await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = ANY($1::text[])"
            " AND type = ANY (customers_event_types())", chunk)
        await conn.execute(
            "SELECT customers_fold(array_agg(body ORDER BY stream_id, version)) FROM events"
            " WHERE stream_id = ANY($1::text[]) AND type = ANY (customers_event_types())", chunk)
        _say(progress, f"  folded the events of {min(at + STORE_CHUNK, len(ids))} of "
                       f"{len(ids)} orders")
    return read


async def _fold_kafka(conn: asyncpg.Connection, bootstrap: str, shop: str | None,
                      progress: bool) -> int:
    wanted = set(await conn.fetchval("SELECT customers_event_types()"))
    read = 0
    async for batch in records(bootstrap, ("orders",), progress=progress):
        bodies: list[str] = []
        for record in batch:
            if record.value is None or _peek(record.value)[0] not in wanted:
                continue
            try:
                event = decode(record.value)
            except DecodeError:
                continue  # not an event: nothing the live projection folded either
            if shop is None or event.shop_id == shop:
                bodies.append(record.value.decode())
        if bodies:
            await conn.execute("SELECT customers_fold($1::text[]::jsonb[])", bodies)
            read += len(bodies)
    return read


async def _compare(conn: asyncpg.Connection, shop: str | None) -> dict[str, TableDiff]:
    out: dict[str, TableDiff] = {}
    for table, of_shop in TABLES.items():
        def rows(schema: str, table: str = table, of_shop: str = of_shop) -> str:
            where = of_shop.format(schema=schema) if shop is not None else "$1::text IS NULL"
            return f"SELECT * FROM {schema}.{table} WHERE {where}"

        live, rebuilt = rows(SCHEMA), rows(REBUILD)
        only_live = await conn.fetchval(f"SELECT count(*) FROM ({live} EXCEPT {rebuilt}) x",
                                        shop)
        only_rebuilt = await conn.fetchval(
            f"SELECT count(*) FROM ({rebuilt} EXCEPT {live}) x", shop)
        same = await conn.fetchval(f"SELECT count(*) FROM ({live} INTERSECT {rebuilt}) x",
                                   shop)
        out[table] = TableDiff(same, only_live, only_rebuilt)
    return out


async def replay(dsn: str, shop: str | None = None, *, source: str = "store",
                 bootstrap: str = "", swap: bool = False,
                 progress: bool = True) -> CustomersComparison:
    """Rebuild the customers projection (of one shop, or all) and compare it with the live
    tables; with `swap`, replace the live rows by the rebuild (from the event store only)."""
    if swap and source != "store":
        raise ValueError("--swap rebuilds from the event store (--from store): the topic may "
                         "lag behind the live tables")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f"{REBUILD},{SCHEMA}"})
    try:
        await _fresh(conn)
        if not swap:
            _say(progress, f"replaying customers from {source} into {REBUILD} ...")
            read = await (_fold_store(conn, shop, progress) if source == "store" else
                          _fold_kafka(conn, bootstrap, shop, progress))
            return CustomersComparison(read, await _compare(conn, shop))
        async with conn.transaction():
            # The trigger's inserts wait until the swap commits; reads go on.
            await conn.execute("LOCK TABLE " + ", ".join(f"{SCHEMA}.{t}" for t in TABLES)
                               + " IN SHARE ROW EXCLUSIVE MODE")
            await conn.execute(f"LOCK TABLE {SCHEMA}.events IN SHARE MODE")
            read = await _fold_store(conn, shop, progress)
            result = CustomersComparison(read, await _compare(conn, shop), swapped=True)
            for table, of_shop in reversed(TABLES.items()):
                where = of_shop.format(schema=SCHEMA) if shop is not None else "$1::text IS NULL"
                await conn.execute(f"DELETE FROM {SCHEMA}.{table} WHERE {where}", shop)
                await conn.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM {REBUILD}.{table}")
        return result
    finally:
        await conn.close()
