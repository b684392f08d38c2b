"""Under sustained load, kill every part of the platform in turn, SIGKILL, and let it heal:
each service (its supervisor restarts it), PostgreSQL and the leader of a busy Kafka partition
(restarted after a pause), the gateway and carrier simulators and the SMTP sink; then
duplicate and poison records on every topic. After each fault a probe order is placed; the
time until it is booked with a carrier and its customer e-mailed is the fault's recovery
time, reported at the end and bounded.

Then, once every order has run its course: every accepted order reached exactly one terminal
state and every invariant holds (alur check, the gateway's ledger included); a notifications
kill duplicated at most one e-mail; no consumer group has lag left (no partition stalled);
and, Jepsen-style, every event a relay had acknowledged by Kafka (acks=all, published in its
outbox) is in its topic at the partition and offset Kafka acknowledged, the leader kill
notwithstanding."""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from alur.infra import kafka, postgres, stack
from alur.runtime.db import DATABASE_ERRORS
from alur.settings import SERVICES, Settings
from alur.simulators.customers import CATALOGUE, CURRENCY, SCARCE, STORES, Customers, Plan
from alur.simulators.smtp import read_messages
from alur.tools.invariants import check
from schemas import TOPICS, decode
from services.inventory import seed
from services.orders.admin import onboard
from tests.e2e.test_poison import poisons
from tests.fault.conftest import RECOVERIES
from tests.fault.load import Load, act_while

RATE = 4.0          # orders per second, throughout: a sixth of what the stack takes
RECOVERY_BOUND = 120.0
SETTLE_TIMEOUT = 420.0
SHOPS = ("shop-fault-1", "shop-fault-2")
PROBE = {"channel": "online",
         "customer": {"customer_id": "cus-probe", "email": "probe@example.com", "name": "P"},
         "lines": [{"sku": CATALOGUE[0][0], "quantity": 1,
                    "unit_price": {"amount": CATALOGUE[0][1], "currency": CURRENCY}}],
         "payment": {"method": "card", "token": "tok_visa"},
         "delivery": {"method": "home_delivery", "address": {
             "line1": "Jl. Merdeka No. 1", "city": "Jakarta", "postal_code": "10110",
             "country": "ID"}}}


