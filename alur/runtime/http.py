"""An HTTP app served inside a service's faust worker (the orders API, payment callbacks)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.types import ASGIApp


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the faust worker: the worker owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def embedded_server(app: ASGIApp, host: str, port: int,
                    log_level: str) -> Callable[[], Awaitable[None]]:
    """A background job for ServiceParts that serves `app` until the worker stops."""
    server = EmbeddedServer(uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off"))

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            server.should_exit = True

    return serve
