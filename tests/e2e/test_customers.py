"""One customer across channels, on real infrastructure: an online order by e-mail, a till
sale by phone, a click-and-collect order by loyalty card, all the same person, with the
points of the three completed orders on one ledger."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from tests.e2e.helpers import new_sku, order_body, place, set_stock
from tests.e2e.test_branches import no_violations, reach


async def test_the_same_customer_online_at_a_till_and_at_pickup(services, api, db) -> None:
    sku, store = new_sku(), f"ST-{uuid.uuid4().hex[:6]}"
    await set_stock(services, [("WH-1", sku, 10), (store, sku, 5)])
    email = f"siti.{uuid.uuid4().hex[:8]}@example.com"
    phone = f"08{random.randrange(10**9, 10**10)}"  # a national Indonesian number
    card = f"LC{uuid.uuid4().hex[:10].upper()}"

    online_body = order_body(sku, quantity=2)  # 25.00 EUR: 25 points
    online_body["customer"] = {"email": email.upper(), "phone": phone, "name": "Siti"}
    online = await place(api, online_body)
    await reach(db, online, "Delivered")
    assert (await api.post(f"/v1/orders/{online}/receipt")).json()["status"] == "completed"

    # At the till the cashier asks for the phone number and hands over a loyalty card.
    sold = await api.post("/v1/pos/sales", json={"store_id": store, "sales": [{
        "sale_id": f"R-{uuid.uuid4().hex[:10]}",
        "sold_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "customer": {"phone": "+62 " + phone[1:], "loyalty_card": card},
        "lines": [{**online_body["lines"][0], "quantity": 1}],
        "payment": {"method": "cash"}}]})  # 12.50 EUR: 12 points
    assert sold.status_code == 202, sold.text
    till = sold.json()["sales"][0]["order_id"]

    pickup_body = order_body(sku, store_id=store)  # 12.50 EUR: 12 points
    pickup_body["customer"] = {"loyalty_card": card.lower()}
    pickup = await place(api, pickup_body)

    for order_id in (online, till, pickup):
        await reach(db, order_id, "LoyaltyPointsAccrued")
    found = await api.get("/v1/customers", params={"phone": phone})
    assert found.status_code == 200, found.text
    [customer] = found.json()["items"]
    assert (await api.get("/v1/customers", params={"loyalty_card": card})).json()["items"] == [
        customer]
    assert {o["order_id"]: (o["channel"], o["status"]) for o in customer["orders"]} == {
        online: ("online", "completed"), till: ("pos", "completed"),
        pickup: ("online", "completed")}
    assert customer["order_count"] == 3
    assert customer["lifetime_value"] == [{"amount": 5000, "currency": "EUR"}]
    assert customer["loyalty"]["balance"] == 49
    assert sorted(e["change"] for e in customer["loyalty"]["ledger"]) == [12, 12, 25]
    assert {i["kind"]: i["value"] for i in customer["identifiers"]} == {
        "email": email, "phone": "+62" + phone[1:], "loyalty_card": card}
    await no_violations(services, db, [online, till, pickup])


async def test_points_pay_part_of_an_order_and_come_back_when_it_is_cancelled(
        services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    email = f"tono.{uuid.uuid4().hex[:8]}@example.com"
    first = order_body(sku, quantity=2)  # 25.00 EUR: 25 points once completed
    first["customer"] = {"email": email}
    earned = await place(api, first)
    await reach(db, earned, "Delivered")
    assert (await api.post(f"/v1/orders/{earned}/receipt")).json()["status"] == "completed"

    spending = order_body(sku, quantity=2) | {"loyalty_points": 10}  # pays 10.00 of 25.00
    spending["customer"] = {"email": email}
    paid = await place(api, spending)
    await reach(db, paid, "Delivered")
    charged = await db.fetchval("SELECT amount FROM gateway_sim.charges WHERE reference = $1"
                                " AND status = 'succeeded'", paid)
    assert charged == 1500
    assert (await api.post(f"/v1/orders/{paid}/receipt")).json()["status"] == "completed"

    cancelled_body = order_body(sku) | {"loyalty_points": 5}
    cancelled_body["customer"] = {"email": email}
    cancelled = await place(api, cancelled_body)
    await reach(db, cancelled, "PaymentConfirmed")
    assert (await api.post(f"/v1/orders/{cancelled}/cancel")).status_code == 200
    await reach(db, cancelled, "RefundIssued")

    [customer] = (await api.get("/v1/customers", params={"email": email})).json()["items"]
    loyalty = customer["loyalty"]
    # 25 earned, 10 spent, 15 earned on the 15.00 paid by card; 5 held and given back.
    assert (loyalty["balance"], loyalty["redeemed"], loyalty["held"]) == (30, 10, 0)
    kinds = [(e["kind"], e["order_id"]) for e in loyalty["ledger"]]
    assert ("released", cancelled) in kinds and ("redeemed", paid) in kinds
    refunded = await db.fetchval(
        "SELECT sum((body->'data'->'amount'->>'amount')::bigint) FROM payments.events"
        " WHERE stream_id = $1 AND type = 'RefundIssued'", cancelled)
    assert refunded == 1250 - 500
    await no_violations(services, db, [earned, paid, cancelled])
