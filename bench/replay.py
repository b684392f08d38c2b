"""Replay throughput: `alur replay sales --from kafka` against a bare aiokafka consumer reading
the same topic range in the same run.

Usage: python bench/replay.py [--orders N]. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alur.infra import stack  # noqa: E402
from alur.runtime.db import CORE_SQL, migrate  # noqa: E402
from alur.runtime.slice import Slice  # noqa: E402
from bench.pipeline import bench_settings, produce  # noqa: E402
from schemas import caused_by, encode, first_event  # noqa: E402
from schemas.examples import PAYLOADS  # noqa: E402
from services.orders.sales import TOPICS_READ, replay  # noqa: E402

FLOW = ("PaymentConfirmed", "ShipmentCreated", "Shipped", "Delivered")


def order_flows(n: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """n orders, each placed, paid, shipped and delivered: five events on three topics."""
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {t: [] for t in TOPICS_READ}
    for i in range(n):
        order_id = f"ord_{uuid.uuid4().hex}"
        placed = first_event(PAYLOADS["OrderPlaced"].model_copy(update={"order_id": order_id}),
                             source="alur/bench", subject=order_id, shop_id=f"shop-{i % 7}",
                             channel="online")
        events = [placed]
        for kind in FLOW:
            payload = PAYLOADS[kind]
            if "order_id" in type(payload).model_fields:
                payload = payload.model_copy(update={"order_id": order_id})
            events.append(caused_by(events[-1], payload, source="alur/bench"))
        for e in events:
            by_topic[e.topic].append((order_id.encode(), encode(e)))
    return by_topic


async def bare_read(bootstrap: str, partitions: int) -> tuple[int, float]:
    """Read the three topics from the beginning to their end offsets; nothing else."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in TOPICS_READ for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        total, read = sum(end.values()), 0
        started = time.perf_counter()
        while read < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            read += sum(len(records) for records in batches.values())
        return read, time.perf_counter() - started
    finally:
        await consumer.stop()


async def measure(orders: int) -> None:
    settings = bench_settings()
    await migrate(settings.pg_dsn, "orders", CORE_SQL, ROOT / "services" / "orders" / "migrations")
    for topic, records in order_flows(orders).items():
        await produce(settings, topic, records)
    read, bare_seconds = await bare_read(settings.kafka_bootstrap, settings.partitions)
    started = time.perf_counter()
    result = await replay(settings.pg_dsn, Slice(), source="kafka",
                          bootstrap=settings.kafka_bootstrap)
    replay_seconds = time.perf_counter() - started
    bare, alur = read / bare_seconds, read / replay_seconds
    print(f"\n  {read} events on {', '.join(TOPICS_READ)} ({orders} orders, "
          f"{result.events_read} folded into {result.orders_in_slice} rows)")
    print(f"  bare aiokafka read       {bare:9.0f} events/s")
    print(f"  replay into projection   {alur:9.0f} events/s  (DESIGN target: 20000)")
    print(f"  ratio                    {bare / alur:9.1f}x slower")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20000)
    args = parser.parse_args()
    with stack.fresh(bench_settings(), say=lambda line: print("  " + line)):
        print(f"writing {args.orders} order flows, then reading them back twice ...")
        asyncio.run(measure(args.orders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
