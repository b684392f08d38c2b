"""One test per branch of the sales flow, over HTTP, with real Kafka, PostgreSQL, the gateway
simulator and the five services as processes. Each ends by running the invariant checker on
its orders."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from alur.infra import stack
from alur.tools.invariants import check
from tests.e2e.helpers import new_sku, order_body, place, set_stock, statuses, wait_until

HOME = ["OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
        "ShipmentCreated", "Shipped", "InTransit", "OutForDelivery", "Delivered"]


async def reach(db, order_id: str, event_type: str, timeout: float = 60) -> list[str]:  # noqa: ANN001
    """Wait until the orders service recorded `event_type` for the order; its event types."""
    async def seen() -> bool:
        return event_type in (await statuses(db, [order_id]))[order_id]

    await wait_until(seen, timeout, f"{event_type} of {order_id}")
    return (await statuses(db, [order_id]))[order_id]


async def events_of(db, schema: str, order_id: str) -> list[dict]:  # noqa: ANN001
    rows = await db.fetch(f"SELECT type, body FROM {schema}.events WHERE stream_id = $1 "
                          "ORDER BY version", order_id)
    return [{"type": r["type"], **json.loads(r["body"])["data"]} for r in rows]


async def stock_of(db, sku: str) -> tuple[int, int]:  # noqa: ANN001
    row = await db.fetchrow("SELECT sum(on_hand) AS h, sum(reserved) AS r FROM inventory.stock "
                            "WHERE sku = $1", sku)
    return int(row["h"]), int(row["r"])


async def no_violations(services, db, order_ids: list[str]) -> None:  # noqa: ANN001
    async with db.acquire() as conn:
        report = await check(conn, order_ids)
    assert report.violations == [], report.violations


async def stocked(services, units: int = 10) -> str:  # noqa: ANN001
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, units)])
    return sku


async def test_out_of_stock_is_cancelled_naming_the_short_sku(services, api, db) -> None:
    sku = await stocked(services, 1)
    order_id = await place(api, order_body(sku, quantity=2))
    assert (await reach(db, order_id, "OrderCancelled"))[-2:] == ["StockRejected",
                                                                   "OrderCancelled"]
    rejected = [e for e in await events_of(db, "inventory", order_id)
                if e["type"] == "StockRejected"]
    assert rejected[0]["short_skus"] == [sku]
    await no_violations(services, db, [order_id])


async def test_a_declined_card_cancels_and_releases_the_stock(services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, token="tok_decline"))
    await reach(db, order_id, "OrderCancelled")

    async def released() -> bool:
        return await stock_of(db, sku) == (10, 0)

    await wait_until(released, 30, "the stock to be released")
    await no_violations(services, db, [order_id])


async def test_a_bank_transfer_paid_through_the_gateway_is_delivered(services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, method="bank_transfer"))
    await reach(db, order_id, "PaymentPending")
    [pending] = [e for e in await events_of(db, "payments", order_id)
                 if e["type"] == "PaymentPending"]
    shown = (await api.get(f"/v1/orders/{order_id}")).json()  # what the shop tells its customer
    assert shown["status"] == "awaiting_payment"
    assert shown["bank_transfer"]["virtual_account"] == pending["virtual_account"]
    transfer = shown["bank_transfer"]
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=10) as gateway:
        paid = await gateway.post(
            f"/v1/virtual-accounts/{transfer['virtual_account']}/transfers",
            json={"amount": transfer["amount"], "currency": transfer["currency"]})
    assert paid.status_code == 201 and paid.json()["callback_status"] == 200
    types = await reach(db, order_id, "Delivered")
    assert types == [*HOME[:2], "PaymentPending", *HOME[2:]]
    await no_violations(services, db, [order_id])


async def pay_transfer(services, pending: dict) -> int:  # noqa: ANN001
    """The customer's bank pays the amount due into the order's virtual account; the status
    the gateway's first callback got (0: payments did not answer)."""
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=10) as gateway:
        paid = await gateway.post(f"/v1/virtual-accounts/{pending['virtual_account']}/transfers",
                                  json=pending["amount"])
    assert paid.status_code == 201, paid.text
    return int(paid.json()["callback_status"] or 0)


async def pending_transfer(db, order_id: str) -> dict:  # noqa: ANN001
    await reach(db, order_id, "PaymentPending")
    [pending] = [e for e in await events_of(db, "payments", order_id)
                 if e["type"] == "PaymentPending"]
    return pending


