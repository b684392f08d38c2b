"""The demo's marketplace shop: it publishes its orders on Kafka with its own SCRAM credentials,
as `examples/kafka_shop.py` shows a shop how to, and reads each record's outcome from its
outcome topic. The client code is the example's own (loaded from the repository), so the demo
runs what the shops' documentation tells them to run."""

from __future__ import annotations

import importlib.util
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from aiokafka import AIOKafkaProducer

from alur.infra.kafka_access import KafkaAccess
from alur.simulators.customers import Plan, order_body, plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kafka_shop.py"


def example() -> ModuleType:
    """examples/kafka_shop.py as a module."""
    spec = importlib.util.spec_from_file_location("alur_example_kafka_shop", EXAMPLE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {EXAMPLE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Published:
    """What the marketplace learnt from its outcome topic."""

    accepted: dict[str, tuple[str, Plan, dict[str, Any]]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # reference -> problem detail
    seconds: float = 0.0


async def publish_orders(access: KafkaAccess, count: int, rng: random.Random,
                         show: Callable[[int], None], timeout: float = 120.0) -> Published:
    """Publish `count` orders, then read outcomes until each has its OrderAccepted (order id)
    or OrderRejected, or `timeout` passes."""
    shop = example()
    config = shop.connection(access.bootstrap, access.username, access.password)
    run = uuid.uuid4().hex[:8].upper()
    bodies: dict[str, tuple[Plan, dict[str, Any]]] = {}
    for i in range(count):
        p = plan(rng)
        body = order_body(access.shop_id, p, rng) | {"channel": "marketplace",
                                                     "reference": f"MP-{run}-{i:05d}"}
        bodies[str(body["reference"])] = (p, body)
    started, out = time.monotonic(), Published()
    consumer = shop.outcome_consumer(config, access.shop_id, f"{access.group_prefix}demo-{run}")
    await consumer.start()
    try:
        async with AIOKafkaProducer(acks="all", enable_idempotence=True, **config) as producer:
            await shop.publish(producer, access.shop_id, [b for _, b in bodies.values()])
        deadline = time.monotonic() + timeout
        while len(out.accepted) + len(out.rejected) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    _take(record.key, json.loads(record.value), bodies, out)
            show(len(out.accepted) + len(out.rejected))
    finally:
        await consumer.stop()
    out.seconds = time.monotonic() - started
    return out


def _take(key: bytes | None, outcome: dict[str, Any],
          bodies: dict[str, tuple[Plan, dict[str, Any]]], out: Published) -> None:
    reference = key.decode() if key else None
    if reference not in bodies:
        return  # a status event, or an earlier run's
    data = outcome.get("data") or {}
    if outcome.get("type") == "OrderAccepted":
        p, body = bodies[reference]
        out.accepted[reference] = (str(data["order_id"]), p, body)
    elif outcome.get("type") == "OrderRejected":
        out.rejected[reference] = str((data.get("problem") or {}).get("detail"))
