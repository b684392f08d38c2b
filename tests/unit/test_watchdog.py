"""The watchdog behind /healthz: outages are ridden out for `wedged_after` seconds, and a loop
stuck longer (failing, or busy without progress) is named."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from alur.runtime.health import Watchdog, operations_app


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_recovers_within_the_bound_was_never_wedged() -> None:
    clock = Clock()
    dog = Watchdog(60, clock)
    dog.failed("consumer", "PostgreSQL unavailable")
    clock.now = 59
    dog.failed("consumer", "still unavailable")
    assert dog.wedged() == {}
    dog.ok("consumer")
    clock.now = 500
    assert dog.wedged() == {}


def test_failing_since_the_first_failure_with_the_latest_error() -> None:
    clock = Clock()
    dog = Watchdog(60, clock)
    dog.failed("relay", "broker gone")
    clock.now = 30
    dog.failed("relay", "connection refused")
    clock.now = 61
    assert dog.wedged() == {"relay": "failing for 61s: connection refused"}


def test_busy_without_progress_is_wedged_and_progress_keeps_it_alive() -> None:
    clock = Clock()
    dog = Watchdog(60, clock)
    with dog.busy("consumer"):
        for _ in range(10):
            clock.now += 30
            dog.progress("consumer")
        assert dog.wedged() == {}
        clock.now += 61
        assert dog.wedged() == {"consumer": "no progress for 61s"}
    assert dog.wedged() == {}


async def test_healthz_answers_503_naming_the_wedged_loop() -> None:
    clock = Clock()
    dog = Watchdog(10, clock)
    async with TestClient(TestServer(operations_app("inventory", {}, dog))) as client:
        assert (await client.get("/healthz")).status == 200
        dog.failed("timers", "cannot fire timers: connection refused")
        clock.now = 11
        answer = await client.get("/healthz")
        assert answer.status == 503
        body = await answer.json()
        assert body["status"] == "wedged" and "connection refused" in body["wedged"]["timers"]
