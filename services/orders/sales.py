"""The sales analytics projection: rebuild by replay, compare with the live tables, swap, report.

The projection itself is SQL (migrations/100_sales.sql): `sales_apply` folds one event envelope
into `sales_orders` / `sales_lines`; a trigger keeps the live tables in step with the orders
event store. A replay folds events into the same tables of schema `orders_rebuild` instead
(its session puts that schema first on the search_path),
from the event store or from the Kafka topics, for everything or for a slice (a shop, some
orders, orders placed in a time window), and compares the result with the live rows of that
slice. Only `--swap` writes live tables, and only from the event store: it rebuilds and
replaces the slice in one transaction that holds the live tables locked, so no event slips
between the read and the swap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from alur.tools.events import Ranges, records
from alur.tools.slice import Slice, orders_in
from schemas import DecodeError, decode

SCHEMA = "orders"
REBUILD = "orders_rebuild"
TOPICS_READ = ("orders", "payments", "shipping")  # where the folded event types are published
COLUMNS = ("order_id", "shop_id", "channel", "payment_method", "currency", "total_amount",
           "placed_at", "paid_at", "delivered_at", "completed_at", "cancelled_at",
           "cancel_reason", "returned_at")


@dataclass
class Comparison:
    orders_in_slice: int
    events_read: int
    same: int
    differ: list[str] = field(default_factory=list)      # order ids whose rows differ
    only_live: list[str] = field(default_factory=list)
    only_rebuilt: list[str] = field(default_factory=list)
    swapped: bool = False

    @property
    def equal(self) -> bool:
        return not (self.differ or self.only_live or self.only_rebuilt)


class ReplayInterrupted(RuntimeError):
    """The replay stopped early (its batch budget ran out); `--resume` goes on from there."""


async def _fresh_rebuild_tables(conn: asyncpg.Connection, part: Slice,
                                ranges: Ranges | None = None) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {REBUILD} CASCADE")
    await conn.execute(f"CREATE SCHEMA {REBUILD}")
    for table in ("sales_orders", "sales_lines"):
        await conn.execute(
            f"CREATE TABLE {REBUILD}.{table} (LIKE {SCHEMA}.{table} INCLUDING ALL)")
    # Progress of a Kafka replay, committed with each folded batch, so that it can resume.
    await conn.execute(f"""
        CREATE TABLE {REBUILD}.replay_run (
            slice jsonb NOT NULL, ranges jsonb, pass integer NOT NULL DEFAULT 1,
            folded bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE {REBUILD}.replay_offsets (
            pass integer, topic text, partition integer, next_offset bigint NOT NULL,
            PRIMARY KEY (pass, topic, partition));
        CREATE TABLE {REBUILD}.replay_orders (order_id text PRIMARY KEY);""")
    await conn.execute(
        f"INSERT INTO {REBUILD}.replay_run (slice, ranges) VALUES ($1::jsonb, $2::jsonb)",
        json.dumps(part.as_json()),
        json.dumps([[t, p, a, b] for (t, p), (a, b) in ranges.items()]) if ranges else None)


async def _resumable(conn: asyncpg.Connection) -> tuple[Slice, Ranges | None]:
    """The slice and offset ranges of the interrupted Kafka replay kept in the rebuild schema."""
    try:
        row = await conn.fetchrow(f"SELECT slice, ranges FROM {REBUILD}.replay_run")
    except asyncpg.UndefinedTableError:
        row = None
    if row is None:
        raise ValueError("no interrupted Kafka replay to resume")
    ranges = ({(t, p): (a, b) for t, p, a, b in json.loads(row["ranges"])}
              if row["ranges"] else None)
    return Slice.from_json(json.loads(row["slice"])), ranges


async def _fold_from_store(conn: asyncpg.Connection, ids: list[str]) -> int:
    folded = await conn.fetchval(
        "SELECT count(*) FROM (SELECT sales_apply(body) FROM events "
        "WHERE stream_id = ANY($1::text[]) AND type = ANY (sales_event_types())) applied", ids)
    return int(folded)


async def _fold_from_kafka(conn: asyncpg.Connection, bootstrap: str, part: Slice,
                           progress: bool, budget: int | None,
                           ranges: Ranges | None) -> tuple[list[str], int]:
    """Two passes over the topics from `since`: the slice's OrderPlaced events, then the rest of
    its orders' events. Each record the projection needs is validated as the services validate
    it (a record they refused is skipped, as they dead-lettered it), and a record the orders
    service refused or dead-lettered, as its audit log says (an event about an unknown order,
    or impossible in the order's state), is skipped too; the others are only peeked at.
    Batches are copied to the server, where `sales_apply` folds them; each batch commits with
    its offsets, so an interrupted replay resumes where it stopped (a fold twice is harmless:
    it is idempotent). With `ranges`, only the records in those offset ranges are read, in
    both passes."""
    folded_types = set(await conn.fetchval("SELECT sales_event_types()"))
    not_taken = {(r["topic"], r["partition"], r["offset"]) for r in await conn.fetch(
        'SELECT topic, partition, "offset" FROM orders.audit WHERE direction = \'in\''
        " AND outcome IN ('refused', 'dead_lettered') AND topic = ANY($1::text[])",
        list(TOPICS_READ))}
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS replay_batch (body jsonb NOT NULL)")
    batches = 0
    for pass_no, topics in ((1, ("orders",)), (2, TOPICS_READ)):
        if await conn.fetchval(f"SELECT pass FROM {REBUILD}.replay_run") > pass_no:
            continue
        wanted = {r[0] for r in await conn.fetch(f"SELECT order_id FROM {REBUILD}.replay_orders")}
        resume = {(r["topic"], r["partition"]): r["next_offset"] for r in await conn.fetch(
            f"SELECT topic, partition, next_offset FROM {REBUILD}.replay_offsets "
            "WHERE pass = $1", pass_no)}
        async for batch in records(bootstrap, topics, since=part.since, progress=progress,
                                   resume=resume, ranges=ranges):
            if budget is not None and batches >= budget:
                raise ReplayInterrupted(f"stopped after {batches} batches")
            rows, found = [], []
            for r in batch:
                if (r.topic, r.partition, r.offset) in not_taken:
                    continue
                peek = _peek(r.value)
                kind = peek.get("type")
                if pass_no == 1:
                    if kind == "OrderPlaced" and _in_slice(peek, part) and _valid(r.value):
                        found.append((peek["subject"],))
                        rows.append((r.value.decode(),))
                elif (kind != "OrderPlaced" and kind in folded_types
                      and peek.get("subject") in wanted and _valid(r.value)):
                    rows.append((r.value.decode(),))
            positions = {}
            for r in batch:
                positions[(r.topic, r.partition)] = r.offset + 1
            async with conn.transaction():
                await _fold(conn, rows)
                await conn.executemany(f"INSERT INTO {REBUILD}.replay_orders VALUES ($1) "
                                       "ON CONFLICT DO NOTHING", found)
                await conn.executemany(
                    f"INSERT INTO {REBUILD}.replay_offsets VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (pass, topic, partition) DO UPDATE SET next_offset = $4",
                    [(pass_no, t, p, o) for (t, p), o in positions.items()])
                await conn.execute(f"UPDATE {REBUILD}.replay_run SET folded = folded + $1",
                                   len(rows))
            wanted.update(f[0] for f in found)
            batches += 1
        await conn.execute(f"UPDATE {REBUILD}.replay_run SET pass = $1", pass_no + 1)
    ids = [r[0] for r in await conn.fetch(f"SELECT order_id FROM {REBUILD}.replay_orders")]
    return sorted(ids), int(await conn.fetchval(f"SELECT folded FROM {REBUILD}.replay_run"))


async def _fold(conn: asyncpg.Connection, rows: list[tuple[str]]) -> int:
    """Fold a batch of event bodies into the tables the search_path names first."""
    if rows:
        await conn.copy_records_to_table("replay_batch", records=rows, columns=["body"])
        await conn.execute("SELECT count(*) FROM (SELECT sales_apply(body) "
                           "FROM replay_batch) applied")
        await conn.execute("TRUNCATE replay_batch")
    return len(rows)


def _peek(value: bytes | None) -> dict[str, Any]:
    """The envelope's fields as plain JSON, or {} for bytes that are not a JSON object (or a
    record with no value at all)."""
    if value is None:
        return {}
    try:
        body = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _valid(value: bytes | None) -> bool:
    try:
        decode(value)
    except DecodeError:
        return False
    return True


def _in_slice(placed: dict[str, Any], part: Slice) -> bool:
    if part.shop is not None and placed.get("shop_id") != part.shop:
        return False
    if part.orders and placed.get("subject") not in part.orders:
        return False
    if part.since is None and part.until is None:
        return True
    try:
        at = datetime.fromisoformat(str(placed.get("time")))
    except ValueError:
        return False
    return ((part.since is None or at >= part.since)
            and (part.until is None or at < part.until))


async def _compare(conn: asyncpg.Connection, ids: list[str], events: int) -> Comparison:
    cols = ", ".join(COLUMNS)
    async def rows(schema: str) -> dict[str, tuple[Any, ...]]:
        return {r["order_id"]: tuple(r) for r in await conn.fetch(
            f"SELECT {cols} FROM {schema}.sales_orders WHERE order_id = ANY($1::text[])", ids)}

    async def lines(schema: str) -> dict[tuple[str, str], tuple[Any, ...]]:
        return {(r[0], r[1]): tuple(r) for r in await conn.fetch(
            f"SELECT order_id, sku, quantity, amount FROM {schema}.sales_lines "
            "WHERE order_id = ANY($1::text[])", ids)}

    live, rebuilt = await rows(SCHEMA), await rows(REBUILD)
    lines_live, lines_rebuilt = await lines(SCHEMA), await lines(REBUILD)
    both = live.keys() & rebuilt.keys()
    differ = sorted({o for o in both if live[o] != rebuilt[o]} |
                    ({k[0] for k in lines_live.keys() ^ lines_rebuilt.keys()} & both) |
                    {k[0] for k in lines_live.keys() & lines_rebuilt.keys()
                     if lines_live[k] != lines_rebuilt[k]})
    return Comparison(
        orders_in_slice=len(ids), events_read=events,
        same=len(both) - len(differ),
        differ=differ, only_live=sorted(live.keys() - rebuilt.keys()),
        only_rebuilt=sorted(rebuilt.keys() - live.keys()))


async def replay(dsn: str, part: Slice, *, source: str = "store", bootstrap: str = "",
                 swap: bool = False, progress: bool = False, resume: bool = False,
                 budget: int | None = None, ranges: Ranges | None = None) -> Comparison:
    """Rebuild the slice into the rebuild tables and compare; with `swap`, replace it live.

    A Kafka replay can be interrupted (Ctrl-C, a crash, or `budget` batches) and resumed."""
    if swap and source != "store":
        raise ValueError("--swap rebuilds from the event store only: a Kafka replay cannot hold "
                         "back the events that arrive while it reads")
    if (resume or budget is not None) and source != "kafka":
        raise ValueError("only a Kafka replay is resumable (a store replay is one statement)")
    if ranges and source != "kafka":
        raise ValueError("offset ranges are Kafka's: replay them with --from kafka")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f"{REBUILD}, {SCHEMA}"})
    try:
        if resume:
            stored, stored_ranges = await _resumable(conn)
            if (not part.everything and part != stored) or (ranges and ranges != stored_ranges):
                raise ValueError(f"the interrupted replay was of {stored.as_json()}; resume "
                                 "it without a slice, or start a new one")
            part, ranges = stored, stored_ranges
        else:
            await _fresh_rebuild_tables(conn, part, ranges)
        if source == "kafka":
            ids, events = await _fold_from_kafka(conn, bootstrap, part, progress, budget, ranges)
            return await _compare(conn, ids, events)
        if not swap:
            ids = await orders_in(conn, part, dated_by="type = 'OrderPlaced'")
            return await _compare(conn, ids, await _fold_from_store(conn, ids))
        async with conn.transaction():
            # Writers (the trigger) wait from here to the commit: the read below sees every
            # event committed before, and none can land in between.
            await conn.execute(f"LOCK TABLE {SCHEMA}.sales_orders, {SCHEMA}.sales_lines "
                               "IN EXCLUSIVE MODE")
            ids = await orders_in(conn, part, dated_by="type = 'OrderPlaced'")
            result = await _compare(conn, ids, await _fold_from_store(conn, ids))
            for table in ("sales_lines", "sales_orders"):
                if part.everything:
                    await conn.execute(f"DELETE FROM {SCHEMA}.{table}")
                else:
                    await conn.execute(f"DELETE FROM {SCHEMA}.{table} WHERE order_id = ANY($1)",
                                       ids)
            for table in ("sales_orders", "sales_lines"):
                await conn.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM {REBUILD}.{table}")
            result.swapped = True
            return result
    finally:
        await conn.close()
