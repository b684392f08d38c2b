"""The sales projection: kept live by the orders service, rebuilt by replay from Kafka and from
the event store, equal to the live tables; slice replays touch only their slice; the report's
figures match an independent computation from the raw events on the topics."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from alur.runtime.slice import Slice
from services.orders.reports import render_html, report
from services.orders.sales import ReplayInterrupted, replay
from tests.e2e.helpers import (
    all_settled,
    auth,
    new_sku,
    order_body,
    place,
    set_stock,
    statuses,
    wait_until,
)


async def mixed_run(services, api, db, shop: str, n: int) -> list[str]:  # noqa: ANN001
    """Orders of one shop: most delivered, some declined, one out of stock."""
    plenty, scarce = new_sku(), new_sku()
    await set_stock(services, [("WH-1", plenty, 1000), ("WH-1", scarce, 1)])
    placed = []
    for i in range(n):
        token = "tok_decline" if i % 5 == 4 else "tok_visa"
        body = order_body(plenty, quantity=1 + i % 3, token=token, shop=shop)
        placed.append(await place(api, body))
    placed.append(await place(api, order_body(scarce, quantity=2, shop=shop)))  # rejected
    await wait_until(lambda: all_settled(db, placed), 90, f"{shop}'s orders to settle")
    return placed


async def raw_events(bootstrap: str, partitions: int, shop: str) -> list[dict]:
    """The shop's events straight from the topics, with aiokafka only (no Alur code)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in ("orders", "payments", "shipping")
               for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[dict] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    if r.value is None:  # a tombstone someone put there: not an event
                        continue
                    try:
                        event = json.loads(r.value)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and event.get("shopid") == shop:
                        found.append(event)
        return found
    finally:
        await consumer.stop()


