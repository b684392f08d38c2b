"""The timers contract: scheduled with the unit of work, due in order, held against a second
unit of work (another replica) until the first ends, undone with a savepoint or a failure."""

from datetime import UTC, datetime, timedelta

import pytest

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def due(store, now: datetime) -> list[tuple[str, str, datetime]]:  # noqa: ANN001
    async with store.new_uow() as uow:
        return [(t.stream_id, t.kind, t.due_at) for t in await uow.due_timers(now, 100)]


async def test_timers_come_due_earliest_first_and_only_when_due(store) -> None:
    async with store.new_uow() as uow:
        uow.schedule("o1", "payment_expiry", at(20))
        uow.schedule("o2", "reservation_expiry", at(10))
        uow.schedule("o3", "stuck", at(99))
    assert await due(store, at(5)) == []
    assert await due(store, at(20)) == [("o2", "reservation_expiry", at(10)),
                                        ("o1", "payment_expiry", at(20))]


async def test_scheduling_again_moves_a_timer_and_none_cancels_it(store) -> None:
    async with store.new_uow() as uow:
        uow.schedule("o1", "stuck", at(10))
        uow.schedule("o2", "stuck", at(10))
    async with store.new_uow() as uow:
        uow.schedule("o1", "stuck", at(30))
        uow.schedule("o2", "stuck", None)
        uow.schedule("o3", "stuck", None)  # cancelling what does not exist is fine
    assert await due(store, at(20)) == []
    assert await due(store, at(30)) == [("o1", "stuck", at(30))]


async def test_a_failed_unit_of_work_or_savepoint_schedules_nothing(store) -> None:
    with pytest.raises(RuntimeError):
        async with store.new_uow() as uow:
            uow.schedule("o1", "stuck", at(1))
            raise RuntimeError("crash before commit")
    async with store.new_uow() as uow:
        uow.schedule("o2", "stuck", at(1))
        with pytest.raises(RuntimeError):
            async with uow.savepoint():
                uow.schedule("o2", "stuck", None)
                uow.schedule("o3", "stuck", at(1))
                raise RuntimeError("handler failed")
    assert await due(store, at(1)) == [("o2", "stuck", at(1))]


async def test_a_due_timer_is_held_until_its_unit_of_work_ends(store) -> None:
    async with store.new_uow() as uow:
        uow.schedule("o1", "stuck", at(1))
        uow.schedule("o2", "stuck", at(2))
    async with store.new_uow() as first:
        taken = await first.due_timers(at(5), 1)
        assert [t.stream_id for t in taken] == ["o1"]
        async with store.new_uow() as second:  # another replica, at the same moment
            assert [t.stream_id for t in await second.due_timers(at(5), 10)] == ["o2"]
        first.schedule("o1", "stuck", None)  # fired
    assert [s for s, _, _ in await due(store, at(5))] == ["o2"]


async def test_a_timer_held_by_a_failed_unit_of_work_comes_due_again(store) -> None:
    async with store.new_uow() as uow:
        uow.schedule("o1", "stuck", at(1))
    with pytest.raises(RuntimeError):
        async with store.new_uow() as uow:
            assert len(await uow.due_timers(at(5), 10)) == 1
            uow.schedule("o1", "stuck", None)
            raise RuntimeError("crash while firing")
    assert await due(store, at(5)) == [("o1", "stuck", at(1))]


async def test_the_timers_of_a_stream_being_written_wait_for_the_writer(store) -> None:
    """A timer round does not wait for a stream another unit of work holds (a consumer's
    batch): it leaves that stream's timers for a later round, and takes the rest."""
    async with store.new_uow() as uow:
        uow.schedule("o1", "stuck", at(1))
        uow.schedule("o2", "stuck", at(2))
    async with store.new_uow() as batch:
        await batch.load("o1")
        async with store.new_uow() as round_:
            assert [t.stream_id for t in await round_.due_timers(at(5), 10)] == ["o2"]
            round_.schedule("o2", "stuck", None)
        batch.schedule("o1", "stuck", at(3))
    assert await due(store, at(5)) == [("o1", "stuck", at(3))]
