"""Fixtures. Unit tests need no servers. Tests under api/, contract/ and e2e/ use a real Kafka,
PostgreSQL and Prometheus that this file starts once per session on their own ports and in
their own state dir (.alur/test, wiped first), and stops by PID at the end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings

from alur.infra import stack
from alur.runtime.db import CORE_SQL, connect_pool, migrate
from alur.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_settings() -> Settings:
    return Settings(
        state_dir=ROOT / ".alur" / "test", jar_dir=ROOT / ".alur" / "jars",
        kafka_port=29092, kafka_controller_port=29093, pg_port=25432, smtp_port=2526,
        api_port=8081, gateway_port=8091, metrics_port_base=9500, partitions=4,
        session_timeout=6.0, log_level="info", relay_interval=0.2, prometheus_port=9590,
        scrape_interval=1.0, sample_interval=1.0, payments_port=8083, inventory_port=8085,
        shipping_port=8110, kilat_port=8111, nusapost_port=8112,
        # Short business deadlines, so that tests see them pass: a reservation unpaid for 45 s
        # (payments stopped) and a bank transfer unpaid for 8 s expire; a paid order can be
        # cancelled for 3 s before it is released to shipping. The reservation outlives the
        # dead-letter tools' test: the gateway's outage (10 s of patience), then trace, list and
        # redrive through the CLI, on a loaded CI machine.
        reservation_ttl=45.0, bank_transfer_ttl=8.0, app_payment_ttl=8.0, release_after=3.0,
        # The e2e webhook receiver listens on loopback: the development egress setting.
        egress_allow_loopback=True,
        # A partner down for longer than this dead-letters (the dead-letter tools' test).
        partner_patience=10.0)


test_settings.__test__ = False  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(f"/{kind}/" in str(item.path) for kind in ("contract", "e2e", "api")):
            item.add_marker(pytest.mark.infra)


@pytest.fixture(scope="session")
def infra() -> Iterator[Settings]:
    with stack.fresh(test_settings(), say=lambda line: print(line, flush=True)) as settings:
        yield settings


@pytest.fixture
async def fresh_schema(infra: Settings) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A pool on a new, migrated schema of its own; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await migrate(infra.pg_dsn, schema, CORE_SQL,
                  ROOT / "services" / "inventory" / "migrations")
    pool = await connect_pool(infra.pg_dsn, schema, 4)
    try:
        yield pool, schema
    finally:
        await pool.close()
        conn = await asyncpg.connect(infra.pg_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault suite's recovery times, when it ran."""
    from tests.fault.conftest import RECOVERIES

    if RECOVERIES:
        terminalreporter.section("recovery per fault (under load)")
        for fault, seconds, bound in RECOVERIES:
            terminalreporter.write_line(f"{fault:<56} {seconds:6.1f} s   (bound {bound:.0f} s)")


# Property tests: no per-example deadline (the machines are shared and noisy; speed is measured
# by the benchmarks), and the database of failing examples stays out of the repository.
hypothesis_settings.register_profile("alur", deadline=None, database=None)
hypothesis_settings.load_profile("alur")
