"""The sales projection's set-based fold (`sales_fold`) gives what applying the events one by one
gives, stated here in Python: whether the events arrive one INSERT each, all in one INSERT
(the statement trigger), or as a replay's batches cut anywhere. And a Kafka replay's facts,
taken from validated events in Python, are the ones the server takes out of their JSON."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from alur.runtime.db import CORE_SQL, migrate
from alur.settings import Settings
from schemas import caused_by, decode, encode, first_event
from schemas.examples import PAYLOADS
from schemas.orders import OrderLine, OrderPlacedData
from services.orders.bootstrap import DEFINITION
from services.orders.sales import COLUMNS, Fact, LineFact, facts_of

T0 = datetime(2026, 11, 11, 11, 11, tzinfo=UTC)


def event(kind: str, order: str, minute: int, data: dict[str, Any] | None = None,
          shop: str = "shop-1", channel: str = "online", current: bool = False
          ) -> dict[str, Any]:
    """A stored body: as written now (`current`), or with the attribute names of before."""
    names = ("shopid", "correlationid") if current else ("shop_id", "correlation_id")
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "alur/test", "type": kind,
            "time": (T0 + timedelta(minutes=minute)).isoformat(), "subject": order,
            names[0]: shop, "channel": channel, names[1]: str(uuid.uuid4()),
            "data": data or {}}


def placed(order: str, minute: int, lines: list[tuple[str, int, int]], method: str = "card",
           tax: int | None = None, current: bool = False, **envelope: str) -> dict[str, Any]:
    """An OrderPlaced as written now (version 2, tax lines), or a version 1 one (one tax)."""
    total = sum(q * p for _, q, p in lines)
    data: dict[str, Any] = {
        "payment": {"method": method}, "total": {"amount": total, "currency": "IDR"},
        "lines": [{"sku": s, "quantity": q, "unit_price": {"amount": p, "currency": "IDR"}}
                  for s, q, p in lines]}
    line = None if tax is None else {"name": "PPN", "rate_bp": 1100, "included": True,
                                     "amount": {"amount": tax, "currency": "IDR"}}
    if current:
        data["taxes"] = [] if line is None else [line]
    elif line is not None:
        data["tax"] = line
    body = event("OrderPlaced", order, minute, data, current=current, **envelope)
    return body | ({"schemaversion": 2} if current else {})


def history() -> list[dict[str, Any]]:
    """Orders through every kind the projection folds, with the awkward cases: an order whose
    first event is not its OrderPlaced, a second event of a kind (the last wins), a second
    OrderPlaced (its row columns win, its lines do not), a line repeated in one order, and
    events the projection does not fold."""
    a, b, c, d = (f"ord_{uuid.uuid4().hex}" for _ in range(4))
    return [
        placed(a, 0, [("SKU-1", 2, 15000), ("SKU-2", 1, 99000)], tax=12784, current=True),
        event("PaymentConfirmed", a, 1, current=True),
        event("ShipmentCreated", a, 2, {"tracking": "x"}),
        event("Delivered", a, 3),
        event("ReviewSubmitted", a, 4, {"rating": 2}),
        event("ReviewSubmitted", a, 5, {"rating": 5}),
        event("OrderCompleted", a, 6),
        event("OrderReturned", a, 7),
        event("PaymentConfirmed", b, 1, shop="shop-2", channel="pos"),
        placed(b, 0, [("SKU-3", 1, 5000)], method="qris", shop="shop-2", channel="pos"),
        event("PaymentConfirmed", b, 9, shop="shop-2", channel="pos"),
        placed(c, 0, [("SKU-1", 1, 15000), ("SKU-1", 3, 14000)]),
        event("OrderCancelled", c, 2, {"reason": "customer"}),
        event("OrderCancelled", c, 3, {"reason": "payment_expired"}),
        placed(d, 0, [("SKU-4", 1, 1000)], method="va", tax=99),
        placed(d, 5, [("SKU-4", 9, 2000), ("SKU-5", 1, 3000)], method="cod"),
    ]


def tax_in(placed_data: dict[str, Any]) -> int | None:
    """An OrderPlaced's tax: its tax lines' sum (version 2), or its one tax (version 1)."""
    if "taxes" in placed_data:
        taxes = placed_data["taxes"]
        return sum(t["amount"]["amount"] for t in taxes) if taxes else None
    return (placed_data.get("tax") or {}).get("amount", {}).get("amount")


def one_by_one(events: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]],
                                                         dict[tuple[str, str], tuple[int, int]]]:
    """The projection's meaning: each event sets its own columns, in order."""
    rows: dict[str, dict[str, Any]] = {}
    lines: dict[tuple[str, str], tuple[int, int]] = {}
    for e in events:
        kind, oid, at, d = e["type"], e["subject"], datetime.fromisoformat(e["time"]), e["data"]
        if kind not in {"OrderPlaced", "PaymentConfirmed", "Delivered", "OrderCompleted",
                        "OrderCancelled", "OrderReturned", "ReviewSubmitted"}:
            continue
        row = rows.setdefault(oid, dict.fromkeys(COLUMNS) | {
            "order_id": oid, "shop_id": e.get("shopid", e.get("shop_id")),
            "channel": e["channel"]})
        if kind == "OrderPlaced":
            row.update(payment_method=d["payment"]["method"], currency=d["total"]["currency"],
                       total_amount=d["total"]["amount"], placed_at=at,
                       tax_amount=tax_in(d))
            for line in d["lines"]:
                lines.setdefault((oid, line["sku"]), (
                    line["quantity"], line["quantity"] * line["unit_price"]["amount"]))
        elif kind == "OrderCancelled":
            row.update(cancelled_at=at, cancel_reason=d["reason"])
        elif kind == "ReviewSubmitted":
            row.update(rating=d["rating"], reviewed_at=at)
        else:
            column = {"PaymentConfirmed": "paid_at", "Delivered": "delivered_at",
                      "OrderCompleted": "completed_at", "OrderReturned": "returned_at"}[kind]
            row[column] = at
    return rows, lines


