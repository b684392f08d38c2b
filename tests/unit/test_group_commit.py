"""alur.runtime.group.GroupCommit: callers share a statement and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from alur.runtime.group import GroupCommit


async def test_callers_of_the_same_turn_share_one_run_and_later_ones_the_next() -> None:
    runs: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> Sequence[int | Exception]:
        runs.append(items)
        await release.wait()
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run)
    first = [asyncio.create_task(group.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(group.submit(i)) for i in (4, 5)]  # while the first runs
    await asyncio.sleep(0.01)
    assert runs == [[1, 2, 3]]
    release.set()
    assert await asyncio.gather(*first, *later) == [10, 20, 30, 40, 50]
    assert runs == [[1, 2, 3], [4, 5]]


async def test_an_outage_fails_the_whole_group_and_a_refusal_only_its_item() -> None:
    async def run(items: list[int]) -> Sequence[int | Exception]:
        if 0 in items and len(items) > 1:
            raise ValueError("the database refuses one of them")
        if 0 in items:
            raise ValueError("refused")
        if -1 in items:
            raise ConnectionError("gone")
        return items

    group: GroupCommit[int, int] = GroupCommit(
        run, alone=lambda exc: not isinstance(exc, ConnectionError))
    answers = await asyncio.gather(*(group.submit(i) for i in (1, 0, 2)),
                                   return_exceptions=True)
    assert answers[0] == 1 and answers[2] == 2 and isinstance(answers[1], ValueError)
    answers = await asyncio.gather(*(group.submit(i) for i in (3, -1)),
                                   return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)


async def test_a_caller_that_went_away_does_not_stop_the_others() -> None:
    async def run(items: list[int]) -> Sequence[int | Exception]:
        await asyncio.sleep(0.01)
        return items

    group: GroupCommit[int, int] = GroupCommit(run)
    gone = asyncio.create_task(group.submit(1))
    stays = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == 2
    with pytest.raises(asyncio.CancelledError):
        await gone
