"""One customer across channels, on real infrastructure: an online order by e-mail, a till
sale by phone, a click-and-collect order by loyalty card, all the same person, with the
points of the three completed orders on one ledger."""

from __future__ import annotations

import asyncio
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
    await reach(db, pickup, "ReadyForPickup")  # set aside on the store's own shelf
    assert (await api.post(f"/v1/orders/{pickup}/pickup")).status_code == 200

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


async def published(db) -> bool:  # noqa: ANN001
    """Everything the services recorded is on the topics."""
    return not any([await db.fetchval(f"SELECT count(*) FROM {s}.outbox WHERE published_at"
                                      " IS NULL") for s in ("orders", "payments")])


def cohorts_from_topics(events: list[dict]) -> dict[tuple[str, int], tuple[int, float]]:
    """(first-purchase month, months after) -> (customers, retention), computed from the raw
    topic records alone: a purchase is an OrderPlaced naming a customer whose order has a
    PaymentConfirmed, dated by its sold_at (a till sale) or its time."""
    paid = {e["subject"] for e in events if e["type"] == "PaymentConfirmed"}
    purchases: dict[str, list[datetime]] = {}
    for e in events:
        if e["type"] == "OrderPlaced" and e["subject"] in paid \
                and e["data"].get("alur_customer_id"):
            when = datetime.fromisoformat(e["data"].get("sold_at") or e["time"])
            purchases.setdefault(e["data"]["alur_customer_id"], []).append(when)
    month = lambda t: t.year * 12 + t.month - 1  # noqa: E731
    first = {c: min(ts) for c, ts in purchases.items()}
    sizes: dict[int, int] = {}
    for t in first.values():
        sizes[month(t)] = sizes.get(month(t), 0) + 1
    buyers: dict[tuple[int, int], set[str]] = {}
    for c, ts in purchases.items():
        for t in ts:
            buyers.setdefault((month(first[c]), month(t) - month(first[c])), set()).add(c)
    return {(f"{m // 12:04d}-{m % 12 + 1:02d}-01", k): (len(who), round(len(who) / sizes[m], 4))
            for (m, k), who in buyers.items()}


async def test_the_cohort_report_matches_the_topics_and_replays_equal_live(
        services, api, db) -> None:
    from services.orders import customer_replay
    from services.orders.customers import digest
    from tests.e2e.helpers import auth, wait_until
    from tests.e2e.test_sales_projection import raw_events

    shop, sku, store = f"shop-c-{uuid.uuid4().hex[:6]}", new_sku(), f"ST-{uuid.uuid4().hex[:6]}"
    await set_stock(services, [("WH-1", sku, 100), (store, sku, 100)])
    placed = []
    for i in range(6):  # six people online; the first three also buy at a till, weeks ago
        body = order_body(sku, shop=shop)
        body["customer"] = {"email": f"p{i}.{shop}@example.com", "phone": f"0813{i:08d}"}
        placed.append(await place(api, body))
    sales = [{"sale_id": f"R-{i}", "payment": {"method": "cash"},
              "sold_at": (datetime.now(UTC) - timedelta(days=20 + i)).isoformat(),
              "customer": {"phone": f"0813{i:08d}"}, "lines": body["lines"]} for i in range(3)]
    sales.append({**sales[0], "sale_id": "R-anon", "customer": None})  # an anonymous sale
    sales[-1].pop("customer")
    sold = await api.post("/v1/pos/sales", json={"store_id": store, "sales": sales},
                          headers=await auth(shop))
    assert sold.status_code == 202, sold.text
    placed += [s["order_id"] for s in sold.json()["sales"]]
    for order_id in placed:
        await reach(db, order_id, "PaymentConfirmed")
    await wait_until(lambda: published(db), 30, "the relays to publish")

    report = (await api.get("/v1/reports/customers", headers=await auth(shop))).json()
    [summary] = report["summary"]
    assert (summary["customers"], summary["purchases"]) == (6, 9)
    assert summary["repeat_customers"] == 3 and summary["omnichannel_customers"] == 3
    assert {r["channels"]: r["customers"] for r in report["channel_mix"]} == {
        "online": 3, "online+pos": 3}
    expected = cohorts_from_topics(await raw_events(services.kafka_bootstrap,
                                                    services.partitions, shop))
    assert {(r["cohort"], r["month"]): (r["customers"], r["retention"])
            for r in report["cohorts"]} == expected
    funnel = {r["channel"]: r for r in report["funnel_by_channel"]}
    assert (funnel["pos"]["placed"], funnel["online"]["placed"]) == (4, 6)

    for source in ("store", "kafka"):
        result = await customer_replay.replay(services.pg_dsn, shop, source=source,
                                              bootstrap=services.kafka_bootstrap,
                                              progress=False)
        assert result.equal, (source, result.tables)
        assert result.tables["customer_orders"].same == 9
    await db.execute("DELETE FROM orders.customer_identifiers WHERE shop_id = $1 AND"
                     " kind = 'phone' AND digest = $2", shop,
                     digest(services.identity_pepper.get_secret_value(), shop, "phone",
                            "+6281300000001"))
    broken = await customer_replay.replay(services.pg_dsn, shop, progress=False)
    assert broken.tables["customer_identifiers"].only_rebuilt == 1 and not broken.equal
    swapped = await customer_replay.replay(services.pg_dsn, shop, swap=True, progress=False)
    assert swapped.swapped
    again = await customer_replay.replay(services.pg_dsn, shop, progress=False)
    assert again.equal


