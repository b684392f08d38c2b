"""When the process's loops that poll a table (timers, the shops' webhook deliveries) look next.

The timer loop sleeps until the earliest due timer (at most `idle` seconds, at least `interval`
after a round), so an idle service costs a transaction every few seconds instead of one per
`timer_interval`. A unit of work of this process that commits a timer due sooner than the loop
meant to look wakes it (`due`). A timer another replica writes is seen within `idle` seconds,
or sooner by that replica's own loop. The webhook loop sleeps the same way, woken by any unit
of work of this process that appended events (a trigger queues their deliveries)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import SupportsFloat


class Alarm:
    def __init__(self) -> None:
        self._woken = asyncio.Event()
        self._until: float | None = None  # time.monotonic() the loop sleeps until

    def due(self, at: datetime) -> None:
        """A timer due `at` was committed."""
        if self._until is None:
            return
        wanted = time.monotonic() + (at - datetime.now(UTC)).total_seconds()
        if wanted < self._until:
            self._until = wanted
            self._woken.set()

    async def sleep(self, seconds: float, at_least: float = 0.0) -> None:
        """Sleep `seconds`, or less when woken for an earlier timer, but `at_least`."""
        started = time.monotonic()
        self._until = started + seconds
        try:
            while (left := self._until - time.monotonic()) > 0:
                self._woken.clear()
                try:
                    await asyncio.wait_for(self._woken.wait(), left)
                except TimeoutError:
                    break
            if (rest := started + at_least - time.monotonic()) > 0:
                await asyncio.sleep(rest)
        finally:
            self._until = None


def next_look(due_in: SupportsFloat | None, at_least: float, at_most: float) -> float:
    """Seconds to sleep before looking again at a table whose next row is due in `due_in`
    seconds (PostgreSQL's numeric, or None: no row due at all)."""
    return at_most if due_in is None else min(at_most, max(at_least, float(due_in)))


# The process's alarms, once their loops run (worker._fire_timers, the orders service's webhook
# loop); PostgresUnitOfWork tells them what it committed.
TIMERS: Alarm | None = None
WRITES: Alarm | None = None
