"""Shops publishing on Kafka, on the real brokers with SASL/SCRAM and ACLs on: a shop's
credentials publish an order that completes and read its outcome and status events; another
shop's credentials are refused by the broker; duplicates make one order; invalid and poison
records get one readable rejection each and write nothing else; nothing stalls."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from alur.infra.kafka_access import KafkaAccess, grant
from alur.settings import Settings
from examples.kafka_shop import connection, example_order, outcome_consumer, submission
from services.orders.admin import onboard
from services.orders.intake import reference_order_id
from tests.e2e.helpers import auth, set_stock, statuses

DECISIONS = ("OrderAccepted", "OrderRejected")


@dataclass
class KafkaShop:
    access: KafkaAccess
    producer: AIOKafkaProducer
    outcomes: AIOKafkaConsumer
    seen: list[dict[str, Any]]

    @property
    def shop_id(self) -> str:
        return self.access.shop_id

    async def publish(self, value: bytes | None, key: str | bytes | None) -> None:
        raw_key = key.encode() if isinstance(key, str) else key
        await self.producer.send_and_wait(self.access.intake_topic, value, key=raw_key)

    async def place(self, order: dict[str, Any]) -> None:
        await self.publish(submission(order), order["reference"])

    async def until(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Read outcome records until `count` have arrived in all."""
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            for records in (await self.outcomes.getmany(timeout_ms=500)).values():
                self.seen += [{"key": r.key.decode() if r.key else None,
                               **json.loads(r.value)} for r in records]
        assert len(self.seen) >= count, f"{len(self.seen)} outcome(s) of {count}: {self.seen}"
        return self.seen

    async def decisions(self, count: int, after: int = 0,
                        timeout: float = 60.0) -> list[dict[str, Any]]:
        """The first `count` OrderAccepted / OrderRejected records read after `after`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.seen[after:] if r["type"] in DECISIONS]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} decision(s) of {count}: {found}"
                return found[:count]
            await self.until(len(self.seen) + 1, timeout=max(0.1, deadline - time.monotonic()))

    async def about(self, reference: str, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.seen if r["key"] == reference and r["type"] == kind]
            if found:
                return found[0]
            await self.until(len(self.seen) + 1, timeout=max(0.1, deadline - time.monotonic()))
        raise AssertionError(f"no {kind} about {reference}: {self.seen}")


async def kafka_shop(settings: Settings, shop_id: str, currency: str = "EUR") -> KafkaShop:
    await onboard(settings, shop_id, currency, [], rate_per_second=10_000, burst=10_000)
    access = await grant(settings.kafka_bootstrap, settings.kafka_shop_bootstrap, shop_id,
                         partitions=settings.partitions, replication=1)
    config = connection(access.bootstrap, access.username, access.password)
    producer = AIOKafkaProducer(acks="all", max_request_size=3 * 1024 * 1024, **config)
    await producer.start()
    outcomes = outcome_consumer(config, shop_id, f"{shop_id}.test")
    await outcomes.start()
    return KafkaShop(access, producer, outcomes, [])


@pytest.fixture
async def shops(services: Settings) -> AsyncIterator[tuple[KafkaShop, KafkaShop, str]]:
    """Two shops with Kafka access, and a SKU in stock and in the catalogue."""
    run = uuid.uuid4().hex[:6]
    a = await kafka_shop(services, f"kshop-a-{run}")
    b = await kafka_shop(services, f"kshop-b-{run}")
    sku = f"SKU-K{run.upper()}"
    await set_stock(services, [("WH-JKT", sku, 1000)])
    try:
        yield a, b, sku
    finally:
        for shop in (a, b):
            await shop.producer.stop()
            await shop.outcomes.stop()


def order(reference: str, sku: str, **changes: Any) -> dict[str, Any]:
    body = example_order(reference, sku, "EUR")
    body["payment"] = {"method": "card", "token": "tok_visa"}
    return body | changes


async def test_a_shop_publishes_an_order_that_completes_and_reads_its_statuses(
        shops: tuple[KafkaShop, KafkaShop, str], db: asyncpg.Pool, services: Settings) -> None:
    a, _, sku = shops
    await a.place(order("A-1", sku))
    accepted = await a.about("A-1", "OrderAccepted")
    order_id = accepted["data"]["order_id"]
    assert accepted["data"]["duplicate"] is False
    assert accepted["source"] == "alur/orders" and accepted["specversion"] == "1.0"
    assert order_id == reference_order_id(a.shop_id, "A-1")
    paid = await a.about("A-1", "PaymentConfirmed")
    shipped = await a.about("A-1", "ShipmentCreated")
    delivered = await a.about("A-1", "Delivered", timeout=90)
    assert shipped["data"]["tracking_number"]
    assert {paid["subject"], shipped["subject"], delivered["subject"]} == {order_id}
    # The customer confirms receipt (through the shop's API): the order completes, and the
    # shop reads that too.
    async with httpx.AsyncClient(base_url=services.api_url, timeout=10) as client:
        receipt = await client.post(f"/v1/orders/{order_id}/receipt",
                                    headers=await auth(a.shop_id))
    assert receipt.status_code == 200, receipt.text
    await a.about("A-1", "OrderCompleted")
    kinds = [r["type"] for r in a.seen if r["key"] == "A-1"]
    assert kinds.index("OrderAccepted") < kinds.index("PaymentConfirmed") \
        < kinds.index("ShipmentCreated") < kinds.index("Delivered") \
        < kinds.index("OrderCompleted"), kinds
    placed = (await statuses(db, [order_id]))[order_id]
    assert placed[0] == "OrderPlaced" and "Delivered" in placed
    body = json.loads(await db.fetchval(
        "SELECT body::text FROM orders.events WHERE stream_id = $1 AND version = 1", order_id))
    assert body["channel"] == "marketplace" and body["shopid"] == a.shop_id
    assert body["data"]["reference"] == "A-1" and body["data"]["intake"] == "kafka"


async def test_a_duplicate_record_makes_one_order_and_an_invalid_one_none(
        shops: tuple[KafkaShop, KafkaShop, str], db: asyncpg.Pool) -> None:
    a, _, sku = shops
    await a.place(order("D-1", sku))
    await a.place(order("D-1", sku))
    await a.place(order("D-2", "SKU-NOT-LISTED"))
    await a.place(order("D-1", sku, lines=[{  # the same reference for another order
        "sku": sku, "quantity": 2, "unit_price": {"amount": 25000, "currency": "EUR"}}]))
    outcomes = await a.decisions(4)
    by_offset = sorted(outcomes, key=lambda r: int(r["data"]["intake"]["offset"]))
    first, again, unknown, reused = by_offset if len({
        r["data"]["intake"]["partition"] for r in outcomes}) == 1 else _by_content(outcomes)
    assert (first["type"], again["type"]) == ("OrderAccepted", "OrderAccepted")
    assert again["data"]["order_id"] == first["data"]["order_id"]
    assert (first["data"]["duplicate"], again["data"]["duplicate"]) == (False, True)
    assert unknown["type"] == "OrderRejected" and unknown["key"] == "D-2"
    assert unknown["data"]["problem"]["type"].endswith("/unknown-sku")
    assert unknown["data"]["problem"]["errors"] == [{"field": "lines.0.sku",
                                                     "message": "unknown SKU"}]
    assert reused["type"] == "OrderRejected"
    assert reused["data"]["problem"]["type"].endswith("/reference-reused")
    assert len({r["id"] for r in outcomes[:4]}) == 4
    assert await db.fetchval("SELECT count(*) FROM orders.events WHERE stream_id = $1",
                             reference_order_id(a.shop_id, "D-2")) == 0
    assert await db.fetchval(
        "SELECT count(*) FROM orders.events WHERE stream_id = $1 AND type = 'OrderPlaced'",
        first["data"]["order_id"]) == 1


async def test_another_shops_credentials_are_refused_by_the_broker(
        shops: tuple[KafkaShop, KafkaShop, str], services: Settings) -> None:
    a, b, sku = shops
    as_b = connection(b.access.bootstrap, b.access.username, b.access.password)
    # B cannot write as A: A's intake topic refuses B's principal.
    with pytest.raises(TopicAuthorizationFailedError) as refused:
        await b.producer.send_and_wait(a.access.intake_topic, submission(order("B-1", sku)),
                                       key=b"B-1")
    print("write to A's intake as B:", refused.value)
    # B cannot read A's outcomes, nor an internal topic, nor use a group outside its prefix
    # (not even to read its own outcomes).
    for topic, group, error in (
            (a.access.outcomes_topic, f"{b.shop_id}.spy", TopicAuthorizationFailedError),
            ("orders", f"{b.shop_id}.spy", TopicAuthorizationFailedError),
            ("payments", None, TopicAuthorizationFailedError),
            (b.access.outcomes_topic, f"{a.shop_id}.x", GroupAuthorizationFailedError)):
        spy = AIOKafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", **as_b)
        with pytest.raises(error) as refused:
            try:
                await spy.start()
                await asyncio.wait_for(spy.getmany(timeout_ms=3000), 20)
            finally:
                await spy.stop()
        print(f"read {topic} as B in group {group}:", refused.value)
    # A wrong password does not get in at all.
    await refused_at_start(AIOKafkaProducer(**connection(a.access.bootstrap, a.shop_id,
                                                         "not-the-password")))
    # The SASL port refuses a client that does not authenticate.
    await refused_at_start(AIOKafkaProducer(bootstrap_servers=a.access.bootstrap,
                                            request_timeout_ms=3000))
    # Meanwhile B's own records are B's orders.
    await b.place(order("B-2", sku))
    accepted = await b.about("B-2", "OrderAccepted")
    assert accepted["data"]["order_id"] == reference_order_id(b.shop_id, "B-2")


async def test_poison_records_are_rejected_readably_and_stall_nothing(
        shops: tuple[KafkaShop, KafkaShop, str], db: asyncpg.Pool) -> None:
    a, _, sku = shops
    big = json.dumps({"specversion": "1.0", "type": "OrderSubmitted", "id": "big",
                      "source": "urn:test", "data": {"padding": "x" * (2 * 1024 * 1024)}})
    partition = TopicPartition(a.access.intake_topic, 0)
    for value, key in ((None, b"P-null"), (b"\x00\xff\xfe binary \x80", b"P-garbage"),
                       (big.encode(), b"P-big")):
        await a.producer.send_and_wait(partition.topic, value, key=key, partition=0)
    await a.producer.send_and_wait(partition.topic, submission(order("P-good", sku)),
                                   key=b"P-good", partition=0)
    seen = await a.decisions(4)
    by_key = {r["key"]: r for r in seen}
    assert by_key["P-null"]["data"]["problem"]["type"].endswith("/bad-request")
    assert "no value" in by_key["P-null"]["data"]["problem"]["detail"]
    assert by_key["P-garbage"]["data"]["problem"]["type"].endswith("/validation-error")
    assert "not valid JSON" in by_key["P-garbage"]["data"]["problem"]["detail"]
    assert by_key["P-big"]["data"]["problem"]["type"].endswith("/body-too-large")
    assert by_key["P-good"]["type"] == "OrderAccepted"
    offsets = [by_key[k]["data"]["intake"]["offset"] for k in ("P-null", "P-garbage", "P-big",
                                                               "P-good")]
    assert offsets == sorted(offsets) and len(set(offsets)) == 4


async def test_the_rejected_input_battery_writes_nothing_but_its_rejections(
        shops: tuple[KafkaShop, KafkaShop, str], db: asyncpg.Pool) -> None:
    a, b, sku = shops
    await a.place(order("R-0", sku))
    await a.about("R-0", "OrderAccepted")
    await a.about("R-0", "ShipmentCreated")
    await asyncio.sleep(1.0)

    async def counts() -> dict[str, int]:
        return {t: await db.fetchval(f"SELECT count(*) FROM orders.{t}") for t in (
            "events", "timers", "sales_orders", "idempotency_keys", "webhook_deliveries")}

    before = await counts()
    good = order("R-x", sku)
    event = json.loads(submission(good))
    battery: list[tuple[bytes | None, str | None, str]] = [
        (b"{broken", "R-1", "validation-error"),
        (json.dumps([1, 2]).encode(), "R-2", "validation-error"),
        (json.dumps({"data": good}).encode(), "R-3", "validation-error"),
        (json.dumps(event | {"type": "OrderPlaced"}).encode(), "R-4", "validation-error"),
        (json.dumps(event | {"specversion": "0.3"}).encode(), "R-5", "validation-error"),
        (submission(order("R-6", "SKU-NOT-LISTED")), "R-6", "unknown-sku"),
        (submission(order("R-7", sku, lines=[{"sku": sku, "quantity": 1, "unit_price": {
            "amount": 25000, "currency": "USD"}}])), "R-7", "currency-mismatch"),
        (submission(order("R-8", sku, lines=[{"sku": sku, "quantity": 0, "unit_price": {
            "amount": 25000, "currency": "EUR"}}])), "R-8", "validation-error"),
        (submission(order("R-9", sku, shop_id=b.shop_id)), "R-9", "validation-error"),
        (submission(order("R-10", sku)), "not-R-10", "validation-error"),
        (submission({k: v for k, v in good.items() if k != "reference"}), "R-11",
         "validation-error"),
        (submission(order("R-12", sku, channel="pos")), "R-12", "validation-error"),
        (submission(order("R-13", sku, payment={"method": "card", "token": None})), "R-13",
         "invalid-order"),
        (submission(order("R-0", sku, customer={"customer_id": "other", "email":
                                                 "x@example.com", "name": "X"})),
         "R-0", "reference-reused"),
        (json.dumps(event | {"data": good | {"note": "\u0000"}}).encode(), "R-14",
         "validation-error"),
        (None, "R-15", "bad-request"),
    ]
    mark = len(a.seen)
    for value, key, _ in battery:
        await a.publish(value, key)
    rejected = {r["key"]: r for r in await a.decisions(len(battery), after=mark)}
    assert {r["type"] for r in rejected.values()} == {"OrderRejected"}, rejected
    for _, key, kind in battery:
        problem = rejected[key]["data"]["problem"]
        assert problem["type"].endswith("/" + kind), (key, problem)
        assert problem["detail"] and problem["title"], problem
    assert await counts() == before


async def test_records_of_a_new_shop_are_picked_up_without_a_restart(
        services: Settings) -> None:
    late = await kafka_shop(services, f"kshop-late-{uuid.uuid4().hex[:6]}")
    sku = f"SKU-L{uuid.uuid4().hex[:6].upper()}"
    await set_stock(services, [("WH-JKT", sku, 10)])
    try:
        await late.place(order("L-1", sku))
        accepted = await late.about("L-1", "OrderAccepted", timeout=60)
        assert accepted["data"]["order_id"].startswith("ord_")
    finally:
        await late.producer.stop()
        await late.outcomes.stop()


async def test_a_reference_sent_over_http_and_kafka_is_one_order(
        shops: tuple[KafkaShop, KafkaShop, str], services: Settings) -> None:
    a, _, sku = shops
    body = order("H-1", sku)
    async with httpx.AsyncClient(base_url=services.api_url, timeout=10) as client:
        first = await client.post("/v1/orders", json=body, headers=await auth(a.shop_id))
    assert first.status_code == 202, first.text
    await a.place(body)
    accepted = await a.about("H-1", "OrderAccepted")
    assert accepted["data"]["order_id"] == first.json()["order_id"]
    assert accepted["data"]["duplicate"] is True


async def refused_at_start(producer: AIOKafkaProducer) -> None:
    """The brokers do not let this producer in; it is closed whatever happens."""
    with pytest.raises((KafkaError, asyncio.TimeoutError)) as refused:
        try:
            await asyncio.wait_for(producer.start(), 20)
        finally:
            await producer.stop()
    print("refused at start:", type(refused.value).__name__, refused.value)


def _by_content(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """first, again, unknown, reused when the records went to several partitions."""
    accepted = sorted((r for r in outcomes if r["type"] == "OrderAccepted"),
                      key=lambda r: bool(r["data"]["duplicate"]))
    rejected = sorted((r for r in outcomes if r["type"] == "OrderRejected"),
                      key=lambda r: str(r["key"]) != "D-2")
    return [*accepted, *rejected]


async def test_the_operators_command_gives_a_shop_working_credentials_once(
        services: Settings) -> None:
    from tests.e2e.test_engineer_tools import alur

    shop_id = f"kshop-cli-{uuid.uuid4().hex[:6]}"
    added = alur(services, "shops", "add", shop_id, "--currency", "EUR", "--kafka")
    assert added.returncode == 0, added.stderr
    password = added.stdout.split("password")[1].split()[0]
    assert f"order-intake.{shop_id}" in added.stdout
    assert f"order-outcomes.{shop_id}" in added.stdout
    assert services.kafka_shop_bootstrap in added.stdout
    sku = f"SKU-C{uuid.uuid4().hex[:6].upper()}"
    await set_stock(services, [("WH-JKT", sku, 10)])
    config = connection(services.kafka_shop_bootstrap, shop_id, password)
    async with AIOKafkaProducer(acks="all", **config) as producer:
        await producer.send_and_wait(f"order-intake.{shop_id}", submission(order("C-1", sku)),
                                     key=b"C-1")
    outcomes = outcome_consumer(config, shop_id)
    await outcomes.start()
    shop = KafkaShop(KafkaAccess(shop_id, shop_id, password, services.kafka_shop_bootstrap,
                                 f"order-intake.{shop_id}", f"order-outcomes.{shop_id}",
                                 f"{shop_id}."), None, outcomes, [])  # type: ignore[arg-type]
    try:
        assert (await shop.about("C-1", "OrderAccepted"))["data"]["order_id"]
    finally:
        await outcomes.stop()
    # A new password replaces the old one: the old one no longer gets in.
    rotated = alur(services, "shops", "kafka", shop_id)
    assert rotated.returncode == 0, rotated.stderr
    assert password not in rotated.stdout
    await refused_at_start(AIOKafkaProducer(**config))
    # Revoked, the shop's credentials let no new connection in.
    fresh = alur(services, "shops", "kafka", shop_id)
    assert fresh.returncode == 0, fresh.stderr
    fresh_password = fresh.stdout.split("password")[1].split()[0]
    async with AIOKafkaProducer(**connection(services.kafka_shop_bootstrap, shop_id,
                                             fresh_password)):
        pass  # gets in
    revoked = alur(services, "shops", "kafka", shop_id, "--revoke")
    assert revoked.returncode == 0 and "deleted" in revoked.stdout, revoked.stderr
    await refused_at_start(AIOKafkaProducer(**connection(
        services.kafka_shop_bootstrap, shop_id, fresh_password)))
    missing = alur(services, "shops", "kafka", "no-such-shop")
    assert missing.returncode == 2 and "no shop no-such-shop" in missing.stderr
