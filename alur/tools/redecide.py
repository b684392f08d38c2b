"""`alur replay handlers --service S`: run a service's current decisions over the events it
already handled, and report every order where they differ from what was recorded.

The dry run reads the service's event store and writes nothing anywhere. For each event the
service consumed, the order's stream is folded up to that event (including it when it is the
service's own event read back from its own topic, as the runtime does), the current `decide`
runs, and its decisions are compared with the own events recorded as caused by that event:
an event payload must match its type; a command (a charge, a booking, an e-mail) is not
carried out, its recorded outcome must be one the command can produce (`Decider.outcomes`).
Use it after changing a service's domain code, before deploying: an empty report means the
change decides the past the same way.

Events the service consumed but ignored are not in its store; their audit rows say where they
are on the topics, so they are read back from Kafka and decided too, at the point of the
stream where they arrived: a change that starts reacting to a new event type shows up as
"recorded nothing, now decides ...". (Their effect on later decisions is not simulated.)
Events that were dead-lettered are not re-decided (`alur dlq` has them).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from alur.runtime.aggregate import OR_NOTHING, Decider
from alur.runtime.ports import StoredEvent
from alur.runtime.slice import Slice, orders_in
from alur.runtime.topics import records
from schemas import DecodeError, Event, Model, decode
from schemas.envelope import EVENT_FOR_DATA


@dataclass(frozen=True)
class Difference:
    order_id: str
    version: int
    event_type: str
    event_id: str
    recorded: list[str]
    would_decide: list[str]
    ignored_then: bool = False  # consumed but not recorded; `version`: stream length then


def _expected(decision: object, decider: Decider[Any]) -> frozenset[str]:
    """The event types a decision may be recorded as."""
    if isinstance(decision, Model) and type(decision) in EVENT_FOR_DATA:
        return frozenset({EVENT_FOR_DATA[type(decision)].model_fields["type"].default})
    return decider.outcomes.get(type(decision), frozenset())


def _recorded_at_all(decision: object, decider: Decider[Any]) -> bool:
    """False for a command that never records an event."""
    outcomes = decider.outcomes.get(type(decision))
    return outcomes is None or bool(outcomes)


def _matches(recorded: Sequence[str], decisions: Sequence[object],
             decider: Decider[Any], timer_made: frozenset[str] = frozenset()) -> bool:
    """The recorded event types, in order, are what the decisions produce; a decision that
    may record nothing (OR_NOTHING) may have left no event. What is left over must be what a
    timer due after the event would record (a timer's events name the stream's latest event
    as their cause)."""
    left = list(recorded)
    for decision in decisions:
        expected = _expected(decision, decider)
        if left and left[0] in expected:
            left.pop(0)
        elif OR_NOTHING not in expected:
            return False
    return all(kind in timer_made for kind in left)


def _timer_made(decider: Decider[Any], state: Any) -> frozenset[str]:
    """The event types the timers due in `state` would record when they fire."""
    if decider.on_timer is None:
        return frozenset()
    return frozenset(kind for timer in decider.due(state)
                     for decision in decider.on_timer(state, timer)
                     for kind in _expected(decision, decider))


def _decide(decider: Decider[Any], state: Any, event: Event) -> list[object]:
    return [d for d in decider.decide(state, event) if _recorded_at_all(d, decider)]


def _describe(decision: object, decider: Decider[Any]) -> str:
    kinds = "|".join(sorted(k or "nothing" for k in _expected(decision, decider))) or "?"
    if isinstance(decision, Model):
        return kinds
    return f"{type(decision).__name__} -> {kinds}"


def differences(stream: Sequence[StoredEvent], decider: Decider[Any],
                own_topics: frozenset[str],
                ignored: Sequence[tuple[int, Event]] = ()) -> list[Difference]:
    """Where the decider, run again over the stream, disagrees with the stream. `ignored` are
    (number of stream events before it arrived, event) for events consumed but not recorded."""
    events = [s.event for s in stream]
    found = []
    for position, event in ignored:
        if event.type not in decider.relevant:
            continue
        decisions = _decide(decider, decider.fold(events[:position]), event)
        if decisions:
            found.append(Difference(
                order_id=event.subject, version=position, event_type=event.type,
                event_id=str(event.id), recorded=[],
                would_decide=[_describe(d, decider) for d in decisions], ignored_then=True))
    for i, stored in enumerate(stream):
        event = stored.event
        if event.type not in decider.relevant:
            continue
        echo = stored.origin == "own"
        if echo and event.topic not in own_topics:
            continue  # an own event this service never reads back
        state = decider.fold(events[:i + 1] if echo else events[:i])
        decisions = _decide(decider, state, event)
        recorded = [s.event.type for s in stream
                    if s.origin == "own" and s.event.causation_id == event.id]
        timer_made = _timer_made(decider, state if echo else decider.evolve(state, event))
        if not _matches(recorded, decisions, decider, timer_made):
            found.append(Difference(
                order_id=event.subject, version=stored.version, event_type=event.type,
                event_id=str(event.id), recorded=recorded,
                would_decide=[_describe(d, decider) for d in decisions]))
    return found


@dataclass
class Report:
    service: str
    orders: int
    events_redecided: int
    differences: list[Difference]


async def fetch_events(bootstrap: str, where: Sequence[tuple[str, int, int]]) -> list[Event | None]:
    """The events at these (topic, partition, offset) places; None where one is gone or is not
    an event. Reads each partition once, from its first to its last wanted offset."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in where:
        first, end = spans.get((topic, partition), (offset, offset + 1))
        spans[(topic, partition)] = (min(first, offset), max(end, offset + 1))
    wanted = set(where)
    found: dict[tuple[str, int, int], Event] = {}
    if spans:
        async for batch in records(bootstrap, sorted({t for t, _ in spans}), ranges=spans):
            for r in batch:
                if (r.topic, r.partition, r.offset) in wanted:
                    with contextlib.suppress(DecodeError):
                        found[(r.topic, r.partition, r.offset)] = decode(r.value)
    return [found.get(w) for w in where]