@pytest.fixture
async def orders_db(infra: Settings) -> AsyncIterator[asyncpg.Connection]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    assert DEFINITION.migrations is not None
    await migrate(infra.pg_dsn, schema, CORE_SQL, DEFINITION.migrations)
    conn = await asyncpg.connect(infra.pg_dsn, server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def projected(conn: asyncpg.Connection) -> tuple[dict[str, dict[str, Any]],
                                                       dict[tuple[str, str], tuple[int, int]]]:
    rows = {r["order_id"]: {c: r[c] for c in COLUMNS}
            for r in await conn.fetch("SELECT * FROM sales_orders")}
    lines = {(r["order_id"], r["sku"]): (r["quantity"], r["amount"])
             for r in await conn.fetch("SELECT * FROM sales_lines")}
    return rows, lines


async def record(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
    """Record events in the event store in one INSERT, versions in each order's stream."""
    versions = [1 + await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1",
                                        e["subject"]) for e in events]
    seen: dict[str, int] = {}
    for i, e in enumerate(events):  # several events of one stream in one statement
        seen[e["subject"]] = seen.get(e["subject"], versions[i] - 1) + 1
        versions[i] = seen[e["subject"]]
    await conn.execute(
        "INSERT INTO events (stream_id, version, event_id, type, origin, body) "
        "SELECT s, v, i, t, 'own', b FROM unnest($1::text[], $2::int[], $3::uuid[], $4::text[],"
        " $5::jsonb[]) AS x(s, v, i, t, b)",
        [e["subject"] for e in events], versions, [e["id"] for e in events],
        [e["type"] for e in events], [json.dumps(e) for e in events])


async def clear(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE sales_orders, sales_lines, events")


async def test_the_set_based_fold_is_the_one_by_one_fold_however_the_events_are_cut(
        orders_db: asyncpg.Connection) -> None:
    events = history()
    expected = one_by_one(events)
    assert len(expected[0]) == 4 and len(expected[1]) == 6  # the history is what it says

    for e in events:  # the live trigger, one event a statement
        await record(orders_db, [e])
    assert await projected(orders_db) == expected

    await clear(orders_db)  # the live trigger, one flush of everything
    await record(orders_db, events)
    assert await projected(orders_db) == expected

    await clear(orders_db)  # the live trigger, flushes cut at random
    rng = random.Random(15)
    at = 0
    while at < len(events):
        size = rng.randint(1, 5)
        await record(orders_db, events[at:at + size])
        at += size
    assert await projected(orders_db) == expected

    for cut in range(len(events) + 1):  # a replay's batches, cut at every place
        await clear(orders_db)
        for part in (events[:cut], events[cut:]):
            await orders_db.execute("SELECT sales_fold($1::jsonb[])",
                                    [json.dumps(e) for e in part])
        assert await projected(orders_db) == expected, cut


async def test_an_insert_with_no_folded_event_changes_nothing(
        orders_db: asyncpg.Connection) -> None:
    order = f"ord_{uuid.uuid4().hex}"
    await record(orders_db, [event("ShipmentCreated", order, 0), event("Shipped", order, 1)])
    assert await projected(orders_db) == ({}, {})
    assert await orders_db.fetchval("SELECT sales_fold('{}'::jsonb[])") == 0


async def test_the_facts_of_a_validated_event_are_the_facts_the_server_takes_out_of_its_json(
        orders_db: asyncpg.Connection) -> None:
    order = f"ord_{uuid.uuid4().hex}"
    placed_data = PAYLOADS["OrderPlaced"]
    assert isinstance(placed_data, OrderPlacedData)
    two_lines = placed_data.model_copy(update={"order_id": order, "lines": [
        placed_data.lines[0], OrderLine(sku="SKU-TWO", quantity=3,
                                        unit_price=placed_data.lines[0].unit_price)]})
    placed = first_event(two_lines, source="alur/test", subject=order, shop_id="shop-9",
                         channel="marketplace")
    events = [placed]
    for kind in ("PaymentConfirmed", "ShipmentCreated", "Delivered", "ReviewSubmitted",
                 "OrderCompleted", "OrderReturned", "OrderCancelled"):
        payload = PAYLOADS[kind]
        if "order_id" in type(payload).model_fields:
            payload = payload.model_copy(update={"order_id": order})
        events.append(caused_by(events[-1], payload, source="alur/test"))
    bodies = [encode(e).decode() for e in events]

    lines: list[LineFact] = []
    facts: list[Fact] = [facts_of(decode(b), lines) for b in bodies
                         if decode(b).type != "ShipmentCreated"]  # not folded
    on_server = await orders_db.fetchrow("SELECT * FROM sales_facts($1::jsonb[])", bodies)
    assert [tuple(f) for f in on_server["facts"]] == facts
    assert [tuple(line) for line in on_server["lines"]] == lines
    assert len(facts) == 7 and len(lines) == 2 and facts[0][5:8] == (
        placed_data.payment.method, placed_data.total.currency, placed_data.total.amount)
