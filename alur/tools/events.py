"""`alur events`: read the event topics directly, filtered by topic, type, shop, order and time;
with `--follow`, keep printing new events as they arrive (like `tail -f`).

It joins no consumer group and commits nothing, so it never disturbs the services. A time
window is found with the broker's offset-for-time index; shop and order filters read the
window and keep what matches (an order's events are on one partition per topic: its key).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

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


async def read(bootstrap: str, topics: Sequence[str] = TOPICS, where: Filter = Filter(), *,
               follow: bool = False, progress: bool = False,
               stop: Callable[[], bool] = lambda: False) -> AsyncIterator[Seen]:
    """Events of `topics` matching `where`, per partition in offset order; with `follow`, keep
    waiting for new ones until `stop()` says so (or the caller stops iterating)."""
    unknown = set(topics) - set(TOPICS)
    if unknown:
        raise ValueError(f"unknown topics {sorted(unknown)}; the topics are {', '.join(TOPICS)}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topics)
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        start = dict(begin)
        if where.since is not None:
            found = await consumer.offsets_for_times(
                {tp: int(where.since.timestamp() * 1000) for tp in partitions})
            start = {tp: found[tp].offset if found[tp] else end[tp] for tp in partitions}
        elif follow:
            start = dict(end)  # tail: only what arrives from now on
        for tp in partitions:
            consumer.seek(tp, start[tp])
        total = sum(end[tp] - start[tp] for tp in partitions)
        bar = Progress("reading", total) if progress and not follow and total >= 1000 else None
        done = 0
        pending = {tp for tp in partitions if start[tp] < end[tp]}
        while pending or (follow and not stop()):
            batch = await consumer.getmany(*(partitions if follow else pending), timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    if not follow and r.offset >= end[tp]:
                        pending.discard(tp)
                        break
                    done += 1
                    seen = _seen(tp, r.offset, r.key, r.value)
                    if (where.keeps(seen.event) if seen.event is not None
                            else where.keeps_undecodable(r.key)):
                        yield seen
                if not follow and await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if bar:
                bar.show(done)
        if bar:
            bar.finish(done)
    finally:
        await consumer.stop()


def _seen(tp: TopicPartition, offset: int, key: bytes | None, value: bytes) -> Seen:
    try:
        return Seen(tp.topic, tp.partition, offset, decode(value), key)
    except DecodeError as exc:
        return Seen(tp.topic, tp.partition, offset, None, key, str(exc)[:200])

