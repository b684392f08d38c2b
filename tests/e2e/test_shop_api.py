"""The shop API of the running orders service: its published OpenAPI, rejected requests that
leave nothing behind on Kafka or in PostgreSQL, and a bounded schemathesis run."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import schemathesis
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from alur.settings import Settings
from services.orders.api import openapi
from tests.e2e.helpers import (
    all_delivered,
    auth,
    key_for,
    new_sku,
    order_body,
    set_stock,
    table_counts,
    wait_until,
)


async def end_offsets(settings_: Settings) -> dict[TopicPartition, int]:
    """Where each partition of the `orders` topic ends."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings_.kafka_bootstrap,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition("orders", p) for p in range(settings_.partitions)]
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def test_the_live_openapi_document_is_the_committed_one(api: httpx.AsyncClient) -> None:
    live = (await api.get("/openapi.json")).json()
    assert live == json.loads(openapi.COMMITTED.read_text())


async def test_rejected_requests_leave_no_event_on_kafka_and_no_row(
        services: Settings, api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    body = order_body(sku)
    first = await api.post("/v1/orders", json=body, headers={"Idempotency-Key": sku})
    assert first.status_code == 202
    other = await auth("shop-e2e-other")
    order_id = first.json()["order_id"]
    # the carrier reports a few steps first; a cancel must find the parcel delivered
    await wait_until(lambda: all_delivered(db, [order_id]), 60, "the first order's delivery")
    before: list[object] = []

    async def quiet() -> bool:  # earlier tests' orders may still be moving
        now = [await end_offsets(services), await table_counts(db, "orders")]
        settled, before[:] = now == before, now
        if not settled:
            await asyncio.sleep(2)
        return settled

    await wait_until(quiet, 60, "the orders service to go quiet")
    bad_line = order_body(new_sku())
    for method, path, headers, payload, status in [
        ("POST", "/v1/orders", {"Authorization": "Bearer alur_sk_wrong"}, body, 401),
        ("POST", "/v1/orders", {"Idempotency-Key": sku}, order_body(sku, quantity=2), 422),
        ("POST", "/v1/orders", {}, bad_line, 422),
        ("POST", "/v1/orders", {}, {**body, "lines": []}, 422),
        ("POST", f"/v1/orders/{order_id}/cancel", other, None, 404),
        ("POST", f"/v1/orders/{order_id}/cancel", {}, None, 409),  # delivered by now
        ("POST", f"/v1/orders/{order_id}/reviews", {}, {"rating": 6}, 422),
        ("POST", "/v1/orders", {}, {"pad": "x" * services.api_body_limit}, 413),
    ]:
        response = await api.request(method, path, json=payload, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    await asyncio.sleep(2 * services.relay_interval + 1)  # what a relay would have published
    assert [await end_offsets(services), await table_counts(db, "orders")] == before


CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


def test_no_generated_request_gets_a_5xx_or_breaks_the_schema(services: Settings) -> None:
    """schemathesis, bounded: 15 generated requests per operation, all with a live key."""
    key = asyncio.run(key_for("shop-e2e-fuzz"))
    live = schemathesis.openapi.from_url(f"{services.api_url}/openapi.json")
    operations = [result.ok() for result in live.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

        call()
