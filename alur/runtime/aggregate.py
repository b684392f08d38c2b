"""Run one consumed event through a service's pure decider, inside the unit of work.

A service's domain is a `Decider`: `evolve(state, event) -> state` folds its stream, and
`decide(state, event) -> [payload | command]` says what follows. Payloads become events caused by
the consumed one; commands (gateway charge, e-mail) are carried out by the service's `perform`,
which returns more payloads. The consumed event and the new ones are appended to the order's
stream in the service's event store; the new ones go to the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Generic, Literal, TypeVar

from alur.runtime import metrics
from alur.runtime.ports import UnitOfWork
from alur.runtime.processing import Handler, HandlerResult
from schemas import Event, Model, caused_by
from schemas.envelope import EVENT_FOR_DATA

S = TypeVar("S")
Perform = Callable[[UnitOfWork, object, Event], Awaitable[Sequence[Model]]]
# Sees the state before and after a handled event, once its transaction committed (metrics).
Observe = Callable[[S, S, Event], None]
COMPENSATING = frozenset({"StockReleased", "RefundIssued", "OrderCancelled"})
# Label values must stay a small set: a gateway's free-text reason is counted as "other".
DECLINE_REASONS = frozenset({"card_declined", "declined", "insufficient_funds", "gateway_timeout",
                             "card_expired", "fraud_suspected"})


@dataclass(frozen=True)
class Decider(Generic[S]):
    initial: S
    evolve: Callable[[S, Event], S]
    decide: Callable[[S, Event], Sequence[object]]
    relevant: frozenset[str]
    # Command class -> the event types carrying it out may produce. Lets a dry run compare a
    # decision with what was recorded without performing the command (alur replay handlers).
    outcomes: Mapping[type, frozenset[str]] = field(default_factory=dict)

    def fold(self, events: Sequence[Event]) -> S:
        return reduce(self.evolve, events, self.initial)


async def handle_event(
    uow: UnitOfWork, event: Event, decider: Decider[S], *, source: str,
    perform: Perform | None = None, observe: Observe[S] | None = None,
) -> HandlerResult:
    if event.type not in decider.relevant:
        return "ignored"
    history = await uow.load(event.subject)
    own_echo = any(stored.event.id == event.id for stored in history)
    # For an observed event, the state before it; for an own event read back from Kafka (a
    # service that reacts to its own topic), the state already includes it.
    state = decider.fold([stored.event for stored in history])
    new_events: list[Event] = []
    for item in decider.decide(state, event):
        payloads: Sequence[Model] = (
            [item] if isinstance(item, Model) and _is_event_payload(item)
            else await _perform(perform, uow, item, event))
        new_events.extend(caused_by(event, p, source=source) for p in payloads)
    recorded = new_events if own_echo else [event, *new_events]
    origins: list[Literal["own", "observed"]] = ["own"] * len(new_events)
    if not own_echo:
        origins.insert(0, "observed")
    if recorded:
        await uow.append(event.subject, len(history), recorded, origins)
    for e in new_events:
        uow.publish(e)
    if observe is not None:
        after = reduce(decider.evolve, recorded, state)
        metrics.on_commit(lambda: observe(state, after, event))
    if new_events:
        metrics.on_commit(lambda: _count_emitted(source, new_events))
    return "processed"


def handler_for(decider: Decider[S], *, source: str, perform: Perform | None = None,
                observe: Observe[S] | None = None) -> Handler:
    """The runtime's handler for a service whose decisions are `decider`."""

    async def handle(uow: UnitOfWork, event: Event) -> HandlerResult:
        return await handle_event(uow, event, decider, source=source, perform=perform,
                                  observe=observe)

    return handle


_compensations = metrics.Children(metrics.COMPENSATIONS)
_declines = metrics.Children(metrics.PAYMENT_DECLINES)
_deliveries = metrics.Children(metrics.NOTIFICATION_DELIVERIES)


def _count_emitted(source: str, events: Sequence[Event]) -> None:
    """Business counters that follow from what a service decided."""
    service = source.rsplit("/", 1)[-1]
    for e in events:
        if e.type in COMPENSATING:
            _compensations(service, e.type).inc()
        elif e.type == "PaymentFailed":
            reason = e.data.reason
            _declines(reason if reason in DECLINE_REASONS else "other").inc()
        elif e.type == "NotificationSent":  # failed attempts are counted where they fail
            _deliveries(e.data.channel, "sent").inc()


def _is_event_payload(item: object) -> bool:
    return isinstance(item, Model) and type(item) in EVENT_FOR_DATA


async def _perform(perform: Perform | None, uow: UnitOfWork, command: object,
                   event: Event) -> Sequence[Model]:
    if perform is None:
        raise TypeError(f"decider returned command {command!r} but the service performs none")
    return await perform(uow, command, event)