async def redecide(dsn: str, service: str, part: Slice | None = None, *,
                   bootstrap_servers: str, decider: Decider[Any] | None = None) -> Report:
    """Dry-run the service's decisions over the orders of the slice (all by default)."""
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    decider = decider or bootstrap.DECIDER
    own_topics = frozenset(bootstrap.DEFINITION.subscriptions)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": service})
    try:
        ids = await orders_in(conn, part or Slice(), dated_by="version = 1")
        rows = await conn.fetch(
            "SELECT stream_id, version, origin, body FROM events "
            "WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version", ids)
        # Where each ignored event arrived: after the stream events recorded before it.
        audited = await conn.fetch(
            "SELECT a.order_id, a.topic, a.partition, a.\"offset\", "
            " (SELECT count(*) FROM events e WHERE e.stream_id = a.order_id "
            "   AND e.recorded_at <= a.at) AS position "
            "FROM audit a WHERE a.direction = 'in' AND a.outcome = 'ignored' "
            "AND a.order_id = ANY($1::text[]) ORDER BY a.id", ids)
    finally:
        await conn.close()
    ignored: dict[str, list[tuple[int, Event]]] = {}
    for (order_id, position), read_back in zip(
            [(r["order_id"], r["position"]) for r in audited],
            await fetch_events(bootstrap_servers, [(r["topic"], r["partition"], r["offset"])
                                                   for r in audited]), strict=True):
        if read_back is not None:
            ignored.setdefault(order_id, []).append((int(position), read_back))
    streams: dict[str, list[StoredEvent]] = {}
    for r in rows:
        body = r["body"]
        event: Event = decode(body.encode() if isinstance(body, str) else body)
        streams.setdefault(r["stream_id"], []).append(
            StoredEvent(r["version"], r["origin"], event))
    found: list[Difference] = []
    redecided = 0
    for order_id, stream in streams.items():
        late = ignored.get(order_id, [])
        redecided += sum(1 for s in stream if s.event.type in decider.relevant)
        redecided += sum(1 for _, e in late if e.type in decider.relevant)
        found += differences(stream, decider, own_topics, late)
    return Report(service, len(streams), redecided, found)
