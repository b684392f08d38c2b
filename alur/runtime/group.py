"""Group commit: callers that each need one small write (or read) share one statement.

A caller submits its item and waits for its own answer. The first submission starts a
writer task; items submitted while it runs (the same loop turn, or during its statement) go
into its next group, so under load a group fills up while the one before is written, and a
lone caller waits for nothing but its own statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class GroupCommit(Generic[K, V]):
    """`run(items)` answers a group, one outcome (a value, or the Exception that failed it)
    per item. When `run` raises for a whole group and `alone(exc)` says so, each item is
    run again on its own, so that the one the database refuses fails only itself;
    otherwise (an outage) every item of the group gets the error."""

    def __init__(self, run: Callable[[list[K]], Awaitable[Sequence[V | Exception]]], *,
                 alone: Callable[[Exception], bool] = lambda _: False,
                 max_group: int = 200) -> None:
        self._run, self._alone, self._max = run, alone, max_group
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: K) -> V:
        answer: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await answer

    async def _outcomes(self, items: list[K]) -> Sequence[V | Exception]:
        try:
            return await self._run(items)
        except Exception as exc:
            if len(items) == 1 or not self._alone(exc):
                return [exc] * len(items)
        outcomes: list[V | Exception] = []
        for item in items:
            try:
                outcomes.extend(await self._run([item]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _write(self) -> None:
        while self._waiting:
            group = self._waiting[:self._max]
            del self._waiting[:self._max]
            outcomes = await self._outcomes([item for item, _ in group])
            for (_, answer), outcome in zip(group, outcomes, strict=True):
                if answer.done():  # its caller went away
                    continue
                if isinstance(outcome, Exception):
                    answer.set_exception(outcome)
                else:
                    answer.set_result(outcome)
