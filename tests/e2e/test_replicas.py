"""Two replicas of inventory and of payments in one consumer group each: every timer fires
once, and no event is handled twice, while the group rebalances and timers come due."""

from __future__ import annotations

import asyncio
import re

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from alur.infra import stack
from alur.settings import Settings
from tests.e2e.helpers import all_settled, order_body, place, wait_until
from tests.e2e.test_branches import no_violations, stocked

REPLICATED = ("inventory", "payments")
EXPIRING_RESERVATIONS, EXPIRING_TRANSFERS, PAID = 30, 30, 30


def metrics_urls(settings: Settings, service: str) -> list[str]:
    return [f"http://127.0.0.1:{s.metrics_port(service)}/metrics"
            for s in (settings, stack.replica_settings(settings, 2))]


async def fired(settings: Settings, service: str, kind: str) -> list[float]:
    """alur_timers_fired_total{kind} as each replica of `service` counts it."""
    pattern = re.compile(rf'^alur_timers_fired_total\{{[^}}]*kind="{kind}"[^}}]*\}} (\S+)$',
                         re.MULTILINE)
    async with httpx.AsyncClient(timeout=5) as client:
        bodies = [(await client.get(url)).text for url in metrics_urls(settings, service)]
    return [sum(float(v) for v in pattern.findall(body)) for body in bodies]


async def members(settings: Settings, service: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([f"alur-{service}"])
        return sum(len(group[-1]) if isinstance(group[-1], list) else len(group[5])
                   for group in response.groups)
    finally:
        await admin.close()


async def handled_twice(db, schema: str, order_ids: list[str]) -> int:  # noqa: ANN001
    """Events of these orders that a service's audit log shows handled more than once."""
    return int(await db.fetchval(
        f"SELECT count(*) FROM (SELECT event_id FROM {schema}.audit WHERE direction = 'in'"
        " AND outcome = 'handled' AND order_id = ANY($1::text[])"
        " GROUP BY event_id HAVING count(*) > 1) twice", order_ids))


async def own_events(db, schema: str, event_type: str, order_ids: list[str]) -> list[str]:  # noqa: ANN001
    rows = await db.fetch(f"SELECT stream_id FROM {schema}.events WHERE type = $1"
                          " AND origin = 'own' AND stream_id = ANY($2::text[])",
                          event_type, order_ids)
    return [r["stream_id"] for r in rows]


async def test_two_replicas_fire_each_timer_once_and_handle_each_event_once(
        services, api, db) -> None:
    try:
        for service in REPLICATED:
            await asyncio.to_thread(stack.start_replica, services, service, 2)

        async def both_in_the_group() -> bool:
            return all([await members(services, s) == 2 for s in REPLICATED])

        await wait_until(both_in_the_group, 60, "two members in each consumer group")
        before = await fired(services, "inventory", "reservation_expiry")
        sku = await stocked(services, 1000)

        # Nobody takes the payments up: every reservation expires, fired by one of two replicas.
        stack.services_down(services, ("payments",))
        unpaid = [await place(api, order_body(sku)) for _ in range(EXPIRING_RESERVATIONS)]
        await wait_until(lambda: all_settled(db, unpaid), 150, "the reservations to expire")
        for service in REPLICATED[1:]:
            await asyncio.to_thread(stack.start_process, services, service)
            await asyncio.to_thread(stack.start_replica, services, service, 2)
        # Transfers never paid expire in payments; card orders go through as usual.
        transfers = [await place(api, order_body(sku, method="bank_transfer"))
                     for _ in range(EXPIRING_TRANSFERS)]
        paid = [await place(api, order_body(sku)) for _ in range(PAID)]
        every = unpaid + transfers + paid
        await wait_until(lambda: all_settled(db, every), 120, "every order to settle")

        assert sorted(await own_events(db, "inventory", "ReservationExpired", every)) == sorted(
            unpaid)
        assert sorted(await own_events(db, "payments", "PaymentExpired", every)) == sorted(
            transfers)
        for schema in ("inventory", "payments"):
            assert await handled_twice(db, schema, every) == 0, schema
        after = await fired(services, "inventory", "reservation_expiry")
        split = {"inventory": [a - b for a, b in zip(after, before, strict=True)],
                 # both payments replicas were restarted: their counters began at 0
                 "payments": await fired(services, "payments", "payment_expiry")}
        print(f"timers fired per replica: {split}")
        assert sum(split["inventory"]) == EXPIRING_RESERVATIONS
        assert sum(split["payments"]) == EXPIRING_TRANSFERS

        async def stock_back() -> bool:
            row = await db.fetchrow("SELECT sum(on_hand) AS h, sum(reserved) AS r"
                                    " FROM inventory.stock WHERE sku = $1", sku)
            return (row["h"], row["r"]) == (1000 - PAID, 0)

        await wait_until(stock_back, 60, "the expired reservations' stock to be back")
        await no_violations(services, db, every)
    finally:
        for service in REPLICATED:
            stack.proc(services, f"{service}-2").stop()
        await asyncio.to_thread(stack.services_up, services)
