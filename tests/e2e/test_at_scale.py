"""The flow under load: no oversell when 1,000 orders race for 100 units, and a mixed run of
1,000 orders over every branch after which the invariant checker finds nothing."""

from __future__ import annotations

import asyncio
import random

import httpx

from alur.simulators.customers import (
    CATALOGUE,
    CURRENCY,
    SCARCE,
    STORES,
    Customers,
    order_body,
    plan,
)
from alur.tools.invariants import check
from tests.e2e.helpers import auth, key_for, new_sku, set_stock, wait_until
from tests.e2e.helpers import order_body as simple_order

RACERS, UNITS, MIXED = 1000, 100, 1000


async def test_a_thousand_orders_race_for_a_hundred_units(services, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, UNITS)])
    worst = {"over": 0}
    watching = True

    async def watch_stock() -> None:  # the constraint, observed from outside while it runs
        while watching:
            row = await db.fetchrow("SELECT on_hand, reserved FROM inventory.stock "
                                    "WHERE sku = $1", sku)
            worst["over"] = max(worst["over"], row["reserved"] - row["on_hand"])
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_stock())
    limit = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=services.api_url, timeout=30,
                                 headers=await auth()) as api:
        async def one() -> str:
            async with limit:
                response = await api.post("/v1/orders", json=simple_order(sku))
                assert response.status_code == 202, response.text
                return str(response.json()["order_id"])

        order_ids = await asyncio.gather(*(one() for _ in range(RACERS)))

    async def all_decided() -> bool:
        return await db.fetchval(
            "SELECT count(DISTINCT stream_id) FROM inventory.events WHERE origin = 'own'"
            " AND type IN ('StockReserved', 'StockRejected') AND stream_id = ANY($1::text[])",
            order_ids) == RACERS

    await wait_until(all_decided, 180, "every racer's reservation decided")
    watching = False
    await watcher
    counts = dict(await db.fetch(
        "SELECT type, count(*) FROM inventory.events WHERE origin = 'own' AND"
        " type IN ('StockReserved', 'StockRejected') AND stream_id = ANY($1::text[])"
        " GROUP BY type", order_ids))
    assert counts == {"StockReserved": UNITS, "StockRejected": RACERS - UNITS}
    row = await db.fetchrow("SELECT on_hand, reserved FROM inventory.stock WHERE sku = $1", sku)
    committed = UNITS - row["on_hand"]  # shipped units left the shelf
    assert committed + row["reserved"] == UNITS and row["reserved"] <= row["on_hand"]
    assert worst["over"] <= 0
    assert await db.fetchval("SELECT count(*) FROM inventory.audit WHERE outcome ="
                             " 'dead_lettered' AND order_id = ANY($1::text[])", order_ids) == 0


async def test_a_mixed_run_over_every_branch_keeps_every_invariant(services, db) -> None:
    await set_stock(services, [(loc, sku, 100_000) for loc in ("WH-1", *STORES)
                               for sku, _ in CATALOGUE] + [("WH-1", SCARCE[0], 20)])
    rng = random.Random(2026)
    shops = ("shop-mix-1", "shop-mix-2")
    keys = {shop: await key_for(shop, CURRENCY) for shop in shops}
    async with httpx.AsyncClient(base_url=services.api_url, timeout=30) as api, \
            httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as gateway:
        customers = Customers(api, gateway, keys)
        limit = asyncio.Semaphore(40)

        async def one(shop: str) -> None:
            p = plan(rng)
            body = order_body(shop, p, rng)
            async with limit:
                response = await api.post("/v1/orders", json=body,
                                          headers={"Authorization": f"Bearer {keys[shop]}"})
            assert response.status_code == 202, response.text
            customers.add(response.json()["order_id"], shop, p, body)

        await asyncio.gather(*(one(shops[i % 2]) for i in range(MIXED)))
        left = await customers.act_until_done(db, 300, lambda done: None)
    assert not left, "\n".join([f"{len(left)} orders did not run their course (up to 20 shown):",
                                 *await customers.explain(db, left)])
    order_ids = list(customers.orders)
    async with db.acquire() as conn:
        report = await check(conn, order_ids)
    assert report.orders == MIXED
    assert report.violations == [] and report.unsettled == []
    seen = {r["type"] for r in await db.fetch(
        "SELECT DISTINCT type FROM orders.events WHERE stream_id = ANY($1::text[])", order_ids)}
    assert {"PaymentPending", "PaymentRequested", "PaymentExpired", "PaymentFailed",
            "StockRejected", "PickedUp", "PickupConfirmed", "DeliveryFailed", "OrderReturned",
            "RefundIssued",
            "LoyaltyPointsReversed", "ReviewSubmitted", "OrderCompleted"} <= seen
