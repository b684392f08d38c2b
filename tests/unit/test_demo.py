"""The demo's shops run against state that earlier demos left: every run sends requests of its
own, so the API cannot answer them with an earlier run's orders."""

import json
import uuid

import httpx

from alur.demo import _place
from alur.simulators.customers import Customers


async def run_once(sent: list[httpx.Request]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/v1/pos/sales":
            sales = json.loads(request.content)["sales"]
            return httpx.Response(202, json={"sales": [
                {"order_id": f"ord-{uuid.uuid4().hex}"} for _ in sales]})
        return httpx.Response(202, json={"order_id": f"ord-{uuid.uuid4().hex}"})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        customers = Customers(api, api, {"shop-1": "key-1", "shop-2": "key-2"})
        run = await _place(40, customers, marketplace=None)
    assert len(run.orders) == 40 and run.till_batches > 0


async def test_a_second_demo_sends_new_keys_and_new_receipts() -> None:
    first: list[httpx.Request] = []
    second: list[httpx.Request] = []
    await run_once(first)
    await run_once(second)

    def keys(sent: list[httpx.Request]) -> set[str]:
        return {r.headers["Idempotency-Key"] for r in sent}

    def receipts(sent: list[httpx.Request]) -> set[str]:
        return {s["sale_id"] for r in sent if r.url.path == "/v1/pos/sales"
                for s in json.loads(r.content)["sales"]}

    assert len(keys(first)) == len(first) and receipts(first)
    assert not keys(first) & keys(second)
    assert not receipts(first) & receipts(second)
