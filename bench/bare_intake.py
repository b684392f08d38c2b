"""The intake baseline for bench/e2e.py: the least a durable order intake can do, a FastAPI app
whose one route validates nothing and INSERTs the body with asyncpg, answering 202 after the
commit. Run as its own process, like the orders service:

    python bench/bare_intake.py PORT DSN
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app(dsn: str) -> FastAPI:
    pools: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pools["db"] = await asyncpg.create_pool(dsn, min_size=4, max_size=8)
        await pools["db"].execute("CREATE TABLE IF NOT EXISTS bare_orders "
                                  "(id uuid PRIMARY KEY, body jsonb NOT NULL)")
        yield
        await pools["db"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders")
    async def place(request: Request) -> JSONResponse:
        order_id = uuid.uuid4()
        await pools["db"].execute("INSERT INTO bare_orders (id, body) VALUES ($1, $2)",
                                  order_id, (await request.body()).decode())
        return JSONResponse({"order_id": str(order_id)}, status_code=202)

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning", access_log=False)
