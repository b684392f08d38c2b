"""What a shop sees: placing, reading, listing, and what it may do to an order when."""

from __future__ import annotations

from datetime import timedelta

from alur.runtime.postgres import PostgresUnitOfWork
from schemas import DeliveredData, caused_by, now
from services.orders.api.models import OrderView
from tests.api.conftest import Api, bearer, mug_order


async def deliver(api: Api, order_id: str, days_ago: float = 0) -> None:
    """Record a Delivered event in the order's stream, as the handler would."""
    async with PostgresUnitOfWork(api.pool, api.schema) as uow:
        stream = await uow.load(order_id)
        event = caused_by(stream[-1].event, DeliveredData(order_id=order_id, shipment_id="shp_1",
                                                          tracking_number="TRK1"),
                          source="alur/shipping", at=now() - timedelta(days=days_ago))
        await uow.append(order_id, len(stream), [event], ["observed"])


async def test_an_accepted_order_is_recorded_with_its_event_in_the_outbox(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    response = await api.client.post("/v1/orders", json=mug_order(2), headers=bearer(key))
    assert response.status_code == 202, response.text
    order_id = response.json()["order_id"]
    assert response.json()["status_url"] == f"/v1/orders/{order_id}"
    # The shop's first order of this customer also makes the customer known.
    assert await api.pool.fetchval("SELECT array_agg(type ORDER BY id) FROM outbox WHERE key = $1",
                                   order_id.encode()) == ["OrderPlaced", "CustomerIdentified"]
    view = OrderView.model_validate(
        (await api.client.get(f"/v1/orders/{order_id}", headers=bearer(key))).json())
    assert (view.status, view.total_amount, view.shop_id) == ("placed", 2500, "shop-a")
    assert [t.type for t in view.timeline] == ["OrderPlaced", "CustomerIdentified"]
    assert view.tracking is None


async def place(api: Api, key: str, quantity: int = 1) -> str:
    response = await api.client.post("/v1/orders", json=mug_order(quantity), headers=bearer(key))
    assert response.status_code == 202, response.text
    return str(response.json()["order_id"])


async def test_another_shop_s_order_does_not_exist_for_a_shop(api: Api) -> None:
    key_a, _ = await api.shop("shop-a")
    key_b, _ = await api.shop("shop-b")
    order_id = await place(api, key_a)
    nowhere = await api.client.get("/v1/orders/ord_0000", headers=bearer(key_b))
    for response in (
        await api.client.get(f"/v1/orders/{order_id}", headers=bearer(key_b)),
        await api.client.post(f"/v1/orders/{order_id}/cancel", headers=bearer(key_b)),
        await api.client.post(f"/v1/orders/{order_id}/receipt", headers=bearer(key_b)),
        await api.client.post(f"/v1/orders/{order_id}/reviews", json={"rating": 1},
                              headers=bearer(key_b)),
        await api.client.post(f"/v1/orders/{order_id}/returns", headers=bearer(key_b),
                              json={"lines": [{"sku": "SKU-MUG", "quantity": 1}],
                                    "reason": "x"}),
    ):
        assert response.status_code == 404
        assert order_id not in response.text.replace(f"order {order_id}", "")
        assert response.json()["type"] == nowhere.json()["type"]
    assert (await api.client.get("/v1/orders", headers=bearer(key_b))).json()["items"] == []
    report = (await api.client.get("/v1/reports/sales", headers=bearer(key_b))).json()
    assert report["funnel"][0]["placed"] == 0
    mine = (await api.client.get("/v1/reports/sales", headers=bearer(key_a))).json()
    assert mine["funnel"][0]["placed"] == 1
    assert (await api.client.get(f"/v1/orders/{order_id}", headers=bearer(key_a))
            ).status_code == 200


async def test_listing_pages_through_the_shop_s_orders_newest_first(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    placed = [await place(api, key) for _ in range(5)]
    await api.client.post(f"/v1/orders/{placed[1]}/cancel", headers=bearer(key))
    seen, cursor = [], None
    while True:
        page = (await api.client.get("/v1/orders", headers=bearer(key),
                                     params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
                ).json()
        seen += [o["order_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == placed[::-1]
    cancelled = (await api.client.get("/v1/orders", headers=bearer(key),
                                      params={"status": "cancelled", "limit": 1})).json()
    assert [o["order_id"] for o in cancelled["items"]] == [placed[1]]
    pos = (await api.client.get("/v1/orders", headers=bearer(key), params={"channel": "pos"}))
    assert pos.json() == {"items": [], "next_cursor": None}


async def test_cancel_until_shipment_then_no_more(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    order_id = await place(api, key)
    cancelled = await api.client.post(f"/v1/orders/{order_id}/cancel", headers=bearer(key))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await api.client.post(f"/v1/orders/{order_id}/cancel", headers=bearer(key))
    assert again.status_code == 409
    delivered = await place(api, key)
    await deliver(api, delivered)
    assert (await api.client.post(f"/v1/orders/{delivered}/cancel", headers=bearer(key))
            ).status_code == 409


async def test_receipt_review_and_return_after_delivery(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    order_id = await place(api, key, quantity=2)
    early = await api.client.post(f"/v1/orders/{order_id}/reviews", json={"rating": 5},
                                  headers=bearer(key))
    assert early.status_code == 409
    await deliver(api, order_id)
    completed = await api.client.post(f"/v1/orders/{order_id}/receipt", headers=bearer(key))
    assert completed.json()["status"] == "completed"
    review = await api.client.post(f"/v1/orders/{order_id}/reviews",
                                   json={"rating": 4, "text": "Lovely mug"}, headers=bearer(key))
    assert review.status_code == 201
    assert (await api.client.post(f"/v1/orders/{order_id}/reviews", json={"rating": 1},
                                  headers=bearer(key))).status_code == 409
    too_many = {"lines": [{"sku": "SKU-MUG", "quantity": 3}], "reason": "chipped"}
    assert (await api.client.post(f"/v1/orders/{order_id}/returns", json=too_many,
                                  headers=bearer(key))).status_code == 422
    unknown = {"lines": [{"sku": "SKU-MUG", "quantity": 1, "restock": "bin"}], "reason": "x"}
    assert (await api.client.post(f"/v1/orders/{order_id}/returns", json=unknown,
                                  headers=bearer(key))).status_code == 422
    part = {"lines": [{"sku": "SKU-MUG", "quantity": 1, "restock": "write_off"}],
            "reason": "chipped"}
    accepted = await api.client.post(f"/v1/orders/{order_id}/returns", json=part,
                                     headers=bearer(key))
    assert accepted.status_code == 202 and accepted.json()["return_id"].startswith("ret_")
    total = (await api.client.get(f"/v1/orders/{order_id}", headers=bearer(key))
             ).json()["total_amount"]
    assert accepted.json()["refund"]["amount"] == total // 2 and not accepted.json()["last"]
    ok = {"lines": [{"sku": "SKU-MUG", "quantity": 1}], "reason": "chipped"}
    busy = await api.client.post(f"/v1/orders/{order_id}/returns", json=ok, headers=bearer(key))
    assert busy.status_code == 409 and "under way" in busy.json()["detail"]
    view = (await api.client.get(f"/v1/orders/{order_id}", headers=bearer(key))).json()
    assert view["status"] == "return_requested"
    [asked] = view["returns"]
    assert (asked["return_id"], asked["status"], asked["lines"][0]["restock"]) == (
        accepted.json()["return_id"], "requested", "write_off")
    assert [t["type"] for t in view["timeline"]] == [
        "OrderPlaced", "CustomerIdentified", "Delivered", "ReceiptConfirmed", "OrderCompleted",
        "LoyaltyPointsAccrued", "ReviewSubmitted", "ReturnRequested"]
    late = await place(api, key)
    await deliver(api, late, days_ago=31)
    assert (await api.client.post(f"/v1/orders/{late}/returns", json=ok, headers=bearer(key))
            ).status_code == 409


async def test_webhook_subscriptions_and_secret_rotation(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    key_b, _ = await api.shop("shop-b")
    body = {"url": "https://shop-a.example/hooks", "events": ["OrderPlaced", "Shipped"]}
    created = await api.client.post("/v1/webhooks", json=body, headers=bearer(key))
    assert created.status_code == 201
    hook = created.json()
    assert hook["secret"].startswith("whsec_")
    listed = (await api.client.get("/v1/webhooks", headers=bearer(key))).json()
    assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]]
    assert "secret" not in listed[0]
    path = f"/v1/webhooks/{hook['webhook_id']}"
    rotated = (await api.client.post(f"{path}/rotate-secret", headers=bearer(key))).json()
    assert rotated["secret"] != hook["secret"] and rotated["previous_secret_valid_until"]
    assert (await api.client.get(path, headers=bearer(key_b))).status_code == 404
    assert (await api.client.delete(path, headers=bearer(key_b))).status_code == 404
    assert (await api.client.delete(path, headers=bearer(key))).status_code == 204
    assert (await api.client.get(path, headers=bearer(key))).status_code == 404
    bad = await api.client.post("/v1/webhooks", headers=bearer(key),
                                json={"url": "https://x.example", "events": ["Nope"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "events.0"
