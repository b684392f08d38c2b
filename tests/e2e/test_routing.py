"""Fulfilment routing on the running stack: locations recorded through the inventory admin API
(warehouse or store, postal region, ship-from-store) decide where each online order's stock
is held: the customer's region first, then the most stock; a store only where it ships."""

from __future__ import annotations

import uuid

import httpx

from tests.e2e.helpers import new_sku, order_body, place, set_stock, wait_until
from tests.e2e.test_branches import events_of, no_violations, reach

TOWNS = {"1": ("Jakarta", "10110"), "6": ("Surabaya", "60111")}


def to_region(sku: str, region: str, quantity: int) -> dict[str, object]:
    body = order_body(sku, quantity)
    city, postal = TOWNS[region]
    body["delivery"] = {"method": "home_delivery", "address": {
        "line1": "Jl. Merdeka 1", "city": city, "postal_code": postal, "country": "ID"}}
    return body


async def served_from(db, order_id: str) -> str | None:  # noqa: ANN001
    """The location inventory reserved the order at, None if it rejected it."""
    for e in await events_of(db, "inventory", order_id):
        if e["type"] == "StockReserved":
            return str(e["location"])
    return None


async def test_orders_are_served_from_their_region_then_the_most_stock_and_stores_if_they_ship(
        services, api, db) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    jakarta, surabaya, store = f"WH-JKT-{tag}", f"WH-SBY-{tag}", f"ST-JKT-{tag}"
    token = {"Authorization": f"Bearer {services.inventory_admin_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{services.inventory_port}",
                                 timeout=10, headers=token) as admin:
        for location, record in ((jakarta, {"kind": "warehouse", "region": "1"}),
                                 (surabaya, {"kind": "warehouse", "region": "6"}),
                                 (store, {"kind": "store", "region": "1"})):
            put = await admin.put(f"/v1/locations/{location}",
                                  json={**record, "ships_to_customers": record["kind"] ==
                                        "warehouse"})
            assert put.status_code == 200, put.text
        refused = await admin.put(f"/v1/locations/{jakarta}", json={
            "kind": "warehouse", "region": "Jakarta", "ships_to_customers": True})
        assert refused.status_code == 422
        sku = new_sku()
        await set_stock(services, [(jakarta, sku, 2), (surabaya, sku, 20), (store, sku, 50)])

        async def order(region: str, quantity: int, outcome: str) -> str:
            order_id = await place(api, to_region(sku, region, quantity))
            await reach(db, order_id, outcome)
            return order_id

        near = await order("1", 1, "StockReserved")  # Jakarta has it, Surabaya has more
        east = await order("6", 1, "StockReserved")
        short_near = await order("1", 3, "StockReserved")  # Jakarta is short: Surabaya
        only_store = await order("1", 30, "OrderCancelled")  # the store's shelf is its own
        assert [await served_from(db, o) for o in (near, east, short_near, only_store)] == [
            jakarta, surabaya, surabaya, None]
        ships = await admin.put(f"/v1/locations/{store}", json={
            "kind": "store", "region": "1", "ships_to_customers": True})
        assert ships.status_code == 200, ships.text
        from_store = await order("1", 30, "StockReserved")  # ship-from-store, now configured
        assert await served_from(db, from_store) == store
        listed = (await admin.get("/v1/locations")).json()
        assert {"location": store, "kind": "store", "region": "1",
                "ships_to_customers": True} in listed
    await no_violations(services, db, [near, east, short_near])


async def test_click_and_collect_from_the_store_s_own_shelf_or_by_parcel_from_a_warehouse(
        services, api, db) -> None:
    store = f"ST-{uuid.uuid4().hex[:6].upper()}"
    token = {"Authorization": f"Bearer {services.inventory_admin_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{services.inventory_port}",
                                 timeout=10, headers=token) as admin:
        put = await admin.put(f"/v1/locations/{store}", json={
            "kind": "store", "region": "1", "ships_to_customers": False})
        assert put.status_code == 200, put.text
    on_shelf, elsewhere = new_sku(), new_sku()
    await set_stock(services, [(store, on_shelf, 5), ("WH-1", on_shelf, 50),
                               ("WH-1", elsewhere, 5)])
    shelf_order = await place(api, order_body(on_shelf, 2, store_id=store))
    parcel_order = await place(api, order_body(elsewhere, 1, store_id=store))

    types = await reach(db, shelf_order, "ReadyForPickup")
    assert "ShipmentCreated" not in types  # set aside on the shelf: nothing travels
    assert await served_from(db, shelf_order) == store
    early = await api.post(f"/v1/orders/{parcel_order}/pickup")
    assert early.status_code == 409, early.text  # a parcel is handed over by its carrier
    handed = await api.post(f"/v1/orders/{shelf_order}/pickup")
    assert handed.status_code == 200 and handed.json()["status"] in ("ready_for_pickup",
                                                                      "completed"), handed.text
    await reach(db, shelf_order, "OrderCompleted")
    again = await api.post(f"/v1/orders/{shelf_order}/pickup")
    assert again.status_code == 409  # handed over once

    returned = await api.post(f"/v1/orders/{shelf_order}/returns", json={
        "lines": [{"sku": on_shelf, "quantity": 1}], "reason": "one was enough"})
    assert returned.status_code == 202, returned.text
    await reach(db, shelf_order, "ReturnClosed")
    [refund] = [e for e in await events_of(db, "payments", shelf_order)
                if e["type"] == "RefundIssued"]
    assert refund["refund_id"].startswith("re_")  # back to the card, through the gateway
    assert await db.fetchval("SELECT on_hand FROM inventory.stock WHERE location = $1"
                             " AND sku = $2", store, on_shelf) == 4  # back on its shelf

    parcel_types = await reach(db, parcel_order, "PickedUp", timeout=90)
    assert "ShipmentCreated" in parcel_types and await served_from(db, parcel_order) == "WH-1"

    # The warehouse's units travelled to the store as a stock transfer: in transit, then on
    # the store's books held for the customer, then collected off them.
    async def collected() -> bool:
        return any(e["type"] == "StockCommitted" and e["location"] == store
                   for e in await events_of(db, "inventory", parcel_order))

    await wait_until(collected, 30, f"the collection of {parcel_order} at {store}")
    steps = [(e["type"], e.get("location") or e.get("to_location"))
             for e in await events_of(db, "inventory", parcel_order)
             if e["type"].startswith("Stock")]
    assert steps == [("StockReserved", "WH-1"), ("StockCommitted", "WH-1"),
                     ("StockTransferShipped", store), ("StockTransferReceived", store),
                     ("StockCommitted", store)], steps
    assert await db.fetch("SELECT sku, quantity, status FROM inventory.stock_transfers"
                          " WHERE order_id = $1", parcel_order) == [(elsewhere, 1, "collected")]
    assert await db.fetchrow("SELECT on_hand, reserved FROM inventory.stock WHERE location = $1"
                             " AND sku = $2", store, elsewhere) == (0, 0)
    assert await db.fetchval("SELECT on_hand FROM inventory.stock WHERE location = 'WH-1'"
                             " AND sku = $1", elsewhere) == 4
    await no_violations(services, db, [shelf_order, parcel_order])

