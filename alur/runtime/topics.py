"""Topics are created explicitly (the broker runs with auto.create.topics.enable=false)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas import ALL_TOPICS


async def ensure_topics(bootstrap: str, partitions: int, names: Iterable[str] = ALL_TOPICS, *,
                        replication: int = 1, min_insync: int = 1) -> list[str]:
    """Create the missing topics; returns those it created. Existing ones are left as they are.
    With replication 3 and min_insync 2 an acknowledged write is on two brokers at least."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            config = {"min.insync.replicas": str(min_insync),
                      "unclean.leader.election.enable": "false"}
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=replication,
                          topic_configs=config) for n in missing])
            for name, code, *_ in getattr(response, "topic_errors", []) or []:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating topic {name} failed with error code {code}")
        return missing
    finally:
        await admin.close()


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics`, in order, fetching metadata if the consumer has none yet."""
    out = []
    for topic in topics:
        known = consumer.partitions_for_topic(topic)
        if not known:
            await consumer._client.force_metadata_update()
            known = consumer.partitions_for_topic(topic) or set()
        out += [TopicPartition(topic, p) for p in sorted(known)]
    return out
