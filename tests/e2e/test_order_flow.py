"""One order over HTTP through all five services, with real Kafka, PostgreSQL and SMTP."""

import json
import uuid
from email.message import Message

from tests.e2e.helpers import (
    all_delivered,
    auth,
    mails_about,
    new_sku,
    order_body,
    place,
    set_stock,
    statuses,
    text_of,
    versions_are_contiguous,
    wait_until,
)

FLOW = ["OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
        "ShipmentCreated", "Shipped", "InTransit", "OutForDelivery", "Delivered"]


async def test_an_order_posted_over_http_is_delivered(services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    order_id = await place(api, order_body(sku, quantity=3))

    await wait_until(lambda: all_delivered(db, [order_id]), 60, "the order to be delivered")

    view = (await api.get(f"/v1/orders/{order_id}")).json()
    assert view["status"] == "delivered" and view["total_amount"] == 3750
    # The order's timeline also says who its customer is: a new reference was linked.
    assert [t["type"] for t in view["timeline"]] == [FLOW[0], "CustomerIdentified", *FLOW[1:]]
    assert (await statuses(db, [order_id]))[order_id] == FLOW

    async def five_mails() -> bool:
        return len(mails_about(services.mail_dir, {order_id})) >= 5

    await wait_until(five_mails, 30, "the customer e-mails")
    subjects = sorted(str(m["Subject"]) for m in mails_about(services.mail_dir, {order_id}))
    assert len(subjects) == 5 and any("was delivered" in s for s in subjects)
    assert all(m["To"] == "ada@example.com" for m in mails_about(services.mail_dir, {order_id}))

    for service in ("orders", "inventory", "payments", "shipping", "notifications"):
        rows = await db.fetch(f"SELECT direction, outcome, \"offset\" FROM {service}.audit "
                              "WHERE order_id = $1", order_id)
        consumed = [r for r in rows if r["direction"] == "in" and r["outcome"] == "processed"]
        emitted = [r for r in rows if r["direction"] == "out" and r["outcome"] == "emitted"]
        assert consumed and emitted, f"{service} audit log lacks the order's rows"
        assert all(r["offset"] is not None for r in consumed)

    async def stock_committed() -> bool:  # inventory hears of the shipment on its own time
        return bool(await db.fetchval("SELECT count(*) FROM inventory.events WHERE stream_id = $1"
                                      " AND type = 'StockCommitted'", order_id))

    await wait_until(stock_committed, 30, "inventory to commit the reservation")
    versions = await versions_are_contiguous(db, order_id)
    assert len(versions["orders"]) == len(FLOW) + 1
    inventory = await db.fetch("SELECT type FROM inventory.events WHERE stream_id = $1 "
                               "AND origin = 'own' ORDER BY version", order_id)
    assert [r["type"] for r in inventory] == ["StockReserved", "StockCommitted"]
    stock = await db.fetchrow("SELECT on_hand, reserved FROM inventory.stock WHERE sku = $1", sku)
    assert (stock["on_hand"], stock["reserved"]) == (7, 0)


async def test_a_rupiah_order_carries_its_ppn_and_the_e_mail_reads_as_indonesians_write_it(
        services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    body = order_body(sku, quantity=2, shop="toko-e2e")
    reference = f"TKO-{uuid.uuid4().hex[:8]}"
    body |= {"reference": reference,
             "lines": [{"sku": sku, "quantity": 2,
                        "unit_price": {"amount": 125_000, "currency": "IDR"}}],
             "delivery": {"method": "home_delivery", "address": {
                 "line1": "Jl. Merdeka Barat 12", "city": "Jakarta", "postal_code": "10110",
                 "country": "ID"}}}
    order_id = await place(api, body)
    await wait_until(lambda: all_delivered(db, [order_id]), 60, "the order to be delivered")
    view = (await api.get(f"/v1/orders/{order_id}",
                          headers=await auth("toko-e2e", "IDR"))).json()
    assert (view["total_amount"], view["currency"]) == (250_000, "IDR")
    taxes = await db.fetchval("SELECT body->'data'->'taxes' FROM orders.events WHERE "
                              "stream_id = $1 AND type = 'OrderPlaced'", order_id)
    assert json.loads(taxes) == [{"name": "PPN", "rate_bp": 1100, "included": True,
                                  "amount": {"amount": 24_775, "currency": "IDR"}}]

    async def confirmation() -> Message | None:
        return next((m for m in mails_about(services.mail_dir, {order_id})
                     if "We received" in str(m["Subject"])), None)

    await wait_until(confirmation, 30, "the order confirmation e-mail")
    text = text_of(await confirmation())  # type: ignore[arg-type]
    assert f"Order number: {reference}" in text
    assert "Total: Rp250.000.\nThe total includes PPN 11%: Rp24.775." in text
    assert f"2 x {sku}  Rp125.000 each  Rp250.000" in text and "Estimated delivery: " in text


async def test_an_unknown_order_is_a_404_problem(api) -> None:
    response = await api.get("/v1/orders/ord_nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_invalid_order_is_refused_and_nothing_is_written(api, db) -> None:
    body = order_body(new_sku())
    body["lines"][0]["quantity"] = 0  # type: ignore[index]
    before = await db.fetchval("SELECT count(*) FROM orders.outbox")
    response = await api.post("/v1/orders", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "lines.0.quantity"
    assert await db.fetchval("SELECT count(*) FROM orders.outbox") == before
