"""`alur events`: read the event topics directly, filtered by topic, type, shop, order and time;
with `--follow`, keep printing new events as they arrive (like `tail -f`).

It joins no consumer group and commits nothing, so it never disturbs the services. A time
window is found with the broker's offset-for-time index; shop and order filters read the
window and keep what matches (an order's events are on one partition per topic: its key).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aiokafka import AIOKafkaConsumer

from alur.progress import Progress
from alur.runtime.topics import partitions_of
from schemas import DecodeError, Event, decode
from schemas.catalogue import TOPICS

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """`10m`, `2h`, `1d` (that long ago) or an ISO 8601 time (UTC if no zone is given)."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = relative.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use e.g. 10m, 2h, 1d or "
                         "2026-11-22T10:00:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filter:
    types: frozenset[str] = frozenset()
    shop: str | None = None
    order: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps_undecodable(self, key: bytes | None) -> bool:
        """Bytes that are no event are shown unless a filter needs what only an event has."""
        return (not self.types and self.shop is None and self.since is None
                and self.until is None
                and (self.order is None or key == self.order.encode()))

    def keeps(self, event: Event) -> bool:
        return ((not self.types or event.type in self.types)
                and (self.shop is None or event.shop_id == self.shop)
                and (self.order is None or event.subject == self.order)
                and (self.since is None or event.time >= self.since)
                and (self.until is None or event.time < self.until))


@dataclass(frozen=True)
class Seen:
    topic: str
    partition: int
    offset: int
    event: Event | None     # None: the bytes are not an event (see `error`)
    key: bytes | None = None
    error: str | None = None

    def line(self) -> str:
        where = f"{self.topic}[{self.partition}]@{self.offset}"
        if self.event is None:
            return f"{'':23}  {where:<22} undecodable: {self.error}"
        e = self.event
        return (f"{e.time:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {where:<22} {e.type:<18} "
                f"{e.subject}  shop={e.shop_id} channel={e.channel}")

    def as_json(self) -> str:
        body = {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        if self.event is None:
            body["error"] = self.error
        else:
            body["event"] = json.loads(self.event.model_dump_json())
        return json.dumps(body)


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


async def read(bootstrap: str, topics: Sequence[str] = TOPICS, where: Filter = Filter(), *,
               follow: bool = False, progress: bool = False,
               stop: Callable[[], bool] = lambda: False,
               ranges: Ranges | None = None) -> AsyncIterator[Seen]:
    """Events of `topics` matching `where`, per partition in offset order; with `follow`, keep
    waiting for new ones until `stop()` says so (or the caller stops iterating)."""
    unknown = set(topics) - set(TOPICS)
    if unknown:
        raise ValueError(f"unknown topics {sorted(unknown)}; the topics are {', '.join(TOPICS)}")
    async for batch in records(bootstrap, topics, since=where.since, follow=follow,
                               progress=progress, stop=stop, ranges=ranges):
        for r in batch:
            seen = _seen(r.topic, r.partition, r.offset, r.key, r.value)
            if (where.keeps(seen.event) if seen.event is not None
                    else where.keeps_undecodable(r.key)):
                yield seen


def _seen(topic: str, partition: int, offset: int, key: bytes | None,
          value: bytes | None) -> Seen:
    try:
        return Seen(topic, partition, offset, decode(value), key)
    except DecodeError as exc:
        return Seen(topic, partition, offset, None, key, str(exc)[:200])

