"""The core store contract: inbox, event store, outbox, audit, savepoints, atomicity."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from alur.runtime.errors import ConcurrencyConflict, StreamBusy
from alur.runtime.ports import DEAD_LETTER_TYPE, AuditRow
from schemas import decode
from tests.unit.builders import event


async def test_the_inbox_remembers_an_event_id_once(store) -> None:
    ev = event("OrderPlaced")
    async with store.new_uow() as uow:
        assert await uow.remember(ev.id) is True
        assert await uow.remember(ev.id) is False
    async with store.new_uow() as uow:
        assert await uow.remember(ev.id) is False


async def test_appended_events_load_back_in_order_with_their_versions(store) -> None:
    a, b, c = event("OrderPlaced", "o1"), event("StockReserved", "o1"), event("Shipped", "o1")
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [a, b], ["own", "observed"])
    async with store.new_uow() as uow:
        await uow.append("o1", 2, [c], ["own"])
    async with store.new_uow() as uow:
        loaded = await uow.load("o1")
    assert [(s.version, s.origin, s.event) for s in loaded] == [
        (1, "own", a), (2, "observed", b), (3, "own", c)]
    async with store.new_uow() as uow:
        assert await uow.load("nobody") == []


async def test_a_stale_expected_version_is_a_concurrency_conflict(store) -> None:
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [event("OrderPlaced", "o1")], ["own"])
    with pytest.raises(ConcurrencyConflict):
        async with store.new_uow() as uow:
            await uow.append("o1", 0, [event("OrderCancelled", "o1")], ["own"])
    async with store.new_uow() as uow:
        assert len(await uow.load("o1")) == 1


async def test_nothing_of_a_failed_unit_of_work_remains(store) -> None:
    ev = event("OrderPlaced", "o1")
    with pytest.raises(RuntimeError):
        async with store.new_uow() as uow:
            await uow.remember(ev.id)
            await uow.append("o1", 0, [ev], ["own"])
            uow.publish(ev)
            raise RuntimeError("crash before commit")
    async with store.new_uow() as uow:
        assert await uow.load("o1") == []
        assert await uow.remember(ev.id) is True
    assert await store.outbox.unpublished(10) == []


async def test_a_savepoint_undoes_only_its_own_writes(store) -> None:
    kept, undone = event("OrderPlaced", "o1"), event("OrderPlaced", "o2")
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [kept], ["own"])
        uow.publish(kept)
        with pytest.raises(ValueError):
            async with uow.savepoint():
                await uow.remember(undone.id)
                await uow.append("o2", 0, [undone], ["own"])
                uow.publish(undone)
                uow.audit(AuditRow(direction="in", topic="orders", outcome="processed"))
                raise ValueError("handler failed")
        assert await uow.remember(undone.id) is True
    rows = await store.outbox.unpublished(10)
    assert [decode(r.value).id for r in rows] == [kept.id]
    async with store.new_uow() as uow:
        assert await uow.load("o2") == []


async def test_the_outbox_hands_out_rows_in_order_until_marked_published(store) -> None:
    events = [event("OrderPlaced", f"o{i}") for i in range(3)]
    async with store.new_uow() as uow:
        for ev in events:
            uow.publish(ev)
        uow.send("orders.dlq", b"k", b"raw", DEAD_LETTER_TYPE)
    rows = await store.outbox.unpublished(10)
    assert [r.topic for r in rows] == ["orders", "orders", "orders", "orders.dlq"]
    assert [r.type for r in rows] == ["OrderPlaced"] * 3 + [DEAD_LETTER_TYPE]
    assert [r.key for r in rows[:3]] == [b"o0", b"o1", b"o2"]
    assert [decode(r.value) for r in rows[:3]] == events
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    await store.outbox.mark_published([(rows[0].id, 2, 41), (rows[1].id, 0, 7)])
    assert [r.id for r in await store.outbox.unpublished(10)] == [rows[2].id, rows[3].id]
    assert [r.id for r in await store.outbox.unpublished(1)] == [rows[2].id]


async def test_pruning_removes_only_published_rows_older_than_the_retention(store) -> None:
    async with store.new_uow() as uow:
        uow.publish(event("OrderPlaced", "o1"))
        uow.publish(event("OrderPlaced", "o2"))
    first, _ = await store.outbox.unpublished(10)
    await store.outbox.mark_published([(first.id, 0, 0)])
    assert await store.outbox.prune(3600) == 0
    assert await store.outbox.prune(0) == 1
    assert len(await store.outbox.unpublished(10)) == 1


async def test_outbox_stats_count_the_unpublished_rows_and_age_the_oldest(store) -> None:
    empty = await store.outbox.stats()
    assert (empty.backlog, empty.oldest_age) == (0, 0.0)
    async with store.new_uow() as uow:
        uow.publish(event("OrderPlaced", "o1"))
        uow.publish(event("OrderPlaced", "o2"))
    first, second = await store.outbox.unpublished(10)
    waiting = await store.outbox.stats()
    assert waiting.backlog == 2
    assert 0.0 <= waiting.oldest_age < 60.0
    await store.outbox.mark_published([(first.id, 0, 0), (second.id, 0, 1)])
    assert (await store.outbox.stats()).backlog == 0
    assert (await store.outbox.stats()).oldest_age == 0.0


async def test_remember_all_returns_only_the_ids_not_seen_before(store) -> None:
    a, b, c = (event("OrderPlaced").id for _ in range(3))
    async with store.new_uow() as uow:
        assert await uow.remember_all([a, b]) == {a, b}
    async with store.new_uow() as uow:
        assert await uow.remember_all([b, c, c]) == {c}
        await uow.forget(b)
    async with store.new_uow() as uow:
        assert await uow.remember_all([a, b]) == {b}


async def test_preloaded_streams_load_the_same_and_see_this_units_appends(store) -> None:
    a, b = event("OrderPlaced", "o1"), event("StockReserved", "o1")
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [a], ["own"])
    async with store.new_uow() as uow:
        await uow.preload(["o1", "o2"])
        assert [s.event for s in await uow.load("o1")] == [a]
        assert await uow.load("o2") == []
        await uow.append("o1", 1, [b], ["observed"])
        assert [s.version for s in await uow.load("o1")] == [1, 2]
        with pytest.raises(ConcurrencyConflict):
            await uow.append("o1", 1, [event("Shipped", "o1")], ["observed"])


async def test_a_savepoint_rollback_also_undoes_appends_to_loaded_streams(store) -> None:
    a = event("OrderPlaced", "o1")
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [a], ["own"])
        with pytest.raises(ValueError):
            async with uow.savepoint():
                await uow.append("o1", 1, [event("Shipped", "o1")], ["observed"])
                raise ValueError("handler failed")
        assert [s.event for s in await uow.load("o1")] == [a]
        await uow.append("o1", 1, [event("Delivered", "o1")], ["observed"])
    async with store.new_uow() as uow:
        assert [s.event.type for s in await uow.load("o1")] == ["OrderPlaced", "Delivered"]


async def test_two_concurrent_writers_to_one_stream_take_turns(postgres_store) -> None:
    async with postgres_store.new_uow() as uow:
        await uow.append("o1", 0, [event("OrderPlaced", "o1")], ["own"])
    first, second = postgres_store.new_uow(), postgres_store.new_uow()
    await first.__aenter__()
    await second.__aenter__()
    await first.append("o1", 1, [event("StockReserved", "o1")], ["observed"])
    # The second writer waits on the stream's lock until the first commits, then sees its
    # append: writing after version 1 is a conflict it learns of before doing any work.
    waiting = asyncio.create_task(second.load("o1"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await first.__aexit__(None, None, None)
    assert [s.version for s in await waiting] == [1, 2]
    with pytest.raises(ConcurrencyConflict):
        await second.append("o1", 1, [event("StockRejected", "o1")], ["observed"])
    await second.__aexit__(None, None, None)
    async with postgres_store.new_uow() as uow:
        assert [s.event.type for s in await uow.load("o1")] == ["OrderPlaced", "StockReserved"]


async def test_a_stream_this_process_knows_still_shows_what_others_wrote(
        postgres_store, fresh_schema) -> None:
    """The process keeps the streams it committed (alur.runtime.postgres.StreamCache); a
    later unit of work still reads the events another process appended after them, and
    notices when the stored stream is not the one it remembers."""
    pool, _ = fresh_schema
    a, b = event("OrderPlaced", "o1"), event("StockReserved", "o1")
    async with postgres_store.new_uow() as uow:
        await uow.append("o1", 0, [a, b], ["own", "observed"])

    async def written_elsewhere(version: int, ev: object) -> None:
        await pool.execute(
            "INSERT INTO events (stream_id, version, event_id, type, origin, body)"
            " VALUES ('o1', $1, $2, $3, 'observed', $4)", version, ev.id, ev.type,
            ev.model_dump_json())

    c = event("PaymentConfirmed", "o1")
    await written_elsewhere(3, c)
    async with postgres_store.new_uow() as uow:
        assert [s.event for s in await uow.load("o1")] == [a, b, c]

    # Restored from elsewhere: the same versions, other events.
    await pool.execute("DELETE FROM events WHERE stream_id = 'o1'")
    others = [event("OrderPlaced", "o1"), event("StockRejected", "o1"),
              event("OrderCancelled", "o1")]
    for version, ev in enumerate(others, 1):
        await written_elsewhere(version, ev)
    async with postgres_store.new_uow() as uow:
        assert [s.event for s in await uow.load("o1")] == others
        await uow.append("o1", 3, [event("RefundIssued", "o1")], ["own"])
    async with postgres_store.new_uow() as uow:
        assert [s.version for s in await uow.load("o1")] == [1, 2, 3, 4]


async def test_unseen_names_the_ids_not_in_the_inbox_and_writes_nothing(store) -> None:
    seen, fresh = event("OrderPlaced", "o1"), event("OrderPlaced", "o2")
    async with store.new_uow() as uow:
        await uow.remember(seen.id)
    async with store.new_uow() as uow:
        assert await uow.unseen([seen.id, fresh.id]) == {fresh.id}
    async with store.new_uow() as uow:
        assert await uow.remember(fresh.id) is True


async def test_a_claimed_stream_is_busy_for_other_writers_until_its_claim_is_released(
        store) -> None:
    """A partner call in flight: once the claim is committed, other writers get StreamBusy,
    the claimant reads on, and the commit that records the outcome releases it."""
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [event("OrderPlaced", "o1")], ["own"])
    with pytest.raises(RuntimeError):
        async with store.new_uow() as uow:
            await uow.claim(["o1"], uuid.uuid4(), 60.0)
            raise RuntimeError("a claim is written with its unit of work or not at all")
    async with store.new_uow() as uow:
        assert len(await uow.load("o1")) == 1
        await uow.claim(["o1"], uuid.uuid4(), 60.0)
    with pytest.raises(StreamBusy):
        async with store.new_uow() as uow:
            await uow.load("o1")
    with pytest.raises(StreamBusy):
        async with store.new_uow() as uow:
            await uow.append("o1", 1, [event("OrderCancelled", "o1")], ["own"])
    async with store.new_uow() as uow:
        uow.claimant = True
        assert len(await uow.load("o1")) == 1
        await uow.append("o1", 1, [event("StockReserved", "o1")], ["own"])
        uow.release_claims(["o1"])
    async with store.new_uow() as uow:
        assert len(await uow.load("o1")) == 2


async def test_a_lapsed_claim_holds_nobody_and_a_new_claim_takes_over(store) -> None:
    async with store.new_uow() as uow:
        await uow.append("o1", 0, [event("OrderPlaced", "o1")], ["own"])
        uow.claimant = True
        await uow.claim(["o1"], uuid.uuid4(), 0.0)
    async with store.new_uow() as uow:
        assert len(await uow.load("o1")) == 1
    async with store.new_uow() as uow:
        uow.claimant = True
        await uow.claim(["o1"], uuid.uuid4(), 60.0)
        await uow.claim(["o1"], uuid.uuid4(), 60.0)  # a redelivery's batch takes it over
    with pytest.raises(StreamBusy):
        async with store.new_uow() as uow:
            await uow.load("o1")


async def test_a_savepoint_rollback_forgets_a_stream_begun_in_it_and_its_timer_changes(
        store) -> None:
    async with store.new_uow() as uow:
        uow.schedule("o1", "stuck", datetime(2030, 1, 1, tzinfo=UTC))
        with pytest.raises(ValueError):
            async with uow.savepoint():
                await uow.append("o2", 0, [event("OrderPlaced", "o2")], ["own"])
                uow.schedule("o1", "stuck", None)
                uow.schedule("o1", "stuck", datetime(2031, 1, 1, tzinfo=UTC))
                uow.schedule("o2", "stuck", datetime(2031, 1, 1, tzinfo=UTC))
                raise ValueError("handler failed")
        assert await uow.load("o2") == []
        placed = event("OrderPlaced", "o2")
        await uow.append("o2", 0, [placed], ["own"])
    async with store.new_uow() as uow:
        assert [s.event for s in await uow.load("o2")] == [placed]
        due = await uow.due_timers(datetime(2032, 1, 1, tzinfo=UTC), 10)
    assert [(t.stream_id, t.due_at) for t in due] == [("o1", datetime(2030, 1, 1, tzinfo=UTC))]
