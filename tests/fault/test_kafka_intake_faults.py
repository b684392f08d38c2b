"""A shop publishing on Kafka while the orders service is SIGKILLed (twice) and PostgreSQL is
SIGKILLed (once): afterwards every intake record has exactly one decision in the orders
service's outbox, the shop read a decision for every record, every reference made exactly one
order, and the records sent twice were answered as duplicates."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from alur.infra.kafka_access import grant
from alur.settings import Settings
from examples.kafka_shop import connection, example_order, outcome_consumer, submission
from services.inventory import seed
from services.orders.admin import onboard
from services.orders.intake import reference_order_id
from tests.fault.test_under_faults import kill_postgres, kill_service

ORDERS = 150
AGAIN = 30           # of them published a second time
RATE = 10.0          # records per second
DECIDED_WITHIN = 240.0


async def test_every_record_gets_one_decision_through_kills_of_orders_and_postgres(
        fault_stack: Settings) -> None:
    settings = fault_stack
    shop = f"kshop-fault-{uuid.uuid4().hex[:6]}"
    sku = f"SKU-F{uuid.uuid4().hex[:6].upper()}"
    await onboard(settings, shop, "EUR", [sku], rate_per_second=10_000, burst=10_000)
    await seed.set_stock(settings, [("WH-1", sku, 100_000)])
    access = await grant(settings.kafka_bootstrap, settings.kafka_shop_bootstrap, shop,
                         partitions=settings.partitions, replication=settings.replication_factor)
    config = connection(access.bootstrap, access.username, access.password)
    references = [f"F-{i:04d}" for i in range(ORDERS)]
    sends = references + references[:AGAIN]

    def body(reference: str) -> dict[str, Any]:
        order = example_order(reference, sku, "EUR")
        return order | {"payment": {"method": "card", "token": "tok_visa"}}

    async def faults() -> None:
        await asyncio.sleep(3)
        await kill_service(settings, "orders")
        await asyncio.sleep(6)
        await kill_postgres(settings)
        await asyncio.sleep(4)
        await kill_service(settings, "orders")

    async with AIOKafkaProducer(acks="all", enable_idempotence=True, **config) as producer:
        injecting = asyncio.create_task(faults())
        for reference in sends:
            await producer.send_and_wait(access.intake_topic, submission(body(reference)),
                                         key=reference.encode())
            await asyncio.sleep(1 / RATE)
        await injecting

    # The shop reads a decision for every record (an outcome may be delivered twice after a
    # relay crash: the same outcome id then).
    decisions: dict[str, dict[str, Any]] = {}
    consumer = outcome_consumer(config, shop, f"{shop}.fault")
    await consumer.start()
    deadline = time.monotonic() + DECIDED_WITHIN
    try:
        while len(decisions) < len(sends) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    event = json.loads(r.value)
                    if event["type"] in ("OrderAccepted", "OrderRejected"):
                        decisions[event["id"]] = event
    finally:
        await consumer.stop()
    assert len(decisions) == len(sends), f"{len(decisions)} decisions of {len(sends)} records"
    positions = Counter((d["data"]["intake"]["partition"], d["data"]["intake"]["offset"])
                        for d in decisions.values())
    assert len(positions) == len(sends) and set(positions.values()) == {1}
    assert {d["type"] for d in decisions.values()} == {"OrderAccepted"}, [
        d for d in decisions.values() if d["type"] != "OrderAccepted"][:3]
    per_reference = Counter(d["data"]["reference"] for d in decisions.values())
    assert per_reference == Counter(sends)
    duplicates = Counter(d["data"]["reference"] for d in decisions.values()
                         if d["data"]["duplicate"])
    assert duplicates == Counter(references[:AGAIN])
    assert {d["data"]["order_id"] for d in decisions.values()} == {
        reference_order_id(shop, r) for r in references}

    db = await asyncpg.connect(settings.pg_dsn)
    try:
        rows = await db.fetch(
            "SELECT value FROM orders.outbox WHERE topic = $1 AND type IN ('OrderAccepted',"
            " 'OrderRejected')", access.outcomes_topic)
        written = Counter(json.loads(bytes(r["value"]))["id"] for r in rows)
        assert len(written) == len(sends) and set(written.values()) == {1}, \
            "a record was decided twice"
        placed = await db.fetchval(
            "SELECT count(*) FROM orders.events WHERE type = 'OrderPlaced'"
            " AND body->>'shopid' = $1", shop)
        assert placed == ORDERS
    finally:
        await db.close()
