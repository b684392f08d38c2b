"""The sales analytics projection: rebuild by replay, compare with the live tables, swap, report.

The projection itself is SQL (its functions as they are now in migrations/R_sales_facts.sql,
their types and trigger in 104_sales_fold.sql): `sales_fold` folds a set of event
envelopes into `sales_orders` / `sales_lines` in one statement; a statement-level trigger keeps
the live tables in step with the orders event store. A replay folds events into the same tables
of schema `orders_rebuild` instead (its session puts that schema first on the search_path),
from the event store or from the Kafka topics, for everything or for a slice (a shop, some
orders, orders placed in a time window), and compares the result with the live rows of that
slice. Only `--swap` writes live tables, and only from the event store: it rebuilds and
replaces the slice in one transaction that holds the live tables locked, so no event slips
between the read and the swap.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from alur.runtime.slice import Slice, orders_in
from alur.runtime.topics import Ranges, records
from schemas import DecodeError, Event, decode
from schemas.orders import OrderCancelled, OrderPlaced, ReviewSubmitted

SCHEMA = "orders"
REBUILD = "orders_rebuild"
TOPICS_READ = ("orders", "payments", "shipping")  # where the folded event types are published
COLUMNS = ("order_id", "shop_id", "channel", "payment_method", "currency", "total_amount",
           "tax_amount", "placed_at", "paid_at", "delivered_at", "completed_at", "cancelled_at",
           "cancel_reason", "returned_at", "rating", "reviewed_at")
STORE_CHUNK = 2000  # orders folded by one statement of a replay from the event store


class _Peek(TypedDict, total=False):
    """What a replay reads of a record it may not need: the envelope's type and subject."""

    type: str
    subject: str


_peeker: TypeAdapter[_Peek] = TypeAdapter(_Peek)


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
    folded = 0
    for at in range(0, len(ids), STORE_CHUNK):
        folded += await conn.fetchval(
            "SELECT coalesce(sales_fold(array_agg(body ORDER BY stream_id, version)), 0) "
            "FROM events WHERE stream_id = ANY($1::text[]) AND type = ANY (sales_event_types())",
            ids[at:at + STORE_CHUNK])
    return folded