async def every_row_and_record(services, db) -> tuple[str, bytes]:  # noqa: ANN001
    """Every row of every table in the database, as text, and every record of every topic
    (the dead-letter and the shops' topics included), as bytes."""
    from aiokafka import AIOKafkaConsumer

    from alur.runtime.topics import partitions_of

    rows = []
    for t in await db.fetch("SELECT table_schema, table_name FROM information_schema.tables"
                            " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN"
                            " ('pg_catalog', 'information_schema')"):
        rows += [r["row"] for r in await db.fetch(
            f'SELECT t::text AS row FROM "{t["table_schema"]}"."{t["table_name"]}" t')]
    consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka_bootstrap,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, sorted(await consumer.topics()))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        values: list[bytes] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values += [(r.key or b"") + b" " + (r.value or b"") for r in records]
    finally:
        await consumer.stop()
    return "\n".join(rows), b"\n".join(values)


async def test_a_forgotten_customer_is_unreadable_everywhere_and_gets_no_queued_mail(
        services, api, db) -> None:
    from alur.infra import stack
    from tests.e2e.helpers import mails_about, wait_until

    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    email = f"wulan.{uuid.uuid4().hex[:8]}@example.com"
    phone = f"0857{random.randrange(10**7, 10**8)}"
    body = order_body(sku)
    name = f"Wulan {uuid.uuid4().hex[:8]}"
    body["customer"] = {"email": email, "phone": phone, "name": name}
    stack.services_down(services, ("notifications",))  # her e-mails wait in the topics
    try:
        order_id = await place(api, body)
        await reach(db, order_id, "Delivered")
        assert (await api.post(f"/v1/orders/{order_id}/receipt")).status_code == 200
        [customer] = (await api.get("/v1/customers", params={"email": email})).json()["items"]
        forgotten = await api.post(f"/v1/customers/{customer['customer_id']}/forget")
        assert forgotten.status_code == 200, forgotten.text
    finally:
        await asyncio.to_thread(stack.start_process, services, "notifications")

    async def told_nothing() -> bool:
        return bool(await db.fetchval(
            "SELECT count(*) FROM notifications.events WHERE stream_id = $1"
            " AND type = 'NotificationFailed'", order_id) >= 5)

    await wait_until(told_nothing, 60, "notifications to give up on her e-mails")
    assert mails_about(services.mail_dir, {order_id}) == []
    await wait_until(lambda: published(db), 30, "the relays to publish")
    rows, records = await every_row_and_record(services, db)
    e164 = "+62" + phone[1:]
    for secret in (email, e164, phone, name):
        assert secret not in rows, secret
        assert secret.encode() not in records, secret
    view = (await api.get(f"/v1/customers/{customer['customer_id']}")).json()
    assert view["erased"] and view["orders"][0]["status"] == "completed"
    assert view["loyalty"]["balance"] == 12
    await no_violations(services, db, [order_id])


async def test_the_cli_forgets_a_customer_once_their_orders_arrived(services, api, db) -> None:
    from tests.e2e.test_engineer_tools import alur

    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    body = order_body(sku)
    body["customer"] = {"email": f"yuni.{uuid.uuid4().hex[:8]}@example.com"}
    order_id = await place(api, body)
    customer = await db.fetchval("SELECT customer_id FROM orders.customer_orders"
                                 " WHERE order_id = $1", order_id)
    early = await asyncio.to_thread(alur, services, "customers", "forget", customer)
    assert early.returncode == 1 and order_id in early.stderr
    await reach(db, order_id, "Delivered")
    done = await asyncio.to_thread(alur, services, "customers", "forget", customer)
    assert done.returncode == 0 and "forgotten" in done.stdout, done.stderr
    unknown = await asyncio.to_thread(alur, services, "customers", "forget", "cus_nobody")
    assert unknown.returncode == 2 and "no customer" in unknown.stderr
    assert await db.fetchval("SELECT count(*) FROM keyring.customer_keys WHERE customer_id = $1",
                             customer) == 0
    view = (await api.get(f"/v1/customers/{customer}")).json()
    assert view["erased"] and view["identifiers"] == []