async def test_an_unpaid_bank_transfer_expires_and_money_paid_after_is_refunded(
        services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, method="bank_transfer"))
    pending = await pending_transfer(db, order_id)
    types = await reach(db, order_id, "OrderCancelled", timeout=120)
    assert types[-2:] == ["PaymentExpired", "OrderCancelled"]
    view = (await api.get(f"/v1/orders/{order_id}")).json()
    assert view["status"] == "cancelled"

    async def released() -> bool:
        return await stock_of(db, sku) == (10, 0)

    await wait_until(released, 30, "the stock to be released")
    await pay_transfer(services, pending)  # too late: the money must go back by itself

    async def refunded() -> bool:
        return any(e["type"] == "RefundIssued" and e["reason"] == "late_transfer"
                   for e in await events_of(db, "payments", order_id))

    await wait_until(refunded, 30, "the late transfer to be refunded")
    await no_violations(services, db, [order_id])


async def test_transfers_paid_in_time_while_payments_was_down_are_not_expired(
        services, api, db) -> None:
    """The gateway's callbacks fail while payments is down; the transfers' deadlines pass.
    When payments returns, it asks the gateway before expiring anything (and the gateway
    keeps calling back until payments acknowledges): every order ships, none is cancelled."""
    sku = await stocked(services)
    order_ids = [await place(api, order_body(sku, method="bank_transfer")) for _ in range(3)]
    pendings = [await pending_transfer(db, o) for o in order_ids]
    stack.services_down(services, ("payments",))
    try:
        assert [await pay_transfer(services, p) for p in pendings] == [0, 0, 0]
        deadline = max(datetime.fromisoformat(p["expires_at"]) for p in pendings)
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 2)
    finally:
        await asyncio.to_thread(stack.start_process, services, "payments")
    for order_id in order_ids:
        types = await reach(db, order_id, "Delivered", timeout=90)
        assert "PaymentExpired" not in types and "OrderCancelled" not in types, types
    await no_violations(services, db, order_ids)


async def test_cash_on_delivery_is_paid_when_delivered(services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, method="cod"))
    types = await reach(db, order_id, "PaymentConfirmed")
    assert types == [*HOME[:2], *HOME[3:], "PaymentConfirmed"]
    await no_violations(services, db, [order_id])


async def test_click_and_collect_completes_when_picked_up(services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, store_id="ST-LIS-1"))
    types = await reach(db, order_id, "OrderCompleted")
    assert types[-4:] == ["ReadyForPickup", "PickedUp", "OrderCompleted",
                          "LoyaltyPointsAccrued"]

    async def committed() -> bool:
        return await stock_of(db, sku) == (9, 0)

    await wait_until(committed, 30, "the picked-up units to leave the shelf")
    await no_violations(services, db, [order_id])


async def test_cancel_before_payment_and_after_payment(services, api, db) -> None:
    sku = await stocked(services)
    unpaid = await place(api, order_body(sku, method="bank_transfer"))
    await reach(db, unpaid, "PaymentPending")
    assert (await api.post(f"/v1/orders/{unpaid}/cancel")).status_code == 200

    paid = await place(api, order_body(sku))
    await reach(db, paid, "PaymentConfirmed")  # the courier collects 2 s after booking
    cancelled = await api.post(f"/v1/orders/{paid}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    async def refunded() -> bool:
        return any(e["type"] == "RefundIssued" for e in await events_of(db, "payments", paid))

    await wait_until(refunded, 30, "the refund")
    async with httpx.AsyncClient(base_url=services.gateway_url) as gateway:
        assert len((await gateway.get("/v1/refunds", params={"reference": paid})).json()) == 1
        assert (await gateway.get("/v1/refunds", params={"reference": unpaid})).json() == []

    async def released() -> bool:
        return await stock_of(db, sku) == (10, 0)

    await wait_until(released, 30, "both reservations to be released")
    assert "Shipped" not in (await statuses(db, [paid]))[paid]
    await no_violations(services, db, [unpaid, paid])


async def test_a_released_order_can_no_longer_be_cancelled_and_ships(services, api, db) -> None:
    """The cancel window ends when orders releases the order to shipping: shipping books only
    then, so a cancel accepted before it never races a courier, and one after it is refused."""
    sku = await stocked(services)
    order_id = await place(api, order_body(sku))
    types = await reach(db, order_id, "OrderReadyToShip")
    assert types.index("PaymentConfirmed") < types.index("OrderReadyToShip")
    assert "ShipmentCreated" not in types[:types.index("OrderReadyToShip")]
    refused = await api.post(f"/v1/orders/{order_id}/cancel")
    assert refused.status_code == 409 and "no longer be cancelled" in refused.text, refused.text
    assert (await reach(db, order_id, "Delivered"))[-1] == "Delivered"
    assert "OrderCancelled" not in (await statuses(db, [order_id]))[order_id]
    await no_violations(services, db, [order_id])


async def test_a_return_is_refunded_restocked_and_its_points_reversed(services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, quantity=2))
    await reach(db, order_id, "Delivered")
    assert (await api.post(f"/v1/orders/{order_id}/receipt")).json()["status"] == "completed"
    review = await api.post(f"/v1/orders/{order_id}/reviews", json={"rating": 5, "text": "ok"})
    assert review.status_code == 201
    returned = await api.post(f"/v1/orders/{order_id}/returns", json={
        "lines": [{"sku": sku, "quantity": 2}], "reason": "wrong size"})
    assert returned.status_code == 202, returned.text
    types = await reach(db, order_id, "OrderReturned")
    assert types[-2:] == ["OrderReturned", "LoyaltyPointsReversed"]
    loyalty = [e for e in await events_of(db, "orders", order_id) if "points" in e]
    assert [(e["type"], e["points"]) for e in loyalty] == [
        ("LoyaltyPointsAccrued", 25), ("LoyaltyPointsReversed", 25)]

    async def restocked() -> bool:
        return await stock_of(db, sku) == (10, 0)

    await wait_until(restocked, 30, "the returned units back on the shelf")
    await no_violations(services, db, [order_id])


