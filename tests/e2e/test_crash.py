"""SIGKILL services while orders are in flight: nothing lost, no effect happens twice."""

import asyncio
from collections import Counter

import httpx

from alur.infra import stack
from tests.e2e.helpers import (
    all_delivered,
    mails_about,
    new_sku,
    order_body,
    place,
    set_stock,
    wait_until,
)

ORDERS = 200


async def kill_and_restart(services, name: str) -> None:  # noqa: ANN001
    stack.proc(services, name).kill()
    await asyncio.to_thread(stack.start_process, services, name)


async def test_killing_inventory_and_payments_mid_flight_loses_and_duplicates_nothing(
        services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 1000)])

    async def place_all(first: int, count: int, results: list[str]) -> None:
        limit = asyncio.Semaphore(20)

        async def one() -> None:
            async with limit:
                results.append(await place(api, order_body(sku, quantity=2)))

        await asyncio.gather(*(one() for _ in range(first, first + count)))

    order_ids: list[str] = []
    await place_all(0, ORDERS // 2, order_ids)
    await kill_and_restart(services, "inventory")   # mid-flight: half placed, none settled
    await place_all(ORDERS // 2, ORDERS // 2, order_ids)

    async def some_paid() -> bool:
        return bool(await db.fetchval(
            "SELECT count(*) FROM payments.events WHERE type = 'PaymentConfirmed' "
            "AND stream_id = ANY($1::text[])", order_ids))

    await wait_until(some_paid, 60, "the first payments")
    await kill_and_restart(services, "payments")    # mid-flight: some paid, others not yet

    await wait_until(lambda: all_delivered(db, order_ids), 180, "all orders to be delivered")
    assert len(order_ids) == ORDERS

    def once_each(rows) -> None:  # noqa: ANN001
        counts = Counter(r["stream_id"] for r in rows)
        assert set(counts) == set(order_ids) and set(counts.values()) == {1}

    for service, event_type in [("inventory", "StockReserved"), ("payments", "PaymentConfirmed"),
                                ("shipping", "ShipmentCreated"), ("orders", "Delivered")]:
        once_each(await db.fetch(f"SELECT stream_id FROM {service}.events WHERE type = $1 "
                                 "AND stream_id = ANY($2::text[])", event_type, order_ids))

    async def stock_committed() -> bool:  # inventory hears of shipments on its own time
        return await db.fetchval("SELECT count(*) FROM inventory.reservation_lines "
                                 "WHERE sku = $1 AND status = 'committed'", sku) >= ORDERS

    await wait_until(stock_committed, 60, "inventory to commit every reservation")
    lines = await db.fetch("SELECT order_id, quantity, status FROM inventory.reservation_lines "
                           "WHERE sku = $1", sku)
    assert len(lines) == ORDERS and {r["status"] for r in lines} == {"committed"}
    stock = await db.fetchrow("SELECT on_hand, reserved FROM inventory.stock WHERE sku = $1", sku)
    assert (stock["on_hand"], stock["reserved"]) == (1000 - 2 * ORDERS, 0)

    async with httpx.AsyncClient(base_url=services.gateway_url) as gateway:
        for order_id in order_ids:
            charges = (await gateway.get("/v1/charges", params={"reference": order_id})).json()
            assert [c["status"] for c in charges] == ["succeeded"], order_id

    async def all_mail_in() -> bool:
        return len(mails_about(services.mail_dir, set(order_ids))) >= 5 * ORDERS

    await wait_until(all_mail_in, 60, "every customer e-mail")
    mails = mails_about(services.mail_dir, set(order_ids))
    assert len(mails) == 5 * ORDERS
    assert len({m["Message-ID"] for m in mails}) == 5 * ORDERS
