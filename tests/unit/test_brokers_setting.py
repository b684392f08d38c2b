"""The Kafka cluster's size: the bootstrap list, replication, and the count that
`alur infra up --brokers 3` records for later commands."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from alur.cli import with_recorded_brokers
from alur.infra import kafka
from alur.settings import Settings


def test_three_nodes_are_listed_and_replicated_with_two_in_sync() -> None:
    three = Settings(brokers=3, kafka_port=29292)
    assert three.kafka_bootstrap == "127.0.0.1:29292,127.0.0.1:29302,127.0.0.1:29312"
    assert (three.replication_factor, three.min_insync_replicas) == (3, 2)
    one = Settings()
    assert one.kafka_bootstrap == "127.0.0.1:19092"
    assert (one.replication_factor, one.min_insync_replicas) == (1, 1)


def test_later_commands_find_the_recorded_count_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALUR_BROKERS", raising=False)
    settings = Settings(state_dir=tmp_path)
    assert with_recorded_brokers(settings).brokers == 1
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "brokers").write_text("3\n")
    assert with_recorded_brokers(settings).brokers == 3
    monkeypatch.setenv("ALUR_BROKERS", "1")
    assert with_recorded_brokers(settings).brokers == 1


def test_a_cluster_id_never_begins_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool would read such an id as an option: one random id in 64 was one."""
    made = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(int=7)])  # "-A...", "AAA..."
    with monkeypatch.context() as patched:
        patched.setattr(kafka.uuid, "uuid4", lambda: next(made))
        cluster_id = kafka.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(uuid.UUID(int=7).bytes).decode().rstrip("=")
    assert all(not kafka.new_cluster_id().startswith("-") for _ in range(2000))