async def test_goodwill_refunds_pay_part_back_and_a_later_return_only_the_rest(
        services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, quantity=2))  # 2 x 12.50 EUR, by card
    await reach(db, order_id, "Delivered")
    refunds = f"/v1/orders/{order_id}/refunds"
    first = await api.post(refunds, json={"amount": {"amount": 500, "currency": "EUR"},
                                          "reason": "the box arrived dented"})
    assert first.status_code == 202, first.text
    too_much = await api.post(refunds, json={"amount": {"amount": 2000, "currency": "EUR"},
                                             "reason": "still unhappy"})
    assert too_much.status_code == 422 and "at most 1999" in too_much.text
    wrong = await api.post(refunds, json={"amount": {"amount": 100, "currency": "IDR"},
                                          "reason": "x"})
    assert wrong.status_code == 422, wrong.text
    assert (await api.post(f"/v1/orders/{order_id}/receipt")).json()["status"] == "completed"
    second = await api.post(refunds, json={"amount": {"amount": 250, "currency": "EUR"},
                                           "reason": "a scratch found later"})
    assert second.status_code == 202, second.text

    async def two_goodwill_refunds() -> bool:
        return [e["amount"]["amount"] for e in await events_of(db, "payments", order_id)
                if e["type"] == "RefundIssued"] == [500, 250]

    await wait_until(two_goodwill_refunds, 30, "both goodwill refunds paid")
    loyalty = [(e["type"], e["points"]) for e in await events_of(db, "orders", order_id)
               if "points" in e]
    # 25.00 paid, 5.00 back before completion: 20 points; 2.50 back after it: 3 reversed.
    assert loyalty == [("LoyaltyPointsAccrued", 20), ("LoyaltyPointsReversed", 3)]
    await no_violations(services, db, [order_id])

    returned = await api.post(f"/v1/orders/{order_id}/returns", json={
        "lines": [{"sku": sku, "quantity": 2}], "reason": "changed my mind"})
    assert returned.status_code == 202, returned.text
    await reach(db, order_id, "OrderReturned")
    paid_back = [(e["reason"], e["amount"]["amount"]) for e in
                 await events_of(db, "payments", order_id) if e["type"] == "RefundIssued"]
    assert paid_back == [("goodwill", 500), ("goodwill", 250), ("returned", 1750)]
    closed = [e for e in await events_of(db, "orders", order_id) if e["type"] == "OrderReturned"]
    assert closed[0]["refunded"]["amount"] == 1750
    await no_violations(services, db, [order_id])


