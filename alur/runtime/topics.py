"""Topics are created explicitly (the broker runs with auto.create.topics.enable=false); and
read back record by record, outside any consumer group (`records`): what replays, the
dead-letter tools and `alur events` read."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from alur.progress import Progress
from schemas import ALL_TOPICS
from schemas.catalogue import TOPICS


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


Ranges = Mapping[tuple[str, int], tuple[int, int]]
"""(topic, partition) -> (first offset, end offset): the records first <= offset < end."""


def parse_ranges(specs: Sequence[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """`orders:2:100-200` (partition 2 of orders, offsets 100 to 199), repeatable."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for spec in specs:
        match = re.fullmatch(r"([\w.-]+):(\d+):(\d+)-(\d+)", spec)
        if not match or int(match[3]) > int(match[4]):
            raise ValueError(f"not an offset range: {spec!r} (use TOPIC:PARTITION:FROM-TO, "
                             "e.g. orders:2:100-200)")
        out[(match[1], int(match[2]))] = (int(match[3]), int(match[4]))
    return out


class Record(Protocol):
    """A record as it lies on the topic: where, key and the raw bytes (None: a tombstone).
    `records` hands out aiokafka's own record objects: a copy of each costs as much as a
    fifth of a replay's reading."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


async def records(bootstrap: str, topics: Sequence[str] = TOPICS, *,
                  since: datetime | None = None, follow: bool = False, progress: bool = False,
                  stop: Callable[[], bool] = lambda: False,
                  resume: Mapping[tuple[str, int], int] | None = None,
                  ranges: Ranges | None = None) -> AsyncIterator[list[Record]]:
    """The raw records of `topics` from `since` (or the beginning) to the end offsets seen at
    the start, batch by batch; with `follow`, from the end onwards until `stop()`. `resume`
    gives the offset to go on from for partitions already partly read. `ranges` reads only
    those partitions of `topics`, each from its first offset up to (not including) its last."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # what start() opened before it gave up
        raise
    try:
        partitions = await partitions_of(consumer, topics)
        if ranges is not None:
            known = {(tp.topic, tp.partition) for tp in partitions}
            missing = [k for k in ranges if k[0] in topics and k not in known]
            if missing:
                raise ValueError(f"no such partition: {missing}")
            partitions = [tp for tp in partitions if (tp.topic, tp.partition) in ranges]
        if not partitions:
            return
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ranges is not None:
                first, last = ranges[(tp.topic, tp.partition)]
                begin[tp], end[tp] = max(begin[tp], first), min(end[tp], last)
        start = dict(begin)
        if since is not None:
            found = await consumer.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in partitions})
            start = {tp: max(begin[tp], found[tp].offset if found[tp] else end[tp])
                     for tp in partitions}
        elif follow:
            start = dict(end)  # tail: only what arrives from now on
        for tp in partitions:
            start[tp] = (resume or {}).get((tp.topic, tp.partition), start[tp])
            consumer.seek(tp, start[tp])
        total = sum(max(0, end[tp] - start[tp]) for tp in partitions)
        bar = Progress("reading", total) if progress and not follow and total >= 1000 else None
        done = 0
        pending = {tp for tp in partitions if start[tp] < end[tp]}
        while pending or (follow and not stop()):
            batch = await consumer.getmany(*(partitions if follow else pending), timeout_ms=500,
                                           max_records=5000)
            out: list[Record] = []
            for tp, got in batch.items():
                if not follow and got and got[-1].offset >= end[tp]:
                    got = [r for r in got if r.offset < end[tp]]
                    pending.discard(tp)
                out += got
                if not follow and await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            done += len(out)
            if out:
                yield out
            if bar:
                bar.show(done)
        if bar:
            bar.finish(done)
    finally:
        await consumer.stop()
