"""Idempotency-Key: retries answer the first response, misuse is refused, duplicates racing
each other create one order."""

from __future__ import annotations

import asyncio

from alur.runtime.db import advisory_key
from tests.api.conftest import Api, bearer, mug_order
from tests.api.test_auth import assert_problem, orders_in_store


async def test_the_same_key_and_body_answer_the_first_response_again(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    headers, body = bearer(key) | {"Idempotency-Key": "order-1042"}, mug_order()
    first = await api.client.post("/v1/orders", json=body, headers=headers)
    again = await api.client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await orders_in_store(api) == 1


async def test_the_same_key_with_another_body_is_422(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    headers = bearer(key) | {"Idempotency-Key": "order-1042"}
    assert (await api.client.post("/v1/orders", json=mug_order(1), headers=headers)
            ).status_code == 202
    assert_problem(await api.client.post("/v1/orders", json=mug_order(2), headers=headers),
                   422, "idempotency-key-reused")
    assert await orders_in_store(api) == 1


async def test_the_same_key_while_the_first_request_is_in_flight_is_409(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    async with api.pool.acquire() as conn, conn.transaction():
        # what the first request holds while it runs
        await conn.execute("SELECT pg_advisory_xact_lock($1)",
                           advisory_key("idem:shop-a:order-1042"))
        response = await api.client.post("/v1/orders", json=mug_order(),
                                         headers=bearer(key) | {"Idempotency-Key": "order-1042"})
    assert_problem(response, 409, "idempotency-key-in-use")
    assert response.headers["Retry-After"] == "1"
    assert await orders_in_store(api) == 0


async def test_concurrent_duplicates_create_one_order(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    headers, body = bearer(key) | {"Idempotency-Key": "till-7-receipt-99"}, mug_order()
    responses = await asyncio.gather(*(
        api.client.post("/v1/orders", json=body, headers=headers) for _ in range(20)))
    assert {r.status_code for r in responses} <= {202, 409}
    accepted = {r.json()["order_id"] for r in responses if r.status_code == 202}
    assert len(accepted) == 1
    assert await orders_in_store(api) == 1
    # once the first committed, every retry gets its answer
    retry = await api.client.post("/v1/orders", json=body, headers=headers)
    assert retry.json()["order_id"] in accepted


async def test_keys_belong_to_one_shop(api: Api) -> None:
    key_a, _ = await api.shop("shop-a")
    key_b, _ = await api.shop("shop-b")
    a = await api.client.post("/v1/orders", json=mug_order(),
                              headers=bearer(key_a) | {"Idempotency-Key": "k1"})
    b = await api.client.post("/v1/orders", json=mug_order(),
                              headers=bearer(key_b) | {"Idempotency-Key": "k1"})
    assert a.status_code == b.status_code == 202
    assert a.json()["order_id"] != b.json()["order_id"]


async def test_a_rejected_request_does_not_use_up_its_key(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    headers = bearer(key) | {"Idempotency-Key": "k2"}
    bad = mug_order()
    bad["lines"] = [{"sku": "SKU-NOPE", "quantity": 1,
                     "unit_price": {"amount": 100, "currency": "EUR"}}]
    assert (await api.client.post("/v1/orders", json=bad, headers=headers)).status_code == 422
    assert (await api.client.post("/v1/orders", json=mug_order(), headers=headers)
            ).status_code == 202
