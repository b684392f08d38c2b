"""Every kind of poison at the head of every partition of every input topic, on the running
stack. Each record is audited by each of its consumers as dead-lettered, refused, held or
ignored, with a DLQ record where it cannot be handled; none crashes a process (the supervisor
restarts nothing), schedules a timer, or stalls the orders placed behind it."""

from __future__ import annotations

import json
import uuid

from aiokafka import AIOKafkaProducer

from alur.infra.supervisor import status_file
from alur.tools.dlq import read_dead_letters
from alur.tools.events import read as read_events
from schemas import encode
from tests.e2e.helpers import all_delivered, order_body, place, wait_until
from tests.e2e.test_branches import reach, stocked
from tests.unit.builders import event

CONSUMERS = {"orders": ("inventory", "payments", "shipping", "notifications"),
             "inventory": ("orders", "payments"), "payments": ("orders", "inventory",
                                                               "notifications"),
             "shipping": ("orders", "inventory", "payments", "notifications")}
# An event of each topic about an order nobody placed.
GHOST_EVENT = {"orders": "OrderCancelled", "inventory": "StockReserved",
               "payments": "PaymentConfirmed", "shipping": "Delivered"}
SETTLED_OUTCOMES = {"dead_lettered", "refused", "held", "ignored"}


def poisons(topic: str, marker: str) -> list[tuple[str, bytes | None]]:
    ghost = f"ord_ghost_{marker}"
    unknown_type = json.loads(encode(event("OrderCancelled", ghost)))
    unknown_type["type"] = "OrderTeleported"
    return [
        ("tombstone", None),
        ("garbage", b"\x00\xff not an event " + marker.encode()),
        ("unknown type", json.dumps(unknown_type).encode()),
        ("oversized", json.dumps({"pad": "x" * 300_000, "marker": marker}).encode()),
        ("unknown order", encode(event(GHOST_EVENT[topic], ghost))),
    ]


def restarts(services) -> dict[str, int]:  # noqa: ANN001
    status = json.loads(status_file(services).read_text())
    return {name: child["restarts"] for name, child in status.items()}


async def test_no_record_stalls_a_partition_crashes_a_service_or_sets_a_timer(
        services, api, db) -> None:
    sku = await stocked(services)
    marker = uuid.uuid4().hex[:12]
    # A real order cancelled before its release: a Delivered for it is impossible.
    cancelled = await place(api, order_body(sku, token="tok_decline"))
    await reach(db, cancelled, "OrderCancelled")
    before = restarts(services)
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all",
                                max_request_size=1_048_576)
    await producer.start()
    sent: dict[tuple[str, int, int], str] = {}
    try:
        for topic in CONSUMERS:
            for partition in range(services.partitions):
                for kind, value in poisons(topic, marker):
                    meta = await producer.send_and_wait(topic, value, key=b"poison",
                                                        partition=partition)
                    sent[(topic, partition, meta.offset)] = kind
        impossible = await producer.send_and_wait(
            "shipping", encode(event("Delivered", cancelled)), key=cancelled.encode())
        sent[("shipping", impossible.partition, impossible.offset)] = "impossible"
    finally:
        await producer.stop()

    behind = [await place(api, order_body(sku)) for _ in range(8)]  # behind the poison
    await wait_until(lambda: all_delivered(db, behind), 120, "the orders behind the poison")

    async def audited() -> bool:
        for service in {s for consumers in CONSUMERS.values() for s in consumers}:
            rows = await db.fetch(
                f'SELECT topic, partition, "offset", outcome FROM {service}.audit'
                " WHERE direction = 'in' AND topic = ANY($1::text[])",
                [t for t, consumers in CONSUMERS.items() if service in consumers])
            seen = {(r["topic"], r["partition"], r["offset"]): r["outcome"] for r in rows}
            for (topic, partition, offset) in sent:
                if service in CONSUMERS[topic] and (topic, partition, offset) not in seen:
                    return False
        return True

    await wait_until(audited, 60, "every consumer to audit every poison record")
    for service in {s for consumers in CONSUMERS.values() for s in consumers}:
        rows = await db.fetch(f'SELECT topic, partition, "offset", outcome, error'
                              f" FROM {service}.audit WHERE direction = 'in'")
        outcomes = {(r["topic"], r["partition"], r["offset"]): (r["outcome"], r["error"])
                    for r in rows}
        for key, kind in sent.items():
            if service not in CONSUMERS[key[0]]:
                continue
            outcome, error = outcomes[key]
            assert outcome in SETTLED_OUTCOMES, (service, kind, outcome, error)
            if kind in ("tombstone", "garbage", "unknown type", "oversized"):
                assert (outcome, error.split(":")[0]) == ("dead_lettered", "undecodable"), \
                    (service, kind, error)
        assert not await db.fetchval(
            f"SELECT count(*) FROM {service}.timers WHERE stream_id LIKE $1",
            f"%{marker}%"), service
    orders_audit = {(r["topic"], r["partition"], r["offset"]): r["outcome"] for r in await db.fetch(
        'SELECT topic, partition, "offset", outcome FROM orders.audit WHERE direction = \'in\'')}
    for key, kind in sent.items():
        if kind in ("unknown order", "impossible") and "orders" in CONSUMERS[key[0]]:
            assert orders_audit[key] == "refused", (key, kind)
    assert not await db.fetchval("SELECT count(*) FROM orders.events WHERE stream_id LIKE $1",
                                 f"%{marker}%")
    assert "Delivered" not in [r["type"] for r in await db.fetch(
        "SELECT type FROM orders.events WHERE stream_id = $1", cancelled)]
    assert restarts(services) == before  # nothing crashed, nothing was restarted
    # The engineers' tools read past the poison too.
    letters = await read_dead_letters(services.kafka_bootstrap)
    assert any(letter.error.startswith("undecodable: no value") for letter in letters)
    seen = [s async for s in read_events(services.kafka_bootstrap, ["orders"])]
    assert any(s.event is None and s.offset == offset for s in seen
               for (topic, _, offset), kind in sent.items()
               if topic == "orders" and kind == "tombstone")
