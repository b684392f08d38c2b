"""`alur trace` and `alur dlq` against the running stack: an order whose payment was dead-lettered
while the gateway was down shows the DLQ visit in its trace, and once the gateway is back, the
redriven message completes the order exactly once."""

from __future__ import annotations

import json
import uuid

from alur.infra import stack
from alur.tools import dlq
from alur.tools.invariants import check
from alur.tools.trace import trace
from tests.e2e.helpers import (
    all_delivered,
    all_settled,
    alur,
    new_sku,
    order_body,
    place,
    set_stock,
    statuses,
    wait_until,
)


async def test_a_dead_lettered_payment_is_traced_then_redriven_once(services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    gateway = stack.proc(services, "gateway-sim")
    gateway.stop()
    try:
        order = await place(api, order_body(sku))

        async def payment_dead_lettered() -> list[dlq.DeadLetter]:
            letters = await dlq.read_dead_letters(services.kafka_bootstrap, ["inventory"])
            return [d for d in letters if d.order_id == order and d.service == "payments"]

        await wait_until(payment_dead_lettered, 60, "payments to dead-letter the order")
    finally:
        stack.start_process(services, "gateway-sim")

    traced = await trace(db, order)
    assert not traced.settled and "dead-lettered" in (traced.stopped or "")
    [reserved] = [e for e in traced.events if e.type == "StockReserved"]
    [given_up] = [h for h in reserved.hops if h.service == "payments"]
    assert (given_up.outcome, given_up.attempts) == ("dead_lettered", services.retry_attempts)
    assert "gateway unreachable" in (given_up.error or "")
    text = alur(services, "trace", order)
    assert text.returncode == 0 and "dead_lettered" in text.stdout, text.stderr

    async with db.acquire() as conn:
        lost = [v for v in (await check(conn, [order])).violations
                if v.invariant == "4 loses nothing"]
    assert [v.order_id for v in lost] == [order] and "payments dead-lettered StockReserved" \
        in lost[0].detail

    listed = alur(services, "dlq", "list", "--service", "payments", "--json")
    [letter] = [d for d in json.loads(listed.stdout) if d["order_id"] == order]
    assert letter["event_type"] == "StockReserved" and letter["redriven_at"] is None

    redriven = alur(services, "dlq", "redrive", letter["id"])
    assert redriven.returncode == 0 and "redriven ->" in redriven.stdout, redriven.stderr
    await wait_until(lambda: all_delivered(db, [order]), 60, "the redriven order to complete")

    again = alur(services, "dlq", "redrive", letter["id"])
    assert "already redriven" in again.stdout
    counts = {r["type"]: r["n"] for r in await db.fetch(
        "SELECT type, count(*) AS n FROM payments.events WHERE stream_id = $1 AND origin = 'own' "
        "GROUP BY type", order)}
    assert counts == {"PaymentConfirmed": 1}
    charges = await db.fetchval(
        "SELECT count(*) FROM gateway_sim.charges WHERE reference = $1", order)
    assert charges == 1
    delivered = await db.fetchval(
        "SELECT count(*) FROM orders.events WHERE stream_id = $1 AND type = 'Delivered'", order)
    assert delivered == 1
    after = await trace(db, order)
    assert after.settled
    async with db.acquire() as conn:
        assert (await check(conn, [order])).violations == []  # redriven and handled: not lost
    [reserved] = [e for e in after.events if e.type == "StockReserved"]
    outcomes = [(h.service, h.outcome) for h in reserved.hops if h.direction == "in"]
    assert ("payments", "dead_lettered") in outcomes and ("payments", "processed") in outcomes
    assert ("orders", "duplicate") in outcomes  # the redrive reached orders again, harmlessly


async def test_the_checker_names_an_order_whose_units_outlived_its_parcel(services, api,
                                                                         db) -> None:
    """Inventory down while the parcel travels: the checker reports the units still held for an
    order whose parcel arrived; once inventory catches up, the report is clean."""
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    order = await place(api, order_body(sku))

    async def shipping_has(event_type: str) -> bool:
        return bool(await db.fetchval(
            "SELECT count(*) FROM shipping.events WHERE stream_id = $1 AND type = $2", order,
            event_type))

    await wait_until(lambda: shipping_has("ShipmentCreated"), 60, "the parcel to be booked")
    await wait_until(lambda: inventory_saw(db, order, "ShipmentCreated"), 30,
                     "inventory to see the booking")
    stack.services_down(services, ("inventory",))  # the supervisor keeps it down
    try:
        await wait_until(lambda: shipping_has("Delivered"), 60, "the parcel to arrive")
        found = alur(services, "check", "--json", order)  # as the engineer on call runs it
        assert found.returncode == 1, found.stderr
        report = json.loads(found.stdout)
        assert report["orders"] == 1 and [(v["invariant"], v["order_id"]) for v in
                                          report["violations"]] == [("2 no oversell", order)]
    finally:
        stack.start_process(services, "inventory")
    await wait_until(lambda: inventory_saw(db, order, "Delivered"), 60,
                     "inventory to catch up")
    clean = alur(services, "check", order)
    assert clean.returncode == 0 and "0 violation(s)" in clean.stdout, clean.stdout


async def inventory_saw(db, order: str, event_type: str) -> bool:  # noqa: ANN001
    return bool(await db.fetchval(
        "SELECT count(*) FROM inventory.audit WHERE order_id = $1 AND type = $2"
        " AND direction = 'in'", order, event_type))


async def test_trace_names_an_unknown_order(services) -> None:
    result = alur(services, "trace", "ord_does_not_exist")
    assert result.returncode == 1 and "no service has a record" in result.stderr


async def test_events_filters_by_shop_order_type_and_time(services, api, db) -> None:
    sku, shop = new_sku(), f"shop-{uuid.uuid4().hex[:8]}"
    await set_stock(services, [("WH-1", sku, 5)])
    orders = [await place(api, order_body(sku, shop=shop)) for _ in range(2)]
    await wait_until(lambda: all_delivered(db, orders), 60, "the shop's orders")

    def lines(*args: str) -> list[dict]:
        result = alur(services, "events", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    shops = lines("--shop", shop, "--since", "10m")
    assert {e["event"]["subject"] for e in shops} == set(orders)
    assert {e["event"]["shopid"] for e in shops} == {shop}
    expected = await db.fetchval(
        "SELECT count(*) FROM (SELECT event_id FROM orders.events WHERE stream_id = ANY($1) AND "
        "origin = 'own' UNION SELECT event_id FROM inventory.events WHERE stream_id = ANY($1) "
        "AND origin = 'own' UNION SELECT event_id FROM payments.events WHERE stream_id = ANY($1) "
        "AND origin = 'own' UNION SELECT event_id FROM shipping.events WHERE stream_id = ANY($1) "
        "AND origin = 'own' UNION SELECT event_id FROM notifications.events WHERE stream_id = "
        "ANY($1) AND origin = 'own') emitted", orders)
    assert len(shops) == expected  # each event once, none missing
    placed = lines("--order", orders[0], "--type", "OrderPlaced", "--topic", "orders")
    assert [(e["topic"], e["event"]["type"]) for e in placed] == [("orders", "OrderPlaced")]
    assert lines("--shop", shop, "--until", "1h") == []
    [(topic, partition, offset)] = [(e["topic"], e["partition"], e["offset"]) for e in placed]
    exact = lines("--offsets", f"{topic}:{partition}:{offset}-{offset + 1}")
    assert [e["event"]["subject"] for e in exact] == [orders[0]]
    bad = alur(services, "events", "--since", "yesterday")
    assert bad.returncode == 2 and "not a time" in bad.stderr


async def test_trace_shows_a_retried_then_declined_payment_hop_by_hop(services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    order = await place(api, order_body(sku, token="tok_decline_flaky"))  # 503 once, then no

    async def cancelled() -> bool:
        return "OrderCancelled" in (await statuses(db, [order]))[order]

    await wait_until(cancelled, 60, "the declined order to be cancelled")

    async def everything_consumed() -> bool:
        events = (await trace(db, order)).events
        return "StockReleased" in {e.type for e in events} and all(
            not e.awaiting and e.partition is not None for e in events)

    await wait_until(everything_consumed, 30,
                     "the stock release, and every subscriber to consume every event")
    traced = await trace(db, order)
    types = [e.type for e in traced.events]
    for earlier, later in (("OrderPlaced", "StockReserved"), ("StockReserved", "PaymentFailed"),
                           ("PaymentFailed", "OrderCancelled")):
        assert types.index(earlier) < types.index(later), types
    by_type = {e.type: e for e in traced.events}
    assert by_type["PaymentFailed"].caused_by == "StockReserved"
    assert by_type["OrderCancelled"].caused_by == "PaymentFailed"
    assert by_type["StockReleased"].caused_by == "OrderCancelled"  # the compensation
    assert await db.fetchval("SELECT reserved FROM inventory.stock WHERE sku = $1", sku) == 0
    [charge] = [h for h in by_type["StockReserved"].hops if h.service == "payments"]
    assert (charge.outcome, charge.attempts) == ("processed", 2)  # the 503, then the decline
    for event in traced.events:  # every hop has its audit row: emitted, and consumed by all
        assert any(h.direction == "out" and h.service == event.emitted_by for h in event.hops)
    text = alur(services, "trace", order).stdout
    assert "payments      processed after 2 attempts" in text
    assert text.index("StockReserved") < text.index("PaymentFailed") < text.index(
        "OrderCancelled")



async def test_a_dry_run_of_every_service_decides_the_past_the_same_way(services, api, db) -> None:
    from dataclasses import replace

    from alur.runtime.slice import Slice
    from alur.tools.redecide import redecide
    from services.payments.bootstrap import DECIDER as PAYMENTS

    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    orders = [await place(api, order_body(sku)),
              await place(api, order_body(sku, token="tok_decline")),
              await place(api, order_body(sku, quantity=50))]  # out of stock

    await wait_until(lambda: all_settled(db, orders), 60, "the three orders to settle")
    await wait_until(lambda: _notified(db, orders), 30, "their e-mails")
    for service in ("orders", "inventory", "payments", "shipping", "notifications"):
        report = await redecide(services.pg_dsn, service, Slice(orders=tuple(orders)),
                                bootstrap_servers=services.kafka_bootstrap)
        assert report.orders == 3 and report.events_redecided > 0, service
        assert report.differences == [], (service, report.differences)

    never_charges = replace(PAYMENTS, decide=lambda state, event: [])
    changed = await redecide(services.pg_dsn, "payments", Slice(orders=tuple(orders)),
                             decider=never_charges, bootstrap_servers=services.kafka_bootstrap)
    assert sorted((d.order_id, d.event_type, tuple(d.recorded)) for d in changed.differences) \
        == sorted([(orders[0], "StockReserved", ("PaymentConfirmed",)),
                   (orders[1], "StockReserved", ("PaymentFailed",))])
    assert all(d.would_decide == [] for d in changed.differences)
    # A change that starts reacting to an event type the service used to ignore shows too:
    # inventory ignored Delivered; a version that releases on it is flagged for the delivered.
    from services.inventory import domain as stock
    from services.inventory.bootstrap import DECIDER as INVENTORY

    def release_on_delivery(state: stock.ReservationState, event):  # noqa: ANN001, ANN202
        if event.type == "Delivered":
            return [stock.Release(event.subject, "r", "cancelled")]
        return INVENTORY.decide(state, event)

    eager = replace(INVENTORY, relevant=INVENTORY.relevant | {"Delivered"},
                    decide=release_on_delivery)
    flagged = await redecide(services.pg_dsn, "inventory", Slice(orders=tuple(orders)),
                             decider=eager, bootstrap_servers=services.kafka_bootstrap)
    assert [(d.order_id, d.event_type, d.ignored_then, d.would_decide)
            for d in flagged.differences] == [
        (orders[0], "Delivered", True, ["Release -> StockReleased"])]
    cli = alur(services, "replay", "handlers", "--service", "inventory", "--order", orders[2])
    assert cli.returncode == 0 and "0 differ" in cli.stdout, cli.stderr


async def _notified(db, order_ids: list[str]) -> bool:  # noqa: ANN001
    rows = await db.fetch("SELECT DISTINCT stream_id FROM notifications.events "
                          "WHERE stream_id = ANY($1::text[]) AND type = 'NotificationSent'",
                          order_ids)
    return len(rows) == len(order_ids)
