"""`alur trace ORDER_ID`: one order's whole cross-service timeline, from every service's event
store, audit log and outbox.

Each event of the order appears once, in time order, with the service that emitted it, what
caused it, where it was published (topic, partition, offset), and every consumer's audit row:
outcome, attempts (retries), error, dead-lettering. A subscriber with no audit row for an event
has not consumed it yet. If the order is not settled, the trace says where it stopped and why
as far as the rows tell.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from alur.settings import SERVICES
from schemas import decode
from services.orders.domain import SETTLED_EVENTS


def subscribers() -> dict[str, list[str]]:
    """Topic -> the services consuming it, from the services' definitions."""
    out: dict[str, list[str]] = {}
    for name in SERVICES:
        definition = importlib.import_module(f"services.{name}.bootstrap").DEFINITION
        for topic in definition.subscriptions:
            out.setdefault(topic, []).append(name)
    return out


@dataclass
class Hop:
    """One audit row: a service consumed ('in') or emitted ('out') the event."""

    service: str
    direction: str
    at: datetime
    outcome: str
    topic: str
    partition: int | None
    offset: int | None
    attempts: int
    error: str | None


@dataclass
class TracedEvent:
    event_id: str
    type: str
    emitted_by: str
    time: datetime
    caused_by: str | None  # the type of the causing event, when it belongs to this order
    causation_id: str | None
    topic: str
    partition: int | None
    offset: int | None
    hops: list[Hop] = field(default_factory=list)
    awaiting: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = [f"{h.service} dead-lettered it after {h.attempts} attempt(s): {h.error}"
                 for h in self.hops if h.outcome == "dead_lettered"]
        found += [f"{h.service} {h.error}" for h in self.hops if h.outcome == "refused"]
        found += [f"{h.service} needed {h.attempts} attempts" for h in self.hops
                  if h.direction == "in" and h.attempts > 1
                  and h.outcome not in ("dead_lettered", "refused")]
        found += [f"not consumed yet by {s}" for s in self.awaiting]
        return found


@dataclass
class Trace:
    order_id: str
    settled: bool
    last_event: str
    stopped: str | None
    events: list[TracedEvent]

    def as_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        body = plain(asdict(self))
        for event, traced in zip(body["events"], self.events, strict=True):
            event["problems"] = traced.problems
        return dict(body)


class UnknownOrder(LookupError):
    """No service has any record of the order."""


async def trace(pool: asyncpg.Pool, order_id: str, *, now: datetime | None = None) -> Trace:
    events: dict[str, TracedEvent] = {}
    hops: list[tuple[str | None, Hop]] = []
    for service in SERVICES:
        for row in await pool.fetch(
                f'SELECT event_id, body FROM "{service}".events '
                "WHERE stream_id = $1 AND origin = 'own' ORDER BY version", order_id):
            event = decode(row["body"].encode() if isinstance(row["body"], str) else row["body"])
            cause = str(event.causation_id) if event.causation_id else None
            events[str(event.id)] = TracedEvent(
                event_id=str(event.id), type=event.type, emitted_by=service, time=event.time,
                caused_by=None, causation_id=cause, topic=event.topic, partition=None,
                offset=None)
        for row in await pool.fetch(
                f'SELECT event_id, partition, "offset" FROM "{service}".outbox '
                "WHERE event_id = ANY($1::uuid[]) AND published_at IS NOT NULL",
                [e.event_id for e in events.values() if e.emitted_by == service]):
            published = events[str(row["event_id"])]
            published.partition, published.offset = row["partition"], row["offset"]
        for row in await pool.fetch(
                f'SELECT at, direction, topic, partition, "offset", event_id, outcome, attempts, '
                f'error FROM "{service}".audit WHERE order_id = $1 ORDER BY id', order_id):
            hops.append((str(row["event_id"]) if row["event_id"] else None, Hop(
                service=service, direction=row["direction"], at=row["at"],
                outcome=row["outcome"], topic=row["topic"], partition=row["partition"],
                offset=row["offset"], attempts=row["attempts"], error=row["error"])))
    if not events and not hops:
        raise UnknownOrder(f"no service has a record of order {order_id}")
    for event_id, hop in hops:
        traced = events.get(event_id or "")
        if traced is None:
            continue
        traced.hops.append(hop)
        if hop.direction == "in" and traced.partition is None:
            traced.partition, traced.offset = hop.partition, hop.offset  # seen by a consumer
    consumers = subscribers()
    for traced in events.values():
        traced.hops.sort(key=lambda h: h.at)
        if traced.causation_id in events:
            traced.caused_by = events[traced.causation_id].type
        seen = {h.service for h in traced.hops if h.direction == "in"}
        traced.awaiting = [s for s in consumers.get(traced.topic, []) if s not in seen]
    ordered = sorted(events.values(), key=lambda e: e.time)
    settled = any(e.type in SETTLED_EVENTS for e in ordered)
    last = ordered[-1] if ordered else None
    stopped = None
    if not settled:
        age = ((now or datetime.now(UTC)) - last.time).total_seconds() if last else 0.0
        trouble = [f"{e.type}: {p}" for e in ordered for p in e.problems]
        stopped = (f"not settled; last event {last.type if last else 'none'} "
                   f"{age:.0f} s ago" + (f" — {'; '.join(trouble)}" if trouble else ""))
    return Trace(order_id, settled, last.type if last else "none", stopped, ordered)


def _where(topic: str, partition: int | None, offset: int | None) -> str:
    return f"{topic}[{partition}]@{offset}" if partition is not None else f"{topic} (unpublished)"


def render(t: Trace) -> str:
    lines = [f"order {t.order_id}: " + ("settled" if t.settled else "NOT SETTLED") +
             f", last event {t.last_event}"]
    for e in t.events:
        cause = f"  <- {e.caused_by}" if e.caused_by else ""
        lines.append(f"{e.time:%H:%M:%S.%f}"[:-3] + f"  {e.type:<18} by {e.emitted_by:<13} "
                     f"{_where(e.topic, e.partition, e.offset)}{cause}")
        for h in e.hops:
            what = "emitted" if h.direction == "out" else h.outcome
            retries = f" after {h.attempts} attempts" if h.attempts > 1 else ""
            mark = "!!" if h.outcome in ("dead_lettered", "refused") or h.attempts > 1 else "  "
            where = f" from {_where(h.topic, h.partition, h.offset)}" if h.direction == "in" else ""
            error = f": {h.error}" if h.error else ""
            lines.append(f"   {mark} {h.at:%H:%M:%S.%f}"[:-3] +
                         f"  {h.service:<13} {what}{retries}{where}{error}")
        for service in e.awaiting:
            lines.append(f"   !! {'':12}  {service:<13} has not consumed it yet")
    if t.stopped:
        lines.append(f"!! {t.stopped}")
    return "\n".join(lines)
