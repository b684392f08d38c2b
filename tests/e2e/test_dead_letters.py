"""A poison message on an input topic goes to its DLQ; the orders behind it still complete."""

import json
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.e2e.helpers import all_delivered, new_sku, order_body, place, set_stock, wait_until

CONSUMERS_OF_ORDERS = ("inventory", "notifications", "payments", "shipping")


async def dead_letters(bootstrap: str, partitions: int, marker: str) -> list[dict]:
    """Every record of orders.dlq that mentions `marker`, read from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition("orders.dlq", p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found = []
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if marker.encode() in record.value:
                        found.append(json.loads(record.value))
        return found
    finally:
        await consumer.stop()


async def test_malformed_messages_are_dead_lettered_and_the_orders_behind_them_complete(
        services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    marker = uuid.uuid4().hex
    poisons = [b"\x00\x01 not json " + marker.encode(),                       # not JSON at all
               json.dumps({"type": "OrderPlaced", "subject": marker}).encode()]  # wrong shape
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        # One poison at the head of every partition: every order placed next is behind one.
        sent = [await producer.send_and_wait("orders", poisons[p % 2], key=b"poison",
                                             partition=p)
                for p in range(services.partitions)]
    finally:
        await producer.stop()
    placed = [await place(api, order_body(sku)) for _ in range(4)]

    await wait_until(lambda: all_delivered(db, placed), 60, "the orders behind the poison")

    expected = services.partitions * len(CONSUMERS_OF_ORDERS)

    async def all_dead_lettered() -> bool:
        return len(await dead_letters(
            services.kafka_bootstrap, services.partitions, marker)) >= expected

    await wait_until(all_dead_lettered, 60, "a dead letter per consumer and poison")
    letters = await dead_letters(services.kafka_bootstrap, services.partitions, marker)
    assert len(letters) == expected
    origins = {(m.partition, m.offset) for m in sent}
    for letter in letters:
        assert letter["origin"]["topic"] == "orders" and letter["origin"]["key"] == "poison"
        assert (letter["origin"]["partition"], letter["origin"]["offset"]) in origins
        assert letter["error"].startswith("undecodable") and marker in letter["value"]
    assert sorted({d["service"] for d in letters}) == list(CONSUMERS_OF_ORDERS)

    audit = await db.fetch(
        "SELECT partition, \"offset\", error FROM inventory.audit "
        "WHERE outcome = 'dead_lettered' AND topic = 'orders'")
    assert origins <= {(r["partition"], r["offset"]) for r in audit}
