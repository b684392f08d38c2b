from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from alur.infra import stack
from alur.settings import Settings
from tests.e2e.helpers import auth


@pytest.fixture(scope="session")
def services(infra: Settings) -> Iterator[Settings]:
    """The five services as OS processes, for the whole e2e session."""
    stack.services_up(infra)
    try:
        yield infra
    finally:
        stack.services_down(infra)


@pytest.fixture
async def api(services: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services.api_url, timeout=10,
                                 headers=await auth()) as client:
        yield client


@pytest.fixture
async def db(services: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(services.pg_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()
