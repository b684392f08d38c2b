"""Topics are created explicitly (the broker runs with auto.create.topics.enable=false)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas import ALL_TOPICS


async def ensure_topics(bootstrap: str, partitions: int,
                        names: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create the missing topics; returns those it created. Existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing])
            for name, code, *_ in getattr(response, "topic_errors", []) or []:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating topic {name} failed with error code {code}")
        return missing
    finally:
        await admin.close()
