"""Each contract test runs once against the in-memory fake and once against the real adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from alur.runtime.memory import InMemoryOutbox, InMemoryUnitOfWork, MemoryState
from alur.runtime.postgres import PostgresOutbox, PostgresUnitOfWork


@dataclass
class Store:
    """A unit-of-work factory and the outbox of the same storage."""

    new_uow: Any
    outbox: Any
    kind: str


@pytest.fixture
def memory_store() -> Store:
    state = MemoryState()
    return Store(lambda: InMemoryUnitOfWork(state), InMemoryOutbox(state), "memory")


@pytest.fixture
def postgres_store(fresh_schema) -> Store:  # noqa: ANN001
    pool, schema = fresh_schema
    return Store(lambda: PostgresUnitOfWork(pool, schema), PostgresOutbox(pool), "postgres")


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")
