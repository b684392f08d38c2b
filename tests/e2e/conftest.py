from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from alur.infra import stack
from alur.infra.supervisor import want_file
from alur.settings import SERVICES, Settings
from tests.e2e.helpers import auth


@pytest.fixture(scope="session")
def services(infra: Settings) -> Iterator[Settings]:
    """The five services as OS processes, for the whole e2e session."""
    stack.services_up(infra)
    try:
        yield infra
    finally:
        stack.services_down(infra)


@pytest.fixture(autouse=True)
def every_service_back_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stops a service and fails before it restarts it leaves it stopped for the
    rest of the session; bring it back, so one failure shows as one failure."""
    yield
    if "services" in request.fixturenames:
        settings = request.getfixturevalue("services")
        stopped = tuple(n for n in SERVICES if not want_file(settings, n).exists())
        if stopped:
            stack.services_up(settings, stopped)


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
