"""Carrier contract: the in-memory fake books, stops and reports parcel steps as both carrier
simulators do, each its own process, reporting to a webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from alur.runtime.errors import InfrastructureError
from alur.runtime.http import EmbeddedServer
from alur.runtime.signing import BadSignature, verify
from alur.settings import Settings
from schemas import Address
from services.shipping.carrier import Carrier, HttpCarrier, InMemoryCarrier

RECEIVER_PORT = 8113
MISSED = Address(line1="1 Rua Augusta", city="Lisboa", postal_code="0000-100", country="PT")
HOME = Address(line1="2 Rua Augusta", city="Lisboa", postal_code="1100-001", country="PT")


@dataclass
class Seen:
    report: dict[str, Any]
    acknowledged: bool
    signed: bool


@dataclass
class Harness:
    """A carrier, and the reports it sends about a parcel (in arrival order)."""

    carrier: Carrier
    fail_once: set[str] = field(default_factory=set)  # tracking numbers: 503 the first report
    seen: list[Seen] = field(default_factory=list)
    memory: InMemoryCarrier | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def _answer(self, report: dict[str, Any], signed: bool) -> bool:
        tracking = report["tracking_number"]
        refuse = tracking in self.fail_once
        self.fail_once.discard(tracking)
        self.seen.append(Seen(report, not refuse, signed))
        return not refuse

    async def reports(self, tracking: str, count: int, timeout: float = 30.0
                      ) -> list[Seen]:
        """Wait for `count` acknowledged reports about `tracking`; all seen about it."""
        mine = lambda: [s for s in self.seen if s.report["tracking_number"] == tracking]  # noqa: E731
        deadline = time.monotonic() + timeout
        while sum(s.acknowledged for s in mine()) < count:
            if self.memory is not None:
                due = self.memory.next_due()
                assert due is not None, "the fake has no step coming"
                self.now = max(self.now, due)
                for report in self.memory.due(self.now):
                    if self._answer(report, signed=True):
                        self.memory.acknowledged(report)
            else:
                assert time.monotonic() < deadline, f"only {mine()} arrived"
                await asyncio.sleep(0.1)
        return mine()


def receiver_app(harness: Harness, secret: str) -> FastAPI:
    app = FastAPI()

    @app.post("/carrier/events")
    async def events(request: Request) -> Response:
        body = await request.body()
        try:
            verify(secret, request.headers.get("Carrier-Timestamp"),
                   request.headers.get("Carrier-Signature"), "POST", "/carrier/events", body, 300)
            signed = True
        except BadSignature:
            signed = False
        return Response(status_code=200 if harness._answer(await request.json(), signed)
                        else 503)

    return app


@pytest.fixture(params=["memory", "kilat", "nusapost"])
async def harness(request: pytest.FixtureRequest, infra: Settings) -> AsyncIterator[Harness]:
    if request.param == "memory":
        fake = InMemoryCarrier("kilat", infra.carrier_pickup_after, infra.carrier_step_after)
        h = Harness(fake, memory=fake)
        fake.clock = lambda: h.now
        yield h
        return
    name = request.param
    real = HttpCarrier(name, infra.carrier_url(name),
                       f"http://127.0.0.1:{RECEIVER_PORT}/carrier/events")
    h = Harness(real)
    server = EmbeddedServer(uvicorn.Config(receiver_app(h, infra.carrier_secret(name)),
                                           host="127.0.0.1", port=RECEIVER_PORT,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield h
    finally:
        server.should_exit = True
        await serving
        await real.close()


def ref() -> str:
    return f"o-{uuid.uuid4().hex}"


async def test_the_same_key_books_the_same_parcel_and_another_request_is_refused(
        harness: Harness) -> None:
    order = ref()
    first = await harness.carrier.book(f"{order}:shipment", order, "home", HOME, None)
    again = await harness.carrier.book(f"{order}:shipment", order, "home", HOME, None)
    assert again == first and first.tracking_number and first.shipment_id
    with pytest.raises(InfrastructureError) as refused:
        await harness.carrier.book(f"{order}:shipment", order, "home", MISSED, None)
    assert refused.value.retriable is False


async def test_a_missed_home_delivery_is_reported_step_by_step_and_signed(
        harness: Harness) -> None:
    order = ref()
    booking = await harness.carrier.book(f"{order}:shipment", order, "home", MISSED, None)
    seen = await harness.reports(booking.tracking_number, 6)
    assert [s.report["status"] for s in seen] == [
        "shipped", "in_transit", "out_for_delivery", "delivery_failed", "out_for_delivery",
        "delivered"]
    assert all(s.signed for s in seen)
    assert len({s.report["id"] for s in seen}) == 6
    assert {s.report["reference"] for s in seen} == {order}
    failed = seen[3].report
    assert failed["reason"] and failed["next_attempt_at"] > failed["occurred_at"]


async def test_a_store_parcel_waits_in_the_store_and_a_return_comes_back(
        harness: Harness) -> None:
    order = ref()
    to_store = await harness.carrier.book(f"{order}:shipment", order, "store", None, "ST-LIS")
    back = await harness.carrier.book(f"{order}:r1:return", order, "return", HOME, None)
    stored = await harness.reports(to_store.tracking_number, 3)
    assert [s.report["status"] for s in stored] == ["shipped", "ready_for_pickup", "picked_up"]
    assert stored[-1].report["store_id"] == "ST-LIS"
    returned = await harness.reports(back.tracking_number, 3)
    assert [s.report["status"] for s in returned] == ["shipped", "in_transit", "delivered"]


async def test_a_parcel_is_cancelled_before_collection_and_recalled_until_it_arrives(
        harness: Harness) -> None:
    order = ref()
    stopped = await harness.carrier.book(f"{order}:a", order, "home", HOME, None)
    moving = await harness.carrier.book(f"{order}:b", order, "home", HOME, None)
    arriving = await harness.carrier.book(f"{order}:c", order, "store", None, "ST-LIS")
    assert await harness.carrier.cancel(stopped.tracking_number) == "cancelled"
    assert await harness.carrier.cancel(stopped.tracking_number) == "cancelled"
    await harness.reports(moving.tracking_number, 2)
    assert await harness.carrier.cancel(moving.tracking_number) == "recalled"
    assert await harness.carrier.cancel(moving.tracking_number) == "recalled"
    # It may have taken one more step while the cancel was on its way; then it turns back.
    statuses: list[str] = []
    while "returned_to_sender" not in statuses:
        assert len(statuses) < 4, statuses
        seen = await harness.reports(moving.tracking_number, len(statuses) + 1)
        statuses = [s.report["status"] for s in seen if s.acknowledged]
    assert statuses in (["shipped", "in_transit", "returned_to_sender"],
                        ["shipped", "in_transit", "out_for_delivery", "returned_to_sender"])
    assert await harness.carrier.cancel(moving.tracking_number) == "recalled"
    await harness.reports(arriving.tracking_number, 3)
    assert await harness.carrier.cancel(arriving.tracking_number) == "arrived"
    assert not [s for s in harness.seen
                if s.report["tracking_number"] == stopped.tracking_number]


async def test_a_report_not_acknowledged_comes_again_with_the_same_id(
        harness: Harness) -> None:
    order = ref()
    booking = await harness.carrier.book(f"{order}:shipment", order, "store", None, "ST-POR")
    harness.fail_once.add(booking.tracking_number)
    seen = await harness.reports(booking.tracking_number, 3)
    assert [(s.report["status"], s.acknowledged) for s in seen] == [
        ("shipped", False), ("shipped", True), ("ready_for_pickup", True),
        ("picked_up", True)]
    assert seen[0].report["id"] == seen[1].report["id"]