async def test_two_partial_returns_pay_back_their_share_restock_or_write_off_then_end_it(
        services, api, db) -> None:
    mug, cup = await stocked(services), await stocked(services)
    body = order_body(mug, quantity=3)  # 3 x 12.50 and 2 x 12.50 EUR: 62.50, by card
    body["lines"].append({"sku": cup, "quantity": 2,  # type: ignore[attr-defined]
                          "unit_price": {"amount": 1250, "currency": "EUR"}})
    order_id = await place(api, body)
    await reach(db, order_id, "Delivered")
    assert (await api.post(f"/v1/orders/{order_id}/receipt")).json()["status"] == "completed"
    returns = f"/v1/orders/{order_id}/returns"
    first = await api.post(returns, json={"lines": [
        {"sku": mug, "quantity": 1}, {"sku": cup, "quantity": 1, "restock": "write_off"}],
        "reason": "one mug too many, one cup broken"})
    assert first.status_code == 202, first.text
    assert (first.json()["refund"]["amount"], first.json()["last"]) == (2500, False)
    await reach(db, order_id, "ReturnClosed", timeout=90)
    view = (await api.get(f"/v1/orders/{order_id}")).json()
    assert view["status"] == "completed"
    assert [(r["status"], r["refund"]["amount"]) for r in view["returns"]] == [("closed", 2500)]
    assert await stock_of(db, mug) == (8, 0) and await stock_of(db, cup) == (8, 0)
    await no_violations(services, db, [order_id])

    too_many = await api.post(returns, json={"lines": [{"sku": cup, "quantity": 2}],
                                             "reason": "x"})
    assert too_many.status_code == 422 and "has 1 of the 2 ordered" in too_many.text
    last = await api.post(returns, json={"lines": [
        {"sku": mug, "quantity": 2}, {"sku": cup, "quantity": 1}], "reason": "did not like them"})
    assert last.status_code == 202, last.text
    assert (last.json()["refund"]["amount"], last.json()["last"]) == (3750, True)
    await reach(db, order_id, "OrderReturned", timeout=90)
    paid_back = [(e["reason"], e["amount"]["amount"]) for e in
                 await events_of(db, "payments", order_id) if e["type"] == "RefundIssued"]
    assert paid_back == [("returned", 2500), ("returned", 3750)]
    loyalty = [(e["type"], e["points"]) for e in await events_of(db, "orders", order_id)
               if "points" in e]
    assert loyalty == [("LoyaltyPointsAccrued", 62), ("LoyaltyPointsReversed", 25),
                       ("LoyaltyPointsReversed", 37)]

    async def restocked() -> bool:
        return await stock_of(db, mug) == (10, 0) and await stock_of(db, cup) == (9, 0)

    await wait_until(restocked, 30, "the returned units back on the shelf, the broken cup not")
    written_off = [e for e in await events_of(db, "inventory", order_id)
                   if e["type"] == "StockWrittenOff"]
    assert [(x["sku"], x["quantity"]) for e in written_off for x in e["lines"]] == [(cup, 1)]
    await no_violations(services, db, [order_id])


async def test_a_failed_delivery_is_attempted_again(services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, postal_code="0000-123"))
    types = await reach(db, order_id, "Delivered")
    assert types[-4:] == ["OutForDelivery", "DeliveryFailed", "OutForDelivery", "Delivered"]
    assert "DeliveryFailed" in types
    await no_violations(services, db, [order_id])


async def test_an_unpaid_reservation_expires(services, api, db) -> None:
    sku = await stocked(services)
    stack.services_down(services, ("payments",))  # nobody takes the payment up
    try:
        order_id = await place(api, order_body(sku))
        types = await reach(db, order_id, "OrderCancelled", timeout=120)
        assert types[-2:] == ["ReservationExpired", "OrderCancelled"]
    finally:
        await asyncio.to_thread(stack.start_process, services, "payments")

    async def seen_by_payments() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM payments.events WHERE stream_id = $1"
                                      " AND type = 'OrderCancelled'", order_id))

    await wait_until(seen_by_payments, 60, "payments to catch up")
    assert await stock_of(db, sku) == (10, 0)
    async with httpx.AsyncClient(base_url=services.gateway_url) as gateway:
        assert (await gateway.get("/v1/charges", params={"reference": order_id})).json() == []
    await no_violations(services, db, [order_id])


def till_sale(sku: str, quantity: int, sold_at: datetime, method: str = "cash") -> dict:
    body = order_body(sku, quantity=quantity)
    return {"sale_id": f"R-{uuid.uuid4().hex[:10]}", "sold_at": sold_at.isoformat(),
            "customer": body["customer"], "lines": body["lines"], "payment": {"method": method}}