async def _fold_from_kafka(conn: asyncpg.Connection, bootstrap: str, part: Slice,
                           progress: bool, budget: int | None,
                           ranges: Ranges | None) -> tuple[list[str], int]:
    """Two passes over the topics from `since`: the orders topic (the slice's OrderPlaced events
    and what that topic says of those orders later), then the other topics. Each record the
    projection needs is validated as the services validate it (a record they refused is
    skipped, as they dead-lettered it), and a record the orders service refused or
    dead-lettered, as its audit log says (an event about an unknown order, or impossible in
    the order's state), is skipped too; the others are only peeked at. Each batch goes to the
    server as its events' facts (the fields the projection reads, taken from the validated
    events), which `sales_fold_facts` folds; each batch commits with its offsets, so an
    interrupted replay resumes where it stopped (a fold twice is harmless: it is idempotent).
    The server folds a batch while the next one is read and checked. With `ranges`, only the
    records in those offset ranges are read, in both passes."""
    folded_types = set(await conn.fetchval("SELECT sales_event_types()"))
    not_taken = {(r["topic"], r["partition"], r["offset"]) for r in await conn.fetch(
        'SELECT topic, partition, "offset" FROM orders.audit WHERE direction = \'in\''
        " AND outcome IN ('refused', 'dead_lettered') AND topic = ANY($1::text[])",
        list(TOPICS_READ))}
    batches = 0
    # The orders topic holds every OrderPlaced, and each order's later events on that topic
    # follow it in its partition: one pass over it finds the slice's orders and folds what it
    # says of them. The second pass reads the other topics, whose events may come before
    # their OrderPlaced in reading order.
    for pass_no, topics in ((1, ("orders",)), (2, tuple(t for t in TOPICS_READ
                                                         if t != "orders"))):
        if await conn.fetchval(f"SELECT pass FROM {REBUILD}.replay_run") > pass_no:
            continue
        wanted = {r[0] for r in await conn.fetch(f"SELECT order_id FROM {REBUILD}.replay_orders")}
        resume = {(r["topic"], r["partition"]): r["next_offset"] for r in await conn.fetch(
            f"SELECT topic, partition, next_offset FROM {REBUILD}.replay_offsets "
            "WHERE pass = $1", pass_no)}
        committing: asyncio.Task[None] | None = None
        try:
            async for batch in records(bootstrap, topics, since=part.since, progress=progress,
                                       resume=resume, ranges=ranges):
                if budget is not None and batches >= budget:
                    raise ReplayInterrupted(f"stopped after {batches} batches")
                facts: list[Fact] = []
                lines: list[LineFact] = []
                found: list[str] = []
                for r in batch:
                    value = r.value
                    if value is None or (r.topic, r.partition, r.offset) in not_taken:
                        continue  # a tombstone is no event
                    kind, subject = _peek(value)
                    if kind == "OrderPlaced":
                        if pass_no != 1:
                            continue  # an order is placed on the orders topic, nowhere else
                        placed = _event(value)
                        if placed is not None and _in_slice(placed, part):
                            found.append(placed.subject)
                            wanted.add(placed.subject)
                            facts.append(facts_of(placed, lines))
                    elif kind in folded_types and subject in wanted:
                        event = _event(value)
                        if event is not None:
                            facts.append(facts_of(event, lines))
                positions = {(r.topic, r.partition): r.offset + 1 for r in batch}
                if committing is not None:
                    await committing
                committing = asyncio.create_task(
                    _commit_batch(conn, pass_no, facts, lines, found, positions))
                await asyncio.sleep(0)  # let it send the batch before reading the next one
                batches += 1
        finally:
            if committing is not None:
                await committing
        await conn.execute(f"UPDATE {REBUILD}.replay_run SET pass = $1", pass_no + 1)
    ids = [r[0] for r in await conn.fetch(f"SELECT order_id FROM {REBUILD}.replay_orders")]
    return sorted(ids), int(await conn.fetchval(f"SELECT folded FROM {REBUILD}.replay_run"))


async def _commit_batch(conn: asyncpg.Connection, pass_no: int, facts: list[Fact],
                        lines: list[LineFact], found: list[str],
                        positions: dict[tuple[str, int], int]) -> None:
    """Fold a batch (its events' facts, in order) into the tables the search_path names first,
    with the orders it found and where each partition goes on from: one statement, so one
    transaction and one round trip."""
    await conn.execute(
        f"""WITH fold AS (SELECT sales_fold_facts($1::sales_fact[], $2::sales_line_fact[]) AS n),
            found AS (INSERT INTO {REBUILD}.replay_orders SELECT unnest($3::text[])
                      ON CONFLICT DO NOTHING),
            progress AS (INSERT INTO {REBUILD}.replay_offsets
                         SELECT $4, t, p, o FROM unnest($5::text[], $6::int[], $7::bigint[])
                                AS x(t, p, o)
                         ON CONFLICT (pass, topic, partition)
                         DO UPDATE SET next_offset = excluded.next_offset)
        UPDATE {REBUILD}.replay_run SET folded = folded + (SELECT n FROM fold)""",
        facts, lines, found, pass_no, [t for t, _ in positions], [p for _, p in positions],
        list(positions.values()))


# A `sales_fact` and a `sales_line_fact` (types of migrations/104_sales_fold.sql, and
# 108_sales_tax.sql for the tax), as asyncpg sends them.
Fact = tuple[str, str, datetime, str, str, str | None, str | None, int | None, str | None,
             int | None, int | None]
LineFact = tuple[str, str, int, int]


