"""A shop that publishes its orders on Kafka and reads what became of them (see
services/orders/KAFKA.md). It needs only aiokafka; run it against a local stack:

    alur shops add my-shop --currency IDR --kafka      # prints the password, once
    alur catalogue add SKU-KOPI && alur stock gudang-jakarta SKU-KOPI 100
    python examples/kafka_shop.py --shop my-shop --password '<password>' --sku SKU-KOPI

It publishes `--orders` orders (each an OrderSubmitted CloudEvent keyed by the shop's own
reference), then prints every outcome record on the shop's outcome topic: OrderAccepted or
OrderRejected for each, then the orders' status events, until each order is delivered or
`--wait` seconds pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

SETTLED = {"Delivered", "PickedUp", "OrderCancelled", "OrderCompleted"}


def connection(bootstrap: str, shop: str, password: str) -> dict[str, Any]:
    """The client settings every shop client uses: SCRAM-SHA-512 over the SASL listener
    (SASL_SSL where the brokers are behind TLS)."""
    return {"bootstrap_servers": bootstrap, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": shop,
            "sasl_plain_password": password}


def submission(order: dict[str, Any], source: str = "urn:example:kafka-shop") -> bytes:
    """An OrderSubmitted CloudEvent (structured mode) for `order`: the body of POST /v1/orders
    with its `reference`."""
    return json.dumps({"specversion": "1.0", "type": "OrderSubmitted", "source": source,
                       "id": str(uuid.uuid4()), "datacontenttype": "application/json",
                       "data": order}).encode()


def example_order(reference: str, sku: str, currency: str) -> dict[str, Any]:
    return {
        "reference": reference, "channel": "marketplace",
        "customer": {"customer_id": "cus-" + reference.lower(), "email": "budi@example.com",
                     "name": "Budi Santoso"},
        "lines": [{"sku": sku, "quantity": 1,
                   "unit_price": {"amount": 25000, "currency": currency}}],
        "payment": {"method": "ewallet", "token": "tok_gopay"},
        "delivery": {"method": "home_delivery", "address": {
            "line1": "Jl. Sudirman 1", "city": "Jakarta", "postal_code": "10210",
            "country": "ID"}},
    }


async def publish(producer: AIOKafkaProducer, shop: str, orders: list[dict[str, Any]]) -> None:
    """Publish each order keyed by its reference, and wait until the brokers have them all."""
    sent = [await producer.send(f"order-intake.{shop}", submission(order),
                                key=order["reference"].encode()) for order in orders]
    await asyncio.gather(*sent)


def outcome_consumer(config: dict[str, Any], shop: str, group: str | None = None
                     ) -> AIOKafkaConsumer:
    """A consumer of the shop's outcome topic; its group id must start with `<shop>.`."""
    return AIOKafkaConsumer(f"order-outcomes.{shop}", group_id=group or f"{shop}.example",
                            auto_offset_reset="earliest", enable_auto_commit=True, **config)


async def main(args: argparse.Namespace) -> int:
    config = connection(args.bootstrap, args.shop, args.password)
    run = uuid.uuid4().hex[:6].upper()
    orders = [example_order(f"EX-{run}-{i}", args.sku, args.currency)
              for i in range(args.orders)]
    async with AIOKafkaProducer(acks="all", enable_idempotence=True, **config) as producer:
        await publish(producer, args.shop, orders)
    print(f"published {len(orders)} order(s) to order-intake.{args.shop}")
    open_ = {o["reference"] for o in orders}
    consumer = outcome_consumer(config, args.shop, f"{args.shop}.example-{run}")
    await consumer.start()
    deadline = time.monotonic() + args.wait
    try:
        while open_ and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    reference = record.key.decode() if record.key else None
                    if reference not in {o["reference"] for o in orders}:
                        continue  # an earlier run's
                    event = json.loads(record.value)
                    data = event.get("data") or {}
                    detail = data.get("order_id") or data.get("tracking_number") or \
                        (data.get("problem") or {}).get("detail", "")
                    print(f"{reference}  {event['type']:<16} {detail}")
                    if event["type"] == "OrderRejected" or event["type"] in SETTLED:
                        open_.discard(reference)
    finally:
        await consumer.stop()
    if open_:
        print(f"{len(open_)} order(s) not settled within {args.wait:.0f}s", file=sys.stderr)
        return 1
    return 0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19094",
                        help="the brokers' SASL listener (alur shops add --kafka prints it)")
    parser.add_argument("--shop", required=True, help="the shop id, also its username")
    parser.add_argument("--password", required=True, help="from alur shops add --kafka")
    parser.add_argument("--sku", required=True, help="a SKU in the catalogue, in stock")
    parser.add_argument("--currency", default="IDR", help="the shop's currency")
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds to follow the orders before giving up")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(arguments())))
