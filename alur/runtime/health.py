"""The operations endpoint of every service process: `/metrics`, `/healthz` and `/readyz`.

- `/healthz` answers 200 while the process's event loop runs and its core is not wedged
  (liveness: restart me if not). The core's loops (consumer, relay, timers) report to a
  `Watchdog`: one that has been failing, or busy without progress, for `wedged_after` seconds
  makes `/healthz` answer 503 naming it, and the worker exits for its supervisor.
- `/readyz` answers 200 only when every readiness check passes (the database answers, the broker
  answers a metadata request, partitions are assigned) and 503 otherwise, with each check's
  result in a JSON body. With more replicas than partitions, a replica without partitions is
  correctly reported not ready: it is a warm standby, not a worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Check = Callable[[], Awaitable[str]]
"""Returns a short description when healthy; raises with the reason when not."""
CHECK_TIMEOUT = 2.0


@dataclass
class _Trouble:
    since: float
    detail: str


class Watchdog:
    """Which of the core's loops are failing, or busy without progress, and since when.

    A loop calls `failed` when a round fails and `ok` when one succeeds; around work that
    should move (a consumed batch) it holds `busy` and calls `progress` as it moves. A database
    or broker outage is ridden out in-process: the loops retry, and recover when it returns.
    Only when one has not recovered for `wedged_after` seconds is the process wedged."""

    def __init__(self, wedged_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.wedged_after = wedged_after
        self._clock = clock
        self._failing: dict[str, _Trouble] = {}
        self._busy: dict[str, float] = {}  # loop -> last progress while busy

    def failed(self, loop: str, error: str) -> None:
        trouble = self._failing.setdefault(loop, _Trouble(self._clock(), error))
        trouble.detail = error

    def ok(self, loop: str) -> None:
        self._failing.pop(loop, None)

    @contextmanager
    def busy(self, loop: str) -> Iterator[None]:
        self._busy[loop] = self._clock()
        try:
            yield
        finally:
            self._busy.pop(loop, None)

    def progress(self, loop: str) -> None:
        if loop in self._busy:
            self._busy[loop] = self._clock()

    def wedged(self) -> dict[str, str]:
        """Loop -> why, for every loop stuck longer than `wedged_after`."""
        now = self._clock()
        out = {loop: f"failing for {now - t.since:.0f}s: {t.detail}"[:300]
               for loop, t in self._failing.items() if now - t.since >= self.wedged_after}
        for loop, last in self._busy.items():
            if now - last >= self.wedged_after and loop not in out:
                out[loop] = f"no progress for {now - last:.0f}s"
        return out


async def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, dict[str, str]]]:
    async def one(check: Check) -> dict[str, str]:
        try:
            return {"status": "ok", "detail": await asyncio.wait_for(check(), CHECK_TIMEOUT)}
        except TimeoutError:
            return {"status": "failing", "detail": f"no answer within {CHECK_TIMEOUT:g}s"}
        except Exception as exc:
            return {"status": "failing", "detail": f"{type(exc).__name__}: {exc}"[:300]}

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    report = dict(zip(names, results, strict=True))
    return all(r["status"] == "ok" for r in results), report


def operations_app(service: str, checks: Mapping[str, Check],
                   watchdog: Watchdog | None = None) -> web.Application:
    started = time.time()

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        uptime = round(time.time() - started, 1)
        wedged = watchdog.wedged() if watchdog is not None else {}
        if wedged:
            return web.json_response({"service": service, "status": "wedged",
                                      "uptime_seconds": uptime, "wedged": wedged}, status=503)
        return web.json_response({"service": service, "status": "alive",
                                  "uptime_seconds": uptime})

    async def readyz(_: web.Request) -> web.Response:
        ready, report = await run_checks(checks)
        return web.json_response(
            {"service": service, "status": "ready" if ready else "not_ready", "checks": report},
            status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_operations(service: str, host: str, port: int, checks: Mapping[str, Check],
                           watchdog: Watchdog | None = None) -> web.AppRunner:
    """Start the endpoint on the running loop; the caller cleans the runner up."""
    runner = web.AppRunner(operations_app(service, checks, watchdog), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
