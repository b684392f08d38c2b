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

from alur.runtime.topics import Ranges, records
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

