"""Shop webhooks from the running orders service to a receiver on loopback: signed, retried
with backoff while the receiver fails, logged, and never delivered twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import uvicorn
from fastapi import FastAPI, Request, Response

from alur.runtime.http import EmbeddedServer
from alur.runtime.signing import verify
from tests.e2e.helpers import order_body, place, wait_until
from tests.e2e.test_branches import stocked

RECEIVER_PORT = 8099
EVENTS = ["OrderPlaced", "PaymentConfirmed", "Delivered"]


class Receiver:
    """A shop's endpoint: answers 503 to the first `failures` deliveries, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures, self.secret = failures, ""
        self.received: list[tuple[str, str, bool]] = []  # (delivery id, type, signed right)
        self.placed: list[dict] = []  # the OrderPlaced events' data
        self.app = FastAPI()

        @self.app.post("/hooks/alur")
        async def hook(request: Request) -> Response:
            body = await request.body()
            if self.failures > 0:
                self.failures -= 1
                return Response(status_code=503)
            try:
                signature = request.headers.get("Alur-Signature", "").split(" ")[0]
                verify(self.secret, request.headers.get("Alur-Timestamp"), signature, "POST",
                       "/hooks/alur?shop=e2e", body, tolerance=300)
                signed = True
            except ValueError:
                signed = False
            event = json.loads(body)
            self.received.append((request.headers["Alur-Delivery"], event["type"], signed))
            if event["type"] == "OrderPlaced":
                self.placed.append(event["data"])
            return Response(status_code=204)


async def test_webhooks_are_signed_retried_logged_and_never_sent_twice(
        services, api, db) -> None:
    receiver = Receiver(failures=2)
    server = EmbeddedServer(uvicorn.Config(receiver.app, host="127.0.0.1", port=RECEIVER_PORT,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        created = await api.post("/v1/webhooks", json={
            "url": f"http://127.0.0.1:{RECEIVER_PORT}/hooks/alur?shop=e2e", "events": EVENTS})
        assert created.status_code == 201, created.text
        receiver.secret = created.json()["secret"]
        webhook_id = created.json()["webhook_id"]
        sku = await stocked(services)
        order_ids = [await place(api, order_body(sku)) for _ in range(3)]

        async def all_in() -> bool:
            return len(receiver.received) >= len(order_ids) * len(EVENTS)

        await wait_until(all_in, 90, "every subscribed event at the receiver")
        await asyncio.sleep(3 * services.webhook_backoff)  # nothing more may come
        types = Counter(t for _, t, _ in receiver.received)
        assert types == {t: len(order_ids) for t in EVENTS}
        assert all(signed for _, _, signed in receiver.received)
        # Sealed in Alur, the customer's personal data reaches the shop's webhook in clear.
        assert [(d["customer"]["email"], d["delivery"]["address"]["line1"], d["personal"])
                for d in receiver.placed] == [("ada@example.com", "1 Main St", None)] * 3
        ids = [d for d, _, _ in receiver.received]
        assert len(ids) == len(set(ids))
        log = await db.fetch(
            "SELECT status, attempts, last_status FROM orders.webhook_deliveries"
            " WHERE webhook_id = $1", webhook_id)
        assert len(log) == len(order_ids) * len(EVENTS)
        assert {r["status"] for r in log} == {"delivered"}
        assert sum(r["attempts"] for r in log) == len(log) + 2  # the two 503s were retried
        assert {r["last_status"] for r in log} == {204}
        deleted = await api.delete(f"/v1/webhooks/{webhook_id}")
        assert deleted.status_code == 204
        after = await place(api, order_body(sku))
        await asyncio.sleep(2)
        assert not await db.fetchval("SELECT count(*) FROM orders.webhook_deliveries"
                                     " WHERE order_id = $1", after)
    finally:
        server.should_exit = True
        await serving
