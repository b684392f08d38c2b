"""Throughput of one Alur stream processor against a bare aiokafka consume->produce loop, and
of a bare faust agent doing the same hop (what the consumer framework costs by itself).

Usage: python bench/pipeline.py [--events N]. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alur.infra import stack  # noqa: E402
from alur.runtime.topics import ensure_topics  # noqa: E402
from alur.settings import Settings  # noqa: E402
from schemas import encode, first_event  # noqa: E402
from schemas.examples import PAYLOADS  # noqa: E402
from services.inventory.seed import set_stock  # noqa: E402

SKU = "SKU-BENCH"


def bench_settings() -> Settings:
    return Settings(state_dir=ROOT / ".alur" / "bench", jar_dir=ROOT / ".alur" / "jars",
                    kafka_port=28092, kafka_controller_port=28093, pg_port=26432,
                    smtp_port=2527, api_port=8082, gateway_port=8092, metrics_port_base=9600,
                    prometheus_port=9690, payments_port=8086, inventory_port=8087,
                    shipping_port=8120, kilat_port=8121, nusapost_port=8122,
                    partitions=4, log_level="warning")


def order_events(n: int) -> list[tuple[bytes, bytes]]:
    template = PAYLOADS["OrderPlaced"]
    line = template.lines[0].model_copy(update={"sku": SKU, "quantity": 1})
    out = []
    for _ in range(n):
        order_id = f"ord_{uuid.uuid4().hex}"
        data = template.model_copy(update={"order_id": order_id, "lines": [line]})
        event = first_event(data, source="alur/bench", subject=order_id, shop_id="bench",
                            channel="online")
        out.append((order_id.encode(), encode(event)))
    return out


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def bare_loop(settings: Settings, n: int) -> float:
    """Consume n messages from bench.in, produce each to bench.out, commit per batch."""
    await ensure_topics(settings.kafka_bootstrap, settings.partitions, ["bench.in", "bench.out"])
    await produce(settings, "bench.in", order_events(n))
    consumer = AIOKafkaConsumer("bench.in", bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"bench-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5, enable_idempotence=True)
    await consumer.start()
    await producer.start()
    done, started = 0, None
    try:
        while done < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            if started is None and batches:
                started = time.perf_counter()
            futures = [await producer.send("bench.out", r.value, key=r.key)
                       for records in batches.values() for r in records]
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
            done += len(futures)
        return n / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()
        await producer.stop()


def faust_loop(settings: Settings, n: int) -> float:
    """bench/faust_hop.py on the n messages `bare_loop` left in bench.in (a group of its own
    reads them from the start): events/s from its first batch to its last ack."""
    out = settings.state_dir / "faust-hop.rate"
    out.unlink(missing_ok=True)
    datadir = settings.state_dir / "faust" / "bench-faust-hop"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(ROOT / "bench" / "faust_hop.py"), str(n),
                    settings.kafka_bootstrap, str(datadir), str(out), str(settings.batch_size),
                    str(settings.batch_within)], cwd=ROOT, check=True, timeout=600)
    rate: float = float(out.read_text())
    return rate


async def inventory_stage(settings: Settings, n: int) -> float:
    """The inventory service on n OrderPlaced events: events/s from first to last commit."""
    await set_stock(settings, [("WH-1", SKU, n * 2)])
    records = order_events(n)
    await produce(settings, "orders", records)
    await asyncio.to_thread(stack.services_up, settings, ("inventory",))
    db = await asyncpg.connect(settings.pg_dsn)
    try:
        deadline = time.monotonic() + 600
        while True:
            published = await db.fetchval(
                "SELECT count(*) FROM inventory.outbox WHERE published_at IS NOT NULL")
            if published >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {published}/{n} published after 600 s")
            await asyncio.sleep(0.2)
        span = await db.fetchrow(
            "SELECT min(a.at) AS first, max(o.published_at) AS last FROM inventory.audit a, "
            "inventory.outbox o WHERE a.direction = 'in'")
        return n / (span["last"] - span["first"]).total_seconds()
    finally:
        await db.close()
        stack.services_down(settings, ("inventory",))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    with stack.fresh(bench_settings(), say=lambda line: print("  " + line)) as settings:
        print(f"baseline: bare aiokafka consume->produce of {args.events} events ...")
        bare = asyncio.run(bare_loop(settings, args.events))
        print(f"bare faust agent, the same hop on the same {args.events} events ...")
        agent = faust_loop(settings, args.events)
        print(f"inventory service on {args.events} OrderPlaced events ...")
        alur = asyncio.run(inventory_stage(settings, args.events))
    print(f"\n  bare aiokafka loop   {bare:9.0f} events/s")
    print(f"  bare faust agent     {agent:9.0f} events/s  ({bare / agent:.1f}x slower than "
          "aiokafka)")
    print(f"  inventory service    {alur:9.0f} events/s  ({agent / alur:.1f}x slower than faust)")
    print(f"  ratio                {bare / alur:9.1f}x slower (DESIGN target: within 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