def facts_of(event: Event, lines: list[LineFact]) -> Fact:
    """What the projection reads of a validated event, as `sales_facts` takes it out of the
    envelope; an OrderPlaced's lines are added to `lines`."""
    method = currency = reason = None
    total = rating = tax = None
    if isinstance(event, OrderPlaced):
        method, currency, total = (event.data.payment.method, event.data.total.currency,
                                   event.data.total.amount)
        taxed = event.data.tax()
        tax = None if taxed is None else taxed.amount
        lines.extend((event.subject, line.sku, line.quantity,
                      line.quantity * line.unit_price.amount) for line in event.data.lines)
    elif isinstance(event, OrderCancelled):
        reason = event.data.reason
    elif isinstance(event, ReviewSubmitted):
        rating = event.data.rating
    return (event.type, event.subject, event.time, event.shop_id, event.channel, method,
            currency, total, reason, rating, tax)


def _peek(value: bytes) -> tuple[str | None, str | None]:
    """The envelope's type and subject, read by the services' own JSON parser without
    validating the rest (a tenth of a validation), or Nones for anything else."""
    try:
        peeked = _peeker.validate_json(value)
    except (ValueError, TypeError, RecursionError):  # a ValidationError is a ValueError
        return None, None
    return peeked.get("type"), peeked.get("subject")


def _event(value: bytes) -> Event | None:
    """The event in the record as the services decode it, or None where they refused it."""
    try:
        return decode(value)
    except DecodeError:
        return None


def _in_slice(placed: Event, part: Slice) -> bool:
    if part.shop is not None and placed.shop_id != part.shop:
        return False
    if part.orders and placed.subject not in part.orders:
        return False
    return ((part.since is None or placed.time >= part.since)
            and (part.until is None or placed.time < part.until))


async def _compare(conn: asyncpg.Connection, ids: list[str], events: int) -> Comparison:
    """The slice's live rows against the rebuilt ones, on the server: only the verdicts travel.
    An order differs when its fact row does, or its lines (a line missing on one side
    included)."""
    live_row = ", ".join(f"l.{c}" for c in COLUMNS)
    rebuilt_row = ", ".join(f"r.{c}" for c in COLUMNS)
    verdict = await conn.fetchrow(f"""
        WITH ids AS (SELECT DISTINCT unnest($1::text[]) AS order_id),
        lines_differ AS (
            SELECT DISTINCT coalesce(a.order_id, b.order_id) AS order_id
              FROM (SELECT * FROM {SCHEMA}.sales_lines WHERE order_id = ANY($1::text[])) a
              FULL JOIN (SELECT * FROM {REBUILD}.sales_lines WHERE order_id = ANY($1::text[])) b
                ON a.order_id = b.order_id AND a.sku = b.sku
             WHERE (a.quantity, a.amount) IS DISTINCT FROM (b.quantity, b.amount)),
        o AS (
            SELECT ids.order_id, l.order_id IS NOT NULL AS live, r.order_id IS NOT NULL AS rebuilt,
                   ({live_row}) IS DISTINCT FROM ({rebuilt_row}) OR d.order_id IS NOT NULL
                       AS differs
              FROM ids LEFT JOIN {SCHEMA}.sales_orders l ON l.order_id = ids.order_id
                       LEFT JOIN {REBUILD}.sales_orders r ON r.order_id = ids.order_id
                       LEFT JOIN lines_differ d ON d.order_id = ids.order_id)
        SELECT count(*) FILTER (WHERE live AND rebuilt) AS both,
               array_agg(order_id ORDER BY order_id) FILTER (WHERE live AND rebuilt AND differs)
                   AS differ,
               array_agg(order_id ORDER BY order_id) FILTER (WHERE live AND NOT rebuilt)
                   AS only_live,
               array_agg(order_id ORDER BY order_id) FILTER (WHERE rebuilt AND NOT live)
                   AS only_rebuilt
          FROM o""", ids)
    differ = list(verdict["differ"] or [])
    return Comparison(
        orders_in_slice=len(ids), events_read=events, same=verdict["both"] - len(differ),
        differ=differ, only_live=list(verdict["only_live"] or []),
        only_rebuilt=list(verdict["only_rebuilt"] or []))


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