async def test_replays_equal_live_touch_only_their_slice_and_report_adds_up(
        services, api, db) -> None:
    shop_a, shop_b = f"shop-a-{uuid.uuid4().hex[:6]}", f"shop-b-{uuid.uuid4().hex[:6]}"
    orders_a = await mixed_run(services, api, db, shop_a, 15)
    between = datetime.now(UTC)
    orders_b = await mixed_run(services, api, db, shop_b, 10)
    # the shop's customers review some delivered orders, one confirms receipt
    delivered_a = [o for o, types in (await statuses(db, orders_a)).items() if "Delivered" in types]
    headers = await auth(shop_a)
    for order_id, stars in zip(delivered_a, (5, 4, 2), strict=False):
        response = await api.post(f"/v1/orders/{order_id}/reviews", headers=headers,
                                  json={"rating": stars, "text": "review"})
        assert response.status_code == 201, response.text
    assert (await api.post(f"/v1/orders/{delivered_a[0]}/receipt", headers=headers)
            ).status_code == 200

    async def published() -> bool:
        return not await db.fetchval("SELECT count(*) FROM orders.outbox "
                                     "WHERE published_at IS NULL")

    await wait_until(published, 30, "the reviews to be published")

    for source in ("kafka", "store"):
        whole = await replay(services.pg_dsn, Slice(), source=source,
                             bootstrap=services.kafka_bootstrap)
        assert whole.equal and whole.same >= len(orders_a) + len(orders_b), (source, whole)

    window = await replay(services.pg_dsn, Slice(since=between),
                          bootstrap=services.kafka_bootstrap, source="kafka")
    assert window.equal and window.orders_in_slice == len(orders_b)

    with pytest.raises(ReplayInterrupted):  # a replay cut short keeps what it folded ...
        await replay(services.pg_dsn, Slice(shop=shop_a), source="kafka",
                     bootstrap=services.kafka_bootstrap, budget=1)
    resumed = await replay(services.pg_dsn, Slice(), source="kafka",  # ... and goes on
                           bootstrap=services.kafka_bootstrap, resume=True)
    assert resumed.equal and resumed.orders_in_slice == len(orders_a)

    # Damage one live row in each shop; a swap of shop A's slice repairs A's and leaves B's.
    damaged_a, damaged_b = orders_a[0], orders_b[0]
    await db.execute("UPDATE orders.sales_orders SET total_amount = -1 "
                     "WHERE order_id = ANY($1::text[])", [damaged_a, damaged_b])
    untouched = await db.fetch("SELECT * FROM orders.sales_orders WHERE shop_id = $1 "
                               "ORDER BY order_id", shop_b)
    dry = await replay(services.pg_dsn, Slice(shop=shop_a))
    assert dry.differ == [damaged_a] and not dry.swapped
    assert await db.fetchval("SELECT total_amount FROM orders.sales_orders WHERE order_id = $1",
                             damaged_a) == -1  # a dry run changes nothing live
    fixed = await replay(services.pg_dsn, Slice(shop=shop_a), swap=True)
    assert fixed.swapped and fixed.orders_in_slice == len(orders_a)
    assert (await replay(services.pg_dsn, Slice(shop=shop_a))).equal
    assert await db.fetch("SELECT * FROM orders.sales_orders WHERE shop_id = $1 "
                          "ORDER BY order_id", shop_b) == untouched
    # A line changed, and a fact row missing, are told apart from equal rows too.
    await db.execute("UPDATE orders.sales_lines SET quantity = quantity + 1 "
                     "WHERE order_id = $1", orders_b[1])
    await db.execute("DELETE FROM orders.sales_orders WHERE order_id = $1", orders_b[2])
    dry_b = await replay(services.pg_dsn, Slice(shop=shop_b))
    assert (dry_b.differ, dry_b.only_rebuilt, dry_b.only_live) == \
        (sorted([damaged_b, orders_b[1]]), [orders_b[2]], [])
    assert dry_b.same == len(orders_b) - 3
    await replay(services.pg_dsn, Slice(shop=shop_b), swap=True)
    assert (await replay(services.pg_dsn, Slice(shop=shop_b))).equal

    # The report against a computation of its own from the raw events.
    events = await raw_events(services.kafka_bootstrap, services.partitions, shop_a)
    placed = {e["subject"]: e for e in events if e["type"] == "OrderPlaced"}
    paid = {e["subject"] for e in events if e["type"] == "PaymentConfirmed"}
    delivered = {e["subject"] for e in events if e["type"] == "Delivered"}
    cancelled = {e["subject"] for e in events if e["type"] == "OrderCancelled"}
    ratings = [e["data"]["rating"] for e in events if e["type"] == "ReviewSubmitted"]
    completed = {e["subject"] for e in events if e["type"] == "OrderCompleted"}
    units: Counter[str] = Counter()
    revenue: defaultdict[str, int] = defaultdict(int)
    for order_id in paid:
        for line in placed[order_id]["data"]["lines"]:
            units[line["sku"]] += line["quantity"]
            revenue[line["sku"]] += line["quantity"] * line["unit_price"]["amount"]
    figures = await report(services.pg_dsn, Slice(shop=shop_a))
    [day] = figures["by_day"]
    assert (day["orders"], day["paid_orders"]) == (len(placed), len(paid)) == (len(orders_a), 12)
    assert day["gmv"] == sum(placed[o]["data"]["total"]["amount"] for o in paid)
    assert {r["sku"]: (r["units"], r["revenue"]) for r in figures["top_products"]} == \
        {sku: (units[sku], revenue[sku]) for sku in units}
    [funnel] = figures["funnel"]
    assert (funnel["placed"], funnel["paid"], funnel["delivered"], funnel["cancelled"]) == \
        (len(placed), len(paid), len(delivered), len(cancelled))
    assert funnel["cancellation_rate"] == round(len(cancelled) / len(placed), 4)
    assert funnel["completed"] == len(completed) == 1
    [reviews] = figures["reviews"]
    assert len(ratings) == 3
    assert (reviews["reviews"], reviews["average_rating"]) == \
        (len(ratings), round(sum(ratings) / len(ratings), 2))
    assert [reviews[k] for k in ("one_star", "two_stars", "three_stars", "four_stars",
                                 "five_stars")] == [ratings.count(n) for n in range(1, 6)]
    page = render_html(figures)
    assert page.count("<svg") == 5 and f"{len(placed)} orders placed" in page
