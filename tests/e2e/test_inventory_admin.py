"""The inventory admin API of the running inventory service: counts and adjustments, refused
when open reservations hold more, logged with who and why; thresholds that make LowStock."""

from __future__ import annotations

import httpx

from tests.e2e.helpers import new_sku, onboard_skus, order_body, place, wait_until
from tests.e2e.test_branches import events_of, no_violations, reach, stock_of


async def test_stock_is_counted_adjusted_and_reported_low(services, api, db) -> None:
    sku = new_sku()
    await onboard_skus(services, [sku])
    token = {"Authorization": f"Bearer {services.inventory_admin_token.get_secret_value()}",
             "Alur-Actor": "ana"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{services.inventory_port}",
                                 timeout=10) as admin:
        count = {"on_hand": 5, "reason": "opening count"}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = await admin.put(f"/v1/stock/WH-1/{sku}", json=count, headers=headers)
            assert refused.status_code == 401, refused.text
        counted = await admin.put(f"/v1/stock/WH-1/{sku}", json=count, headers=token)
        assert counted.status_code == 200, counted.text
        assert counted.json()["locations"] == [
            {"location": "WH-1", "on_hand": 5, "reserved": 0, "available": 5, "in_transit": 0}]
        limit = await admin.put(f"/v1/thresholds/{sku}", json={"threshold": 3}, headers=token)
        assert limit.json()["threshold"] == 3

        order_id = await place(api, order_body(sku, quantity=3, method="bank_transfer"))
        await reach(db, order_id, "PaymentPending")  # 3 held while the transfer is awaited
        low = [e for e in await events_of(db, "inventory", order_id) if e["type"] == "LowStock"]
        assert [(x["sku"], x["location"], x["available"], x["threshold"]) for x in low] == [
            (sku, "WH-1", 2, 3)]

        below = await admin.put(f"/v1/stock/WH-1/{sku}", json={"on_hand": 2, "reason": "x"},
                                headers=token)
        assert below.status_code == 409 and "3 units are reserved" in below.json()["detail"]
        taken = await admin.post(f"/v1/stock/WH-1/{sku}/adjustments",
                                 json={"delta": -6, "reason": "broken"}, headers=token)
        assert taken.status_code == 409
        for bad in ({"delta": 0, "reason": "none"}, {"delta": 2}, {"delta": "many"}):
            invalid = await admin.post(f"/v1/stock/WH-1/{sku}/adjustments", json=bad,
                                       headers=token)
            assert invalid.status_code == 422, (bad, invalid.text)
        delivery = await admin.post(f"/v1/stock/WH-1/{sku}/adjustments",
                                    json={"delta": 10, "reason": "delivery 77"}, headers=token)
        assert delivery.json()["locations"][0] == {
            "location": "WH-1", "on_hand": 15, "reserved": 3, "available": 12,
                "in_transit": 0}
        assert (await admin.get(f"/v1/stock/{sku}", headers=token)).json() == delivery.json()
        assert (await admin.get("/v1/stock/SKU-NOWHERE", headers=token)).status_code == 404

    log = await db.fetch("SELECT on_hand_was, on_hand, reason, actor FROM"
                         " inventory.stock_adjustments WHERE sku = $1 ORDER BY at", sku)
    assert [tuple(r) for r in log] == [(None, 5, "opening count", "ana"),
                                       (5, 15, "delivery 77", "ana")]

    async def released() -> bool:  # the transfer is never paid: the order ends, stock comes back
        return await stock_of(db, sku) == (15, 0)

    await wait_until(released, 60, "the unpaid transfer to expire and its stock to come back")
    await no_violations(services, db, [order_id])