async def test_a_late_point_of_sale_batch_completes_without_shipping(services, api, db) -> None:
    sku, store = new_sku(), f"ST-{uuid.uuid4().hex[:6]}"
    await set_stock(services, [(store, sku, 4)])
    morning = datetime.now(UTC) - timedelta(hours=6)  # the till was offline since the morning
    sales = [till_sale(sku, 1, morning), till_sale(sku, 2, morning + timedelta(hours=1), "card"),
             till_sale(sku, 3, morning + timedelta(hours=2))]  # 6 sold, the books held 4
    bad = [sales[0], {**till_sale(sku, 1, datetime.now(UTC) + timedelta(hours=1))},
           till_sale("SKU-NOT-SOLD-HERE", 1, morning)]
    refused = await api.post("/v1/pos/sales", json={"store_id": store, "sales": bad})
    assert refused.status_code == 422, refused.text
    assert {e["field"] for e in refused.json()["errors"]} == {"sales.1", "sales.2.lines.0.sku"}
    first = await api.post("/v1/pos/sales", json={"store_id": store, "sales": sales})
    assert first.status_code == 202, first.text
    recorded = first.json()["sales"]
    assert [s["already_recorded"] for s in recorded] == [False] * 3
    again = await api.post("/v1/pos/sales", json={"store_id": store, "sales": sales})
    assert [(s["order_id"], s["already_recorded"]) for s in again.json()["sales"]] == [
        (s["order_id"], True) for s in recorded]
    order_ids = [s["order_id"] for s in recorded]
    for order_id in order_ids:
        types = await reach(db, order_id, "OrderCompleted")
        assert not {"StockReserved", "ShipmentCreated", "Delivered"} & set(types)
        placed = (await events_of(db, "orders", order_id))[0]
        assert placed["sold_at"] is not None and placed["delivery"]["store_id"] == store
    payments = [e for o in order_ids for e in await events_of(db, "payments", o)
                if e["type"] == "PaymentConfirmed"]
    assert [p["method"] for p in payments] == ["cash", "card", "cash"]
    assert await db.fetchval("SELECT count(*) FROM gateway_sim.charges WHERE reference ="
                             " ANY($1::text[])", order_ids) == 0

    async def off_the_shelf() -> bool:
        return await stock_of(db, sku) == (0, 0)

    await wait_until(off_the_shelf, 30, "the store's stock to be committed")
    commits = [e for o in order_ids for e in await events_of(db, "inventory", o)
               if e["type"] == "StockCommitted"]
    assert sum(x["quantity"] for c in commits for x in c["recounted"]) == 2
    cancel = await api.post(f"/v1/orders/{order_ids[0]}/cancel")
    assert cancel.status_code == 409
    await no_violations(services, db, order_ids)


async def test_a_till_sale_is_returned_at_its_store_restocked_there_and_paid_back_by_the_till(
        services, api, db) -> None:
    sku, store = new_sku(), f"ST-{uuid.uuid4().hex[:6]}"
    await set_stock(services, [(store, sku, 5)])
    sale = till_sale(sku, 3, datetime.now(UTC) - timedelta(hours=2), "card")
    recorded = await api.post("/v1/pos/sales", json={"store_id": store, "sales": [sale]})
    assert recorded.status_code == 202, recorded.text
    [order_id] = [s["order_id"] for s in recorded.json()["sales"]]
    await reach(db, order_id, "OrderCompleted")
    returns = f"/v1/orders/{order_id}/returns"
    part = await api.post(returns, json={"lines": [{"sku": sku, "quantity": 1}],
                                         "reason": "a gift the customer had twice"})
    assert part.status_code == 202, part.text
    await reach(db, order_id, "ReturnClosed")
    rest = await api.post(returns, json={"lines": [
        {"sku": sku, "quantity": 2, "restock": "write_off"}], "reason": "cracked glaze"})
    assert rest.status_code == 202 and rest.json()["last"], rest.text
    await reach(db, order_id, "OrderReturned")
    refunds = [(e["refund_id"], e["amount"]["amount"])
               for e in await events_of(db, "payments", order_id) if e["type"] == "RefundIssued"]
    total = (await events_of(db, "orders", order_id))[0]["total"]["amount"]
    assert [r for r, _ in refunds] == [f"till:{part.json()['return_id']}",
                                       f"till:{rest.json()['return_id']}"]
    assert sum(a for _, a in refunds) == total and refunds[0][1] == total // 3
    assert await db.fetchval("SELECT count(*) FROM gateway_sim.refunds WHERE reference = $1",
                             order_id) == 0
    shipping = {e["type"] for e in await events_of(db, "shipping", order_id)}
    assert "ReturnShipmentCreated" not in shipping

    async def one_back_on_the_shelf() -> bool:
        return await stock_of(db, sku) == (3, 0)  # 5 - 3 sold + 1 back; 2 written off

    await wait_until(one_back_on_the_shelf, 30, "the good unit back on the store's shelf")
    await no_violations(services, db, [order_id])
