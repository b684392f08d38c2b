"""The operations endpoint of every service process: `/metrics`, `/healthz` and `/readyz`.

- `/healthz` answers 200 while the process's event loop runs (liveness: restart me if not).
- `/readyz` answers 200 only when every readiness check passes (the database answers, the broker
  answers a metadata request, partitions are assigned) and 503 otherwise, with each check's
  result in a JSON body. With more replicas than partitions, a replica without partitions is
  correctly reported not ready: it is a warm standby, not a worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Check = Callable[[], Awaitable[str]]
"""Returns a short description when healthy; raises with the reason when not."""
CHECK_TIMEOUT = 2.0


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


def operations_app(service: str, checks: Mapping[str, Check]) -> web.Application:
    started = time.time()

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"service": service, "status": "alive",
                                  "uptime_seconds": round(time.time() - started, 1)})

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


async def serve_operations(service: str, host: str, port: int,
                           checks: Mapping[str, Check]) -> web.AppRunner:
    """Start the endpoint on the running loop; the caller cleans the runner up."""
    runner = web.AppRunner(operations_app(service, checks), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