@pytest.fixture
async def db(fault_stack: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(fault_stack.pg_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def kill_service(settings: Settings, name: str) -> None:
    stack.proc(settings, name).kill()  # the supervisor notices and starts it again


async def kill_postgres(settings: Settings) -> None:
    pid = postgres.proc(settings).pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(5)
    for _ in range(10):  # its backends take a moment to notice their postmaster is gone
        try:
            await asyncio.to_thread(postgres.start, settings)
            return
        except Exception:  # noqa: BLE001 - shared memory still held: try again
            await asyncio.sleep(2)
    await asyncio.to_thread(postgres.start, settings)


async def leader_of(settings: Settings, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return next(int(p["leader"]) for p in described["partitions"]
                    if p["partition"] == partition)
    finally:
        await admin.close()


async def kill_busy_leader(settings: Settings) -> None:
    node = await leader_of(settings, "orders", 0)
    kafka.proc(settings, node).kill()
    await asyncio.sleep(10)
    await asyncio.to_thread(kafka.start_node, settings, node)


def kill_simulators(*names: str) -> Callable[[Settings], Awaitable[None]]:
    async def kill(settings: Settings) -> None:
        for name in names:
            stack.proc(settings, name).kill()
        await asyncio.sleep(3)
        for name in names:
            await asyncio.to_thread(stack.start_process, settings, name)

    return kill


async def inject_duplicates_and_poison(settings: Settings) -> None:
    """Every record so far on the first partition of each topic again, and every kind of
    poison on every partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=1_048_576)
    await consumer.start()
    await producer.start()
    try:
        for topic in ("orders", "inventory", "payments", "shipping"):
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    await producer.send(topic, record.value, key=record.key, partition=0)
            for partition in range(settings.partitions):
                for _, value in poisons(topic, f"fault{partition}"):
                    await producer.send(topic, value, key=b"poison", partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


FAULTS: list[tuple[str, Callable[[Settings], Awaitable[None]]]] = [
    *((f"SIGKILL {name}", lambda s, n=name: kill_service(s, n)) for name in SERVICES),
    ("SIGKILL PostgreSQL, restarted after 5 s", kill_postgres),
    ("SIGKILL the Kafka leader of orders-0, back after 10 s", kill_busy_leader),
    ("SIGKILL the gateway simulator, back after 3 s", kill_simulators("gateway-sim")),
    ("SIGKILL both carrier simulators, back after 3 s",
     kill_simulators("carrier-kilat", "carrier-nusapost")),
    ("SIGKILL the SMTP sink, back after 3 s", kill_simulators("smtp-sink")),
    ("duplicates and poison on every topic", inject_duplicates_and_poison),
]


async def probe_recovered(load: Load, db: asyncpg.Pool) -> None:
    """Place an order and wait until a carrier booked it and its customer was e-mailed."""
    order_id = await load.place(SHOPS[0], dict(PROBE), Plan(method="card", token="tok_visa"))
    assert order_id is not None, "the probe order was never accepted"
    while True:
        try:
            done = await db.fetchval(
                "SELECT (SELECT count(*) FROM shipping.events WHERE stream_id = $1"
                "   AND type = 'ShipmentCreated') > 0 AND (SELECT count(*) FROM"
                "   notifications.events WHERE stream_id = $1 AND type = 'NotificationSent') > 0",
                order_id)
        except DATABASE_ERRORS:
            done = False
        if done:
            return
        await asyncio.sleep(0.5)


async def lagging(settings: Settings) -> dict[str, int]:
    """Messages each service's consumer group has not committed yet, over its topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        out = {}
        for service in SERVICES:
            definition = __import__(f"services.{service}.bootstrap",
                                    fromlist=["DEFINITION"]).DEFINITION
            tps = [TopicPartition(t, p) for t in definition.subscriptions
                   for p in range(settings.partitions)]
            committed = await admin.list_consumer_group_offsets(f"alur-{service}")
            ends = await consumer.end_offsets(tps)
            out[service] = sum(ends[tp] - (committed[tp].offset if tp in committed else 0)
                               for tp in tps)
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def records_by_position(settings: Settings) -> dict[tuple[str, int, int], str]:
    """Every record of every topic: (topic, partition, offset) -> its event id."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in TOPICS for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[tuple[str, int, int], str] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    try:
                        found[(tp.topic, tp.partition, r.offset)] = str(decode(r.value).id)
                    except Exception:  # noqa: BLE001 - the poison injected above
                        found[(tp.topic, tp.partition, r.offset)] = ""
        return found
    finally:
        await consumer.stop()


async def test_every_fault_heals_under_load_and_every_invariant_holds(
        fault_stack: Settings, db: asyncpg.Pool) -> None:
    settings = fault_stack
    await seed.set_stock(settings, [(loc, sku, 1_000_000) for loc in ("WH-1", *STORES)
                                    for sku, _ in CATALOGUE] + [("WH-1", SCARCE[0], 20)])
    skus = [s for s, _ in (*CATALOGUE, SCARCE)]
    keys = {shop: (await onboard(settings, shop, CURRENCY, skus, rate_per_second=10_000,
                                 burst=10_000))[0] for shop in SHOPS}
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=10) as api, \
            httpx.AsyncClient(base_url=settings.gateway_url, timeout=10) as gateway:
        customers = Customers(api, gateway, keys)
        load = Load(api, customers, SHOPS, RATE)
        stop = asyncio.Event()
        running = [asyncio.create_task(load.run(stop)),
                   asyncio.create_task(act_while(customers, db, stop))]
        try:
            await asyncio.sleep(10)  # the load reaches a steady state first
            for fault, inject in FAULTS:
                started = time.monotonic()
                await inject(settings)
                await asyncio.wait_for(probe_recovered(load, db), RECOVERY_BOUND)
                RECOVERIES.append((fault, time.monotonic() - started, RECOVERY_BOUND))
                await asyncio.sleep(3)
        finally:
            stop.set()
            await asyncio.gather(*running)
        assert load.given_up == 0, "an order got no 202 in three minutes of retries"
        left = await customers.act_until_done(db, SETTLE_TIMEOUT, lambda _: None)
        assert not left, "\n".join([f"{len(left)} orders did not run their course:",
                                     *await customers.explain(db, left)])

    accepted = [p.order_id for p in load.placed]
    async with db.acquire() as conn:
        report = await check(conn, accepted)
    assert report.orders == len(accepted) == len(set(accepted))  # every 202 is an order
    assert report.violations == [] and report.unsettled == [], report.violations[:10]

    mails = [email.message_from_bytes(raw) for raw in read_messages(settings.mail_dir)]
    ids = Counter(m["Message-ID"] for m in mails if any(o in str(m["Subject"])
                                                         for o in set(accepted)))
    duplicated = sum(n - 1 for n in ids.values())
    # Each fault that can fall between the SMTP server's acceptance and the record of it may
    # leave the e-mail in flight to be sent again: the notifications kill, the PostgreSQL kill
    # (the record cannot be written) and the SMTP sink kill.
    assert duplicated <= 3, f"{duplicated} e-mails sent twice (the notifications, PostgreSQL " \
                            "and SMTP sink kills may each leave the one in flight)"

    deadline = time.monotonic() + 60
    while (lag := await lagging(settings)) and any(lag.values()) and time.monotonic() < deadline:
        await asyncio.sleep(2)
    assert not any(lag.values()), f"consumer groups left behind: {lag}"

    # Jepsen-style: what Kafka acknowledged is there, where it said it put it.
    in_topics = await records_by_position(settings)
    for service in SERVICES:
        acked = await db.fetch(
            f'SELECT event_id, topic, partition, "offset" FROM {service}.outbox'
            " WHERE published_at IS NOT NULL AND event_id IS NOT NULL"
            " AND topic = ANY($1::text[])", list(TOPICS))  # not the shops' outcome topics
        assert acked, service
        lost = [r for r in acked
                if in_topics.get((r["topic"], r["partition"], r["offset"])) != str(r["event_id"])]
        assert not lost, f"{service}: {len(lost)} acknowledged events not where Kafka put " \
                         f"them, e.g. {[dict(r) for r in lost[:3]]}"
    print(json.dumps({"accepted": len(accepted), "retried": load.retried,
                      "duplicate e-mails": duplicated}))
