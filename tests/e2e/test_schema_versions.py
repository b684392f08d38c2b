"""An OrderPlaced recorded before version 2 and the CloudEvents names, as the orders service
of before wrote it (its event store and its outbox, so the relay publishes those very bytes),
goes through the flow of today, and is then traced, replayed and re-decided."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from alur.runtime.slice import Slice
from alur.tools.redecide import redecide
from schemas import decode
from schemas.tools import sample_path
from tests.e2e.helpers import DEFAULT_SHOP, all_delivered, alur, new_sku, set_stock, wait_until


def version_1(order_id: str, sku: str) -> dict[str, Any]:
    """The committed version 1 sample, made this order's: old attribute names, one `tax`."""
    body = json.loads(sample_path("OrderPlaced", 1).read_text())
    assert body["schema_version"] == 1 and "shopid" not in body
    event_id = str(uuid.uuid4())
    body |= {"id": event_id, "correlation_id": event_id, "subject": order_id,
             "shop_id": DEFAULT_SHOP, "time": datetime.now(UTC).isoformat()}
    body["data"] |= {"order_id": order_id, "tax": {
        "name": "IVA", "rate_bp": 2300, "included": True,
        "amount": {"amount": 935, "currency": "EUR"}}}
    body["data"]["lines"][0]["sku"] = sku
    return body


async def record_as_before(db: asyncpg.Pool, body: dict[str, Any]) -> None:
    raw = json.dumps(body)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL search_path TO orders")  # as the service's connections
        await conn.execute(
            "INSERT INTO orders.events (stream_id, version, event_id, type, origin, body)"
            " VALUES ($1, 1, $2, 'OrderPlaced', 'own', $3::jsonb)",
            body["subject"], uuid.UUID(body["id"]), raw)
        await conn.execute(
            "INSERT INTO orders.outbox (event_id, topic, key, value, type)"
            " VALUES ($1, 'orders', $2, $3, 'OrderPlaced')",
            uuid.UUID(body["id"]), body["subject"].encode(), raw.encode())


async def test_a_version_1_order_is_served_traced_replayed_and_re_decided(
        services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    order_id = f"ord_v1_{uuid.uuid4().hex[:12]}"
    await record_as_before(db, version_1(order_id, sku))

    # Every service reads it (each upcasts it), and the order goes all the way.
    await wait_until(lambda: all_delivered(db, [order_id]), 60, "the v1 order to be delivered")
    view = (await api.get(f"/v1/orders/{order_id}")).json()
    assert view["status"] == "delivered" and view["total_amount"] == 4998

    # The order service's own store still holds the v1 body; read back, it is version 2.
    stored = await db.fetchval("SELECT body::text FROM orders.events WHERE stream_id = $1"
                               " AND version = 1", order_id)
    assert json.loads(stored)["schema_version"] == 1
    placed = decode(stored)
    assert placed.schema_version == 2 and placed.shop_id == DEFAULT_SHOP
    assert [t.amount.amount for t in placed.data.taxes] == [935]

    # Traced, listed and replayed into the sales projection, with its tax.
    trace = alur(services, "trace", order_id)
    assert trace.returncode == 0 and "OrderPlaced" in trace.stdout, trace.stderr
    listed = alur(services, "events", "--json", "--order", order_id, "--type", "OrderPlaced")
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert line["event"]["schemaversion"] == 2 and line["event"]["shopid"] == DEFAULT_SHOP
    assert await db.fetchval("SELECT tax_amount FROM orders.sales_orders WHERE order_id = $1",
                             order_id) == 935  # the live projection read the v1 body's tax
    for source in ("kafka", "store"):  # rebuilt from the topic and from the store: the same
        replayed = alur(services, "replay", "sales", "--from", source, "--order", order_id,
                        "--json")
        assert replayed.returncode == 0, replayed.stderr
        verdict = json.loads(replayed.stdout)
        assert verdict["equal"] and verdict["same"] == 1, (source, verdict)

    # Every service decides its past the same way again from it.
    for service in ("orders", "inventory", "payments", "shipping", "notifications"):
        report = await redecide(services.pg_dsn, service, Slice(orders=(order_id,)),
                                bootstrap_servers=services.kafka_bootstrap)
        assert report.orders == 1 and report.events_redecided > 0, service
        assert report.differences == [], (service, report.differences)
