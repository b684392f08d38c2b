"""A slow gateway answer delays its own order only, and no lock is held while it is awaited.

On the real stack: the gateway simulator answers a `_slow` token's charge after
SLOW_SECONDS. Orders placed after the slow one are paid before it (they do not queue behind
its answer), and while the charge is awaited the slow order's stream lock is free and no
connection of the payments service sits in an open transaction; its claim is what keeps the
service's other writers off it."""

from __future__ import annotations

import asyncio

from alur.runtime.postgres import stream_lock_key
from alur.simulators.gateway import SLOW_SECONDS
from tests.e2e.helpers import all_delivered, new_sku, order_body, place, set_stock, wait_until

OTHERS = 10


async def paid_at(db, order_ids: list[str]) -> dict[str, object]:  # noqa: ANN001
    rows = await db.fetch(
        "SELECT stream_id, recorded_at FROM payments.events "
        "WHERE type = 'PaymentConfirmed' AND stream_id = ANY($1::text[])", order_ids)
    return {r["stream_id"]: r["recorded_at"] for r in rows}


async def test_a_slow_gateway_answer_delays_its_own_order_only(services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 100)])
    slow = await place(api, order_body(sku, token="tok_visa_slow"))
    others = [await place(api, order_body(sku)) for _ in range(OTHERS)]

    async def slow_charge_in_flight() -> bool:
        return bool(await db.fetchval(
            "SELECT count(*) FROM payments.claims WHERE stream_id = $1", slow))

    await wait_until(slow_charge_in_flight, 60, "payments to ask the gateway for the charge")
    high, low = divmod(stream_lock_key("payments", slow) & (2**64 - 1), 2**32)

    async def locked() -> bool:
        return bool(await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = $1 AND objid::bigint = $2", high, low))

    samples = 0
    while await slow_charge_in_flight():
        # The claim's own transactions hold the lock for milliseconds at either end; held
        # half a second later, with the claim still there, it would be held across the call.
        if await locked():
            await asyncio.sleep(0.5)
            assert not (await locked() and await slow_charge_in_flight()), \
                "the slow order's stream lock is held while the gateway thinks"
        open_for_long = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'alur-payments' "
            "AND state LIKE 'idle in transaction%' AND now() - xact_start > interval '1 second'")
        assert open_for_long == 0, "a payments transaction stays open across the charge"
        samples += 1
        await asyncio.sleep(0.2)
    assert samples >= 3, "the charge was not awaited long enough to look"

    async def all_paid() -> bool:
        return len(await paid_at(db, [slow, *others])) == OTHERS + 1

    await wait_until(all_paid, 60, "every order to be paid")
    paid = await paid_at(db, [slow, *others])
    # Placed after it, paid before it: none of them waited for the slow answer.
    assert all(paid[o] < paid[slow] for o in others), paid
    # ... and it was slow: paid well after the first of them (batches wait at most
    # ALUR_STRAGGLER_AFTER, 2 s, for a call before they commit without it).
    assert (paid[slow] - min(paid.values())).total_seconds() > SLOW_SECONDS / 4
    charges = await db.fetchval(
        "SELECT count(*) FROM gateway_sim.charges WHERE reference = $1", slow)
    assert charges == 1
    await wait_until(lambda: all_delivered(db, [slow, *others]), 90, "every order delivered")
