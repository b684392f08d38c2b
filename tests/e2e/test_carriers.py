"""The two carrier simulators, each its own process, and the shipping service's signed carrier
webhook: each parcel goes to the carrier for its region (click-and-collect to nusapost), every
step arrives as a signed report, and a report that is forged, about another parcel or out of
sequence records nothing. Reports sent while shipping is down are not lost."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx

from alur.infra import stack
from alur.runtime.signing import signed_headers
from tests.e2e.helpers import order_body, place, wait_until
from tests.e2e.test_branches import HOME, events_of, no_violations, reach, stocked


async def parcels(settings, carrier: str, order_id: str) -> list[dict]:  # noqa: ANN001
    """What the carrier simulator holds about an order's parcels."""
    async with httpx.AsyncClient(base_url=settings.carrier_url(carrier), timeout=5) as client:
        answer = await client.get("/v1/shipments", params={"reference": order_id})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def test_each_carrier_delivers_its_parcels_through_signed_reports(
        services, api, db) -> None:
    sku = await stocked(services)
    routes = {"kilat": order_body(sku, postal_code="1100-001"),
              "nusapost": order_body(sku, postal_code="8000-001"),
              "nusapost-store": order_body(sku, store_id="ST-LIS")}
    orders = {route: await place(api, body) for route, body in routes.items()}
    for route, order_id in orders.items():
        done = "PickedUp" if route.endswith("store") else "Delivered"
        await reach(db, order_id, done)
        carrier = route.split("-")[0]
        [created] = [e for e in await events_of(db, "shipping", order_id)
                     if e["type"] == "ShipmentCreated"]
        assert created["carrier"] == carrier
        [parcel] = await parcels(services, carrier, order_id)
        assert parcel["tracking_number"] == created["tracking_number"]
        expected = ("picked_up", 3) if done == "PickedUp" else ("delivered", 4)
        assert (parcel["status"], parcel["updates_acknowledged"],
                parcel["last_report_status"]) == (*expected, 200)
    assert (await events_of(db, "orders", orders["kilat"]))[-1]["type"] == "Delivered"
    await no_violations(services, db, list(orders.values()))


async def post_report(settings, carrier: str, report: dict, secret: str | None = None  # noqa: ANN001
                      ) -> httpx.Response:
    path = f"/v1/carriers/{carrier}/events"
    body = json.dumps(report).encode()
    headers = {"Content-Type": "application/json", **signed_headers(
        secret or settings.carrier_secret(carrier), "POST", path, body, prefix="Carrier")}
    async with httpx.AsyncClient(base_url=settings.shipping_url, timeout=5) as client:
        return await client.post(path, content=body, headers=headers)


async def test_forged_foreign_and_out_of_sequence_reports_record_nothing(
        services, api, db) -> None:
    sku = await stocked(services)
    order_id = await place(api, order_body(sku, postal_code="1100-001"))
    await reach(db, order_id, "Delivered")
    [created] = [e for e in await events_of(db, "shipping", order_id)
                 if e["type"] == "ShipmentCreated"]
    before = await events_of(db, "shipping", order_id)
    report = {"id": "forged-1", "carrier": "kilat", "tracking_number":
              created["tracking_number"], "reference": order_id, "status": "out_for_delivery",
              "occurred_at": datetime.now(UTC).isoformat()}
    forged = await post_report(services, "kilat", report, secret="not-the-secret")
    assert forged.status_code == 401
    late = await post_report(services, "kilat", {**report, "id": "late-1"})
    assert late.status_code == 409 and "delivered" in late.json()["detail"]
    foreign = await post_report(services, "nusapost", {**report, "id": "f-1",
                                                       "carrier": "nusapost"})
    assert foreign.status_code == 404
    unknown = await post_report(services, "kilat", {**report, "id": "u-1",
                                                    "reference": "ord_nope"})
    assert unknown.status_code == 404
    nobody = await post_report(services, "fedex", {**report, "id": "n-1"}, secret="x")
    assert nobody.status_code == 404
    again = await post_report(services, "kilat", {**report, "id": "kilat-dup",
                                                  "status": "delivered"})
    assert again.status_code == 200  # the same step reported again: accepted, not recorded
    assert await events_of(db, "shipping", order_id) == before


async def test_reports_sent_while_shipping_is_down_arrive_after_it_restarts(
        services, api, db) -> None:
    sku = await stocked(services)
    order_ids = [await place(api, order_body(sku, postal_code=code))
                 for code in ("1100-001", "8000-001", "0000-100")]
    for order_id in order_ids:
        await reach(db, order_id, "ShipmentCreated")
    stack.services_down(services, ("shipping",))  # the supervisor keeps it down
    try:
        async def refused() -> bool:
            found = [p for carrier in ("kilat", "nusapost") for o in order_ids
                     for p in await parcels(services, carrier, o)]
            return sum(p["last_report_status"] == 0 for p in found) >= 2

        await wait_until(refused, 30, "the carriers to find shipping down")
    finally:
        await asyncio.to_thread(stack.start_process, services, "shipping")
    for order_id in order_ids:
        types = await reach(db, order_id, "Delivered", timeout=90)
        parcel = [t for t in types if t in HOME or t == "DeliveryFailed"]
        assert parcel.count("Shipped") == 1 and parcel.count("Delivered") == 1
    await no_violations(services, db, order_ids)
