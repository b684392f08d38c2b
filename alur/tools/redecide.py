"""`alur replay handlers --service S`: run a service's current decisions over the events it
already handled, and report every order where they differ from what was recorded.

The dry run reads the service's event store and writes nothing anywhere. For each event the
service consumed, the order's stream is folded up to that event (including it when it is the
service's own event read back from its own topic, as the runtime does), the current `decide`
runs, and its decisions are compared with the own events recorded as caused by that event:
an event payload must match its type; a command (a charge, a booking, an e-mail) is not
carried out, its recorded outcome must be one the command can produce (`Decider.outcomes`).
Use it after changing a service's domain code, before deploying: an empty report means the
change decides the past the same way. Events that were dead-lettered are not in the store and
are not re-decided (`alur dlq` has them).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from alur.runtime.aggregate import Decider
from alur.runtime.ports import StoredEvent
from schemas import Event, Model, decode
from schemas.envelope import EVENT_FOR_DATA


@dataclass(frozen=True)
class Difference:
    order_id: str
    version: int
    event_type: str
    event_id: str
    recorded: list[str]
    would_decide: list[str]


def _expected(decision: object, decider: Decider[Any]) -> frozenset[str]:
    """The event types a decision may be recorded as."""
    if isinstance(decision, Model) and type(decision) in EVENT_FOR_DATA:
        return frozenset({EVENT_FOR_DATA[type(decision)].model_fields["type"].default})
    return decider.outcomes.get(type(decision), frozenset())


def _describe(decision: object, decider: Decider[Any]) -> str:
    kinds = "|".join(sorted(_expected(decision, decider))) or "?"
    if isinstance(decision, Model):
        return kinds
    return f"{type(decision).__name__} -> {kinds}"


def differences(stream: Sequence[StoredEvent], decider: Decider[Any],
                own_topics: frozenset[str]) -> list[Difference]:
    """Where the decider, run again over the stream, disagrees with the stream."""
    events = [s.event for s in stream]
    found = []
    for i, stored in enumerate(stream):
        event = stored.event
        if event.type not in decider.relevant:
            continue
        echo = stored.origin == "own"
        if echo and event.topic not in own_topics:
            continue  # an own event this service never reads back
        state = decider.fold(events[:i + 1] if echo else events[:i])
        decisions = list(decider.decide(state, event))
        recorded = [s.event.type for s in stream
                    if s.origin == "own" and s.event.causation_id == event.id]
        same = len(recorded) == len(decisions) and all(
            kind in _expected(d, decider) for kind, d in zip(recorded, decisions, strict=True))
        if not same:
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


async def redecide(dsn: str, service: str, *, shop: str | None = None,
                   orders: Sequence[str] = (), since: datetime | None = None,
                   until: datetime | None = None,
                   decider: Decider[Any] | None = None) -> Report:
    """Dry-run the service's decisions over the orders chosen (all by default)."""
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    decider = decider or bootstrap.DECIDER
    own_topics = frozenset(bootstrap.DEFINITION.subscriptions)
    terms, args = ["version = 1"], []
    for value, term in ((shop, "body->>'shop_id' = ${}"),
                        (list(orders) or None, "stream_id = ANY(${}::text[])"),
                        (since, "(body->>'time')::timestamptz >= ${}"),
                        (until, "(body->>'time')::timestamptz < ${}")):
        if value is not None:
            args.append(value)
            terms.append(term.format(len(args)))
    conn = await asyncpg.connect(dsn, server_settings={"search_path": service})
    try:
        ids = [r[0] for r in await conn.fetch(
            f"SELECT stream_id FROM events WHERE {' AND '.join(terms)}", *args)]
        rows = await conn.fetch(
            "SELECT stream_id, version, origin, body FROM events "
            "WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version", ids)
    finally:
        await conn.close()
    streams: dict[str, list[StoredEvent]] = {}
    for r in rows:
        body = r["body"]
        event: Event = decode(body.encode() if isinstance(body, str) else body)
        streams.setdefault(r["stream_id"], []).append(
            StoredEvent(r["version"], r["origin"], event))
    found: list[Difference] = []
    redecided = 0
    for stream in streams.values():
        redecided += sum(1 for s in stream if s.event.type in decider.relevant)
        found += differences(stream, decider, own_topics)
    return Report(service, len(streams), redecided, found)
