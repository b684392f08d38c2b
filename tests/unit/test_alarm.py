"""The alarm that lets polling loops sleep until their next due row."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from alur.runtime.alarm import Alarm, next_look


async def test_a_sooner_due_time_wakes_the_sleeper_early() -> None:
    alarm = Alarm()
    started = time.monotonic()
    sleeping = asyncio.create_task(alarm.sleep(30.0))
    await asyncio.sleep(0.05)
    alarm.due(datetime.now(UTC) + timedelta(seconds=0.1))
    await asyncio.wait_for(sleeping, 10.0)  # not the 30 s it meant to sleep
    assert time.monotonic() - started >= 0.1


async def test_a_later_due_time_does_not_wake_it_and_nobody_sleeping_hears_nothing() -> None:
    alarm = Alarm()
    alarm.due(datetime.now(UTC))  # no sleeper: nothing to wake, and nothing remembered
    sleeping = asyncio.create_task(alarm.sleep(0.3))
    await asyncio.sleep(0.05)
    alarm.due(datetime.now(UTC) + timedelta(seconds=60))
    await asyncio.sleep(0.1)
    assert not sleeping.done()
    await asyncio.wait_for(sleeping, 10.0)


async def test_woken_at_once_it_still_sleeps_at_least_the_minimum() -> None:
    alarm = Alarm()
    started = time.monotonic()
    sleeping = asyncio.create_task(alarm.sleep(30.0, at_least=0.2))
    await asyncio.sleep(0)
    alarm.due(datetime.now(UTC) - timedelta(seconds=1))
    await asyncio.wait_for(sleeping, 10.0)
    assert time.monotonic() - started >= 0.2


def test_the_next_look_is_when_the_next_row_is_due_within_its_bounds() -> None:
    assert next_look(None, 0.5, 5.0) == 5.0  # nothing due: the idle bound
    assert next_look(Decimal("2.25"), 0.5, 5.0) == 2.25  # PostgreSQL's numeric
    assert next_look(-3, 0.5, 5.0) == 0.5 and next_look(60, 0.5, 5.0) == 5.0
