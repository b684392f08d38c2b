"""The fault suite's own stack: a three-node Kafka cluster, PostgreSQL, the simulators and the
five services under their supervisor, on ports and in a state dir of their own (.alur/fault),
so that killing any of them disturbs no other test. The recovery time of each fault is
reported at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alur.infra import stack
from alur.settings import Settings
from tests.conftest import ROOT

RECOVERIES: list[tuple[str, float, float]] = []  # (fault, seconds to recover, bound)


def fault_settings() -> Settings:
    return Settings(
        state_dir=ROOT / ".alur" / "fault", jar_dir=ROOT / ".alur" / "jars", brokers=3,
        kafka_port=29292, kafka_controller_port=29293, pg_port=25632, smtp_port=2536,
        api_port=8281, gateway_port=8291, metrics_port_base=9700, partitions=4,
        session_timeout=6.0, log_level="info", relay_interval=0.2, prometheus_port=9790,
        scrape_interval=5.0, sample_interval=1.0, payments_port=8283, inventory_port=8285,
        shipping_port=8310, kilat_port=8311, nusapost_port=8312,
        reservation_ttl=60.0, bank_transfer_ttl=20.0, app_payment_ttl=20.0, release_after=1.0,
        wedged_after=30.0,
        egress_allow_loopback=True)


fault_settings.__test__ = False  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/fault/" in str(item.path):
            item.add_marker(pytest.mark.fault)


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[Settings]:
    """Everything up once for the fault suite; everything it started stopped by PID after."""
    with stack.fresh(fault_settings(), say=lambda line: print(line, flush=True)) as settings:
        stack.services_up(settings)
        yield settings

