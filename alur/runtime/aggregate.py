"""Run one consumed event through a service's pure decider, inside the unit of work.

A service's domain is a `Decider`: `evolve(state, event) -> state` folds its stream, and
`decide(state, event) -> [payload | command]` says what follows. Payloads become events caused by
the consumed one; commands (gateway charge, e-mail) are carried out by the service's `perform`,
which returns more payloads. The consumed event and the new ones are appended to the order's
stream in the service's event store; the new ones go to the outbox.

Timeouts are events too. `deadlines(state)` names the stream's deadlines by kind; the unit of
work keeps the timers table in step with it, in the same transaction. `fire_due_timers` takes
due timers (each replica skips those another holds), asks `on_timer(state, kind)` what follows,
and records it like a decision: the timer's row goes in the same transaction, so it fires once.

Nothing from outside is taken on trust. An order's stream begins with one of the decider's
`opens` (OrderPlaced). An event about an order the service never saw is refused, unless it
is one that may overtake the opener from another topic (`precede`): that one is recorded and
held, with no decision and no timer, until the opener arrives. An event the domain's `refuse`
says is impossible in the order's state (a Delivered for an order never released to
shipping) is refused too. A refused event is recorded nowhere but in the audit log (outcome
`refused`) and on the dead-letter topic, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, reduce
from typing import Any, Generic, Literal, TypeVar, cast

from alur.runtime import metrics
from alur.runtime.errors import ConcurrencyConflict, InvalidEvent, StreamBusy
from alur.runtime.ports import StoredEvent, Timer, UnitOfWork
from alur.runtime.processing import Failed, Handler, HandlerResult, Unplanned, ends_transaction
from schemas import Event, Model, caused_by
from schemas.envelope import EVENT_FOR_DATA, random_uuid

S = TypeVar("S")
log = logging.getLogger("alur.timers")
Perform = Callable[[UnitOfWork, object, Event], Awaitable[Sequence[Model]]]
# Sees the state before and after a handled event, once its transaction committed (metrics).
Observe = Callable[[S, S, Event], None]
# Counts what a service decided, once the transaction that recorded it committed: the
# service's business metrics (compensations, declines, deliveries), in its own words.
Count = Callable[[Sequence[Event]], None]


# Streams whose latest fold a decider keeps (Decider.fold_stored): the orders in flight.
FOLDS_KEPT = 4096
# In Decider.outcomes: carrying the command out may also record no event at all.
OR_NOTHING = ""


@dataclass(frozen=True)
class Decider(Generic[S]):
    initial: S
    evolve: Callable[[S, Event], S]
    decide: Callable[[S, Event], Sequence[object]]
    relevant: frozenset[str]
    # Command class -> the event types carrying it out may produce (with OR_NOTHING when it
    # may record none). Lets a dry run compare a decision with what was recorded without
    # performing the command (alur replay handlers).
    outcomes: Mapping[type, frozenset[str]] = field(default_factory=dict)
    # The stream's deadlines by kind, from its state, and what follows when one passes.
    deadlines: Callable[[S], Mapping[str, datetime]] | None = None
    on_timer: Callable[[S, str], Sequence[object]] | None = None
    # Event types that begin an order's stream here; empty: any event may (no check).
    opens: frozenset[str] = frozenset()
    # Event types that may arrive before the opener (they travel on another topic): held.
    precede: frozenset[str] = frozenset()
    # Why an event is impossible in the state (then it is refused), or None.
    refuse: Callable[[S, Event], str | None] | None = None
    # What the service counts of the events it decided (`compensations` and its own), if any.
    count: Count | None = None

    # stream (its first event's id) -> (the ids of the events folded, the state): the
    # process's latest fold of each stream it handled, least recently used out first.
    _folds: OrderedDict[object, tuple[tuple[object, ...], S]] = field(
        default_factory=OrderedDict, compare=False, repr=False)

    def fold(self, events: Sequence[Event]) -> S:
        return reduce(self.evolve, events, self.initial)

    def fold_stored(self, history: Sequence[StoredEvent]) -> S:
        """The state of a stream's stored events. A stream is folded once per process, not
        once per event handled: the state of the events folded last time is carried forward
        when they begin this history, event for event (a history that differs, say a plan
        that was never recorded, is folded afresh). States are immutable, so a kept one is
        never changed by a later evolve."""
        if not history:
            return self.initial
        ids = tuple(stored.event.id for stored in history)
        state, start = self.initial, 0
        kept = self._folds.get(ids[0])
        if kept is not None and ids[:len(kept[0])] == kept[0]:
            state, start = kept[1], len(kept[0])
        for stored in history[start:]:
            state = self.evolve(state, stored.event)
        self._folds[ids[0]] = (ids, state)
        self._folds.move_to_end(ids[0])
        if len(self._folds) > FOLDS_KEPT:
            self._folds.popitem(last=False)
        return state

    def due(self, state: S) -> Mapping[str, datetime]:
        return self.deadlines(state) if self.deadlines is not None else {}


async def handle_event(
    uow: UnitOfWork, event: Event, decider: Decider[S], *, source: str,
    perform: Perform | None = None, observe: Observe[S] | None = None,
) -> HandlerResult:
    if event.type not in decider.relevant:
        return "ignored"
    history = await uow.load(event.subject)

    async def call(cause: Event, command: object) -> Sequence[Model]:
        return await _perform(perform, uow, command, cause)

    planned = await _plan_one(decider, history, event, source, call)
    return await _record_plan(uow, decider, event, planned, observe=observe)


async def _record_plan(uow: UnitOfWork, decider: Decider[S], event: Event, planned: Plan, *,
                       observe: Observe[S] | None) -> HandlerResult:
    """Record what handling `event` came to (`_plan_one`), or raise why it is refused."""
    if planned.refused is not None:
        raise planned.refused
    if planned.outcome == "held":
        # Overtook its order's opener on another topic: kept, and decided upon with it.
        await uow.append(event.subject, planned.version, planned.recorded, planned.origins)
    elif planned.outcome == "processed":
        await _record(uow, decider, event.subject, planned.version, cast(S, planned.state),
                      planned.recorded, planned.origins, planned.new_events,
                      observe=observe, observed=event)
    return planned.outcome


def _admit(decider: Decider[S], history: Sequence[StoredEvent],
           event: Event) -> tuple[S, bool] | None:
    """The state to decide `event` on, and whether it is the service's own event read back;
    None when it is to be held (it overtook its order's opener). Raises InvalidEvent when the
    service refuses it (an unknown order, a second opener, an impossible event)."""
    own_echo = any(stored.event.id == event.id for stored in history)
    if decider.opens and not own_echo:
        opened = any(stored.event.type in decider.opens for stored in history)
        if event.type in decider.opens and opened:
            raise InvalidEvent(f"order {event.subject} has begun already; a second "
                               f"{event.type} is impossible")
        if not opened and event.type not in decider.opens:
            if event.type not in decider.precede:
                raise InvalidEvent(f"unknown order {event.subject}: no "
                                   f"{' or '.join(sorted(decider.opens))} for it")
            return None
    # For an observed event, the state before it; for an own event read back from Kafka (a
    # service that reacts to its own topic), the state already includes it.
    state = decider.fold_stored(history)
    if decider.refuse is not None and not own_echo:
        reason = decider.refuse(state, event)
        if reason is not None:
            raise InvalidEvent(f"{event.type} is impossible for order {event.subject}: {reason}")
    return state, own_echo


async def fire_due_timers(
    uow: UnitOfWork, decider: Decider[S], now: datetime, *, source: str, limit: int = 100,
    perform: Perform | None = None, observe: Observe[S] | None = None,
    outside: list[Outside] | None = None,
) -> list[Timer]:
    """Fire the timers due by `now` that no other unit of work holds; returns those fired.
    Each fires in a savepoint: one whose command fails (a partner down) stays due for the next
    round, and the others fire. With `outside`, a timer whose commands call a partner is not
    fired here: its stream is claimed and the job added to `outside`, for `call_outside`
    once this unit of work committed."""
    timers = await uow.due_timers(now, limit)
    await uow.preload([t.stream_id for t in timers])
    fired: list[Timer] = []
    for timer in timers:
        try:
            with metrics.collecting() as pending:
                async with uow.savepoint():
                    if await _fire(uow, decider, timer, now, source=source, perform=perform,
                                   observe=observe, outside=outside):
                        fired.append(timer)
        except Exception as exc:
            if ends_transaction(exc):
                raise
            level = logging.INFO if isinstance(exc, StreamBusy) else logging.WARNING if \
                getattr(exc, "retriable", False) else logging.ERROR
            log.log(level, "timer %s of %s failed; it stays due: %s: %s", timer.kind,
                    timer.stream_id, type(exc).__name__, exc)
            continue
        for callback in pending:
            metrics.on_commit(callback)
    return fired


async def _fire(uow: UnitOfWork, decider: Decider[S], timer: Timer, now: datetime, *,
                source: str, perform: Perform | None, observe: Observe[S] | None,
                outside: list[Outside] | None = None) -> bool:
    history = await uow.load(timer.stream_id)
    state = decider.fold_stored(history)
    deadline = decider.due(state).get(timer.kind)
    if deadline is None or deadline > now or not history or decider.on_timer is None:
        # Moved or gone since it was written (the table lags the state only by a crash).
        uow.schedule(timer.stream_id, timer.kind, deadline)
        return False
    items = decider.on_timer(state, timer.kind)
    if outside is not None and _has_commands(items):
        outside.append(await _claim_for(uow, timer.stream_id, history, state, items,
                                        timer=timer, deadline=deadline))
        return False
    after = await _act_on(uow, decider, timer.stream_id, history, state, items, source=source,
                          perform=perform, observe=observe)
    _settle_timer(uow, decider, timer, after, deadline)
    return True


def _settle_timer(uow: UnitOfWork, decider: Decider[S], timer: Timer, after: S,
                  deadline: datetime) -> None:
    if decider.due(after).get(timer.kind) == deadline:
        # on_timer must settle its deadline; a timer that would fire forever is dropped.
        log.error("timer %s of %s left its deadline in place; dropped", timer.kind,
                  timer.stream_id)
        uow.schedule(timer.stream_id, timer.kind, None)


# A claim taken for a timer's or a callback's partner call lapses after this many seconds
# (a crash between the call and its record); the call itself is bounded by its client.
OUTSIDE_CLAIM_TTL = 120.0


@dataclass
class Outside:
    """A decision about a stream whose commands call a partner, to be carried out with no
    transaction open and recorded afterwards if the stream has not moved (alur.runtime.
    processing explains the claim that keeps the service's other writers off it)."""

    stream_id: str
    version: int
    last_id: object
    state: object
    items: Sequence[object]
    cause: Event
    timer: Timer | None = None
    deadline: datetime | None = None
    remember: uuid.UUID | None = None  # an inbox id recorded with the outcome (a callback's)


def _has_commands(items: Sequence[object]) -> bool:
    return any(not _is_event_payload(item) for item in items)


async def _claim_for(uow: UnitOfWork, stream_id: str, history: Sequence[StoredEvent],
                     state: object, items: Sequence[object], **job: Any) -> Outside:  # noqa: ANN401
    await uow.claim([stream_id], random_uuid(), OUTSIDE_CLAIM_TTL)
    return Outside(stream_id, len(history), history[-1].event.id, state, items,
                   history[-1].event, **job)


async def call_outside(new_uow: Callable[[], UnitOfWork], decider: Decider[S], job: Outside, *,
                       source: str, perform: Perform | None,
                       observe: Observe[S] | None = None) -> S | None:
    """Carry out the job's partner calls with no transaction open, then record their outcome
    in a transaction of its own, releasing the stream's claim. Returns the state after, or
    None when there is nothing to record (the callback was recorded meanwhile). Raises
    ConcurrencyConflict when the stream moved meanwhile (the caller tries again later: a
    timer stays due, a callback gets 503), and the call's error when it failed; the claim is
    released either way."""
    try:
        new_events = await _carry_out(job.items, cast(UnitOfWork, None), job.cause, source,
                                      perform)
    except BaseException:
        await _release(new_uow, job.stream_id)
        raise
    moved = False
    after: S | None = None
    with metrics.collecting() as pending:
        async with new_uow() as uow:
            uow.claimant = True
            uow.release_claims([job.stream_id])
            history = await uow.load(job.stream_id)
            if len(history) != job.version or history[-1].event.id != job.last_id:
                # Not remembered: the caller is told to try again (a callback answers 503),
                # and its next try must be decided afresh, not taken for one recorded.
                moved = True
            elif job.remember is not None and not await uow.remember(job.remember):
                return None  # recorded meanwhile, by a copy of the same callback
            else:
                after = cast(S, job.state)
                if new_events:
                    after = await _record(uow, decider, job.stream_id, job.version, after,
                                          new_events, ["own"] * len(new_events), new_events,
                                          observe=observe, observed=new_events[0])
                if job.timer is not None and job.deadline is not None:
                    _settle_timer(uow, decider, job.timer, after, job.deadline)
    if moved:
        raise ConcurrencyConflict(f"order {job.stream_id} moved on while its partner call ran")
    for callback in pending:
        metrics.on_commit(callback)
    return after


async def _release(new_uow: Callable[[], UnitOfWork], stream_id: str) -> None:
    """Let go of a claim whose call failed (best effort: it lapses anyway)."""
    try:
        async with new_uow() as uow:
            uow.claimant = True
            uow.release_claims([stream_id])
    except Exception as exc:
        log.warning("could not release the claim on %s; it lapses: %s", stream_id, exc)


async def act(
    uow: UnitOfWork, decider: Decider[S], stream_id: str,
    choose: Callable[[S], Sequence[object]], *, source: str, perform: Perform | None = None,
    observe: Observe[S] | None = None,
) -> S:
    """Record what the service decides on its own about an existing stream (a timer passed, a
    gateway called back): `choose(state)` gives payloads or commands, caused by the stream's
    latest event. Returns the state after them."""
    history = await uow.load(stream_id)
    if not history:
        raise LookupError(f"no stream {stream_id}")
    state = decider.fold_stored(history)
    return await _act_on(uow, decider, stream_id, history, state, choose(state),
                         source=source, perform=perform, observe=observe)


async def act_or_claim(
    uow: UnitOfWork, decider: Decider[S], stream_id: str,
    choose: Callable[[S], Sequence[object]], *, source: str, observe: Observe[S] | None = None,
    remember: uuid.UUID | None = None,
) -> S | Outside:
    """`act`, for a writer that must not call a partner inside its transaction (a gateway's
    callback): when `choose` gives only payloads they are recorded here (with `remember` in
    the inbox) and the state after is returned; when it gives commands, the stream is claimed
    and the job returned, for `call_outside` once this unit of work committed."""
    history = await uow.load(stream_id)
    if not history:
        raise LookupError(f"no stream {stream_id}")
    state = decider.fold_stored(history)
    items = choose(state)
    if _has_commands(items):
        return await _claim_for(uow, stream_id, history, state, items, remember=remember)
    if remember is not None:
        await uow.remember(remember)
    return await _act_on(uow, decider, stream_id, history, state, items, source=source,
                         perform=None, observe=observe)


async def _act_on(
    uow: UnitOfWork, decider: Decider[S], stream_id: str, history: Sequence[StoredEvent],
    state: S, items: Sequence[object], *, source: str, perform: Perform | None,
    observe: Observe[S] | None,
) -> S:
    """`act` on a stream already loaded and folded."""
    new_events = await _carry_out(items, uow, history[-1].event, source, perform)
    if not new_events:
        return state
    return await _record(uow, decider, stream_id, len(history), state, new_events,
                         ["own"] * len(new_events), new_events,
                         observe=observe, observed=new_events[0])


async def _record(
    uow: UnitOfWork, decider: Decider[S], stream_id: str, version: int, state: S,
    recorded: list[Event], origins: list[Literal["own", "observed"]], new_events: list[Event],
    *, observe: Observe[S] | None, observed: Event,
) -> S:
    """Append `recorded` after `version`, publish the new events, keep the stream's timers in
    step, and count it all once the transaction commits. Returns the state after."""
    if recorded:
        await uow.append(stream_id, version, recorded, origins)
    for e in new_events:
        uow.publish(e)
    after = reduce(decider.evolve, recorded, state)
    keep_timers(uow, stream_id, decider.due(state), decider.due(after))
    if observe is not None:
        metrics.on_commit(lambda: observe(state, after, observed))
    if new_events and decider.count is not None:
        count = decider.count
        metrics.on_commit(lambda: count(new_events))
    return after


def keep_timers(uow: UnitOfWork, stream_id: str, before: Mapping[str, datetime],
                after: Mapping[str, datetime]) -> None:
    """Schedule the deadlines that changed between two states of the stream."""
    for kind in before.keys() | after.keys():
        if before.get(kind) != after.get(kind):
            uow.schedule(stream_id, kind, after.get(kind))


async def _carry_out(items: Sequence[object], uow: UnitOfWork, cause: Event, source: str,
                     perform: Perform | None) -> list[Event]:
    """The decided payloads as events caused by `cause`; commands performed first."""
    new_events: list[Event] = []
    for item in items:
        payloads: Sequence[Model] = (
            [item] if isinstance(item, Model) and _is_event_payload(item)
            else await _perform(perform, uow, item, cause))
        new_events.extend(caused_by(cause, p, source=source) for p in payloads)
    return new_events


def handler_for(decider: Decider[S], *, source: str, perform: Perform | None = None,
                observe: Observe[S] | None = None, concurrent: bool = False,
                claims: bool = True, stragglers: bool = True,
                prepare: Prepare | None = None) -> Handler:
    """The runtime's handler for a service whose decisions are `decider`.

    With `concurrent` (a service whose commands are calls to a partner that never touch the
    unit of work: a gateway, a carrier, SMTP), the handler also plans: given a stream as a
    short transaction read it, `plan` handles the batch's new events of that order in turn
    with no transaction open, carrying out their commands, and returns what each event
    records. The batch plans its orders side by side, so a batch of 50 charges waits for one
    round trip to the gateway, not 50. The batch's transaction then only checks each stream
    is where the plan found it and records the plan (`apply`): no transaction or lock is held
    across a partner call (alur.runtime.processing). `claims`: other writers of the
    service's streams exist (timers, partner callbacks), so the streams are claimed while
    their calls run. `stragglers`: a batch may commit without an order whose call is slow
    (alur.runtime.processing). `prepare(uow, events)` is given a batch's new events the
    service acts on before they are handled one by one, to read what they need at once
    (the inventory's stock rows)."""

    async def handle(uow: UnitOfWork, event: Event) -> HandlerResult:
        return await handle_event(uow, event, decider, source=source,
                                  perform=_unplanned if concurrent else perform,
                                  observe=observe)

    slots = asyncio.Semaphore(PLAN_CONCURRENCY)  # partner calls in flight, for all batches

    async def plan(history: Sequence[StoredEvent], events: Sequence[Event],
                   attempt: Attempt) -> dict[object, Plan]:
        """Plan one stream's new events in turn, on its `history` as read."""
        assert perform is not None

        tries: dict[object, int] = {}

        async def call(event: Event, command: object) -> Sequence[Model]:
            async with slots:
                # A partner-only perform never touches the unit of work: there is none open.
                result, n = await attempt(
                    lambda: perform(cast(UnitOfWork, None), command, event))
            tries[event.id] = max(n, tries.get(event.id, 1))
            return result

        plans = await _plan_stream(decider, history, events, source, call)
        for event_id, planned in plans.items():
            planned.attempts = tries.get(event_id, 1)
        return plans

    async def calls(history: Sequence[StoredEvent], events: Sequence[Event]) -> bool:
        """Whether planning these events of one stream calls a partner (decide is pure)."""

        async def call(event: Event, command: object) -> Sequence[Model]:
            raise _Calls

        try:
            await _plan_stream(decider, history, events, source, call)
        except _Calls:
            return True
        return False

    async def apply(uow: UnitOfWork, event: Event, planned: Plan) -> HandlerResult:
        history = await uow.load(event.subject)
        last = history[-1].event.id if history else None
        if len(history) != planned.version or last != planned.last_id:
            raise Unplanned(f"order {event.subject} moved on while its partner calls ran")
        return await _record_plan(uow, decider, event, planned, observe=observe)

    if concurrent and perform is not None:
        handle.plan = plan  # type: ignore[attr-defined]
        handle.calls = calls  # type: ignore[attr-defined]
        handle.apply = apply  # type: ignore[attr-defined]
        handle.claims = claims  # type: ignore[attr-defined]
        handle.stragglers = stragglers  # type: ignore[attr-defined]
    if prepare is not None:
        handle.prepare = prepare  # type: ignore[attr-defined]
    handle.relevant = decider.relevant  # type: ignore[attr-defined]
    return handle


# Reads what a batch's new events will need, in one go (handler_for's `prepare`).
Prepare = Callable[[UnitOfWork, Sequence[Event]], Awaitable[None]]
# Partner calls a batch's plan has in flight at once.
PLAN_CONCURRENCY = 64
# Carries out one partner call with the runtime's retries: its result and the tries it took;
# raises Failed when they run out.
Attempt = Callable[[Callable[[], Awaitable[Sequence[Model]]]],
                   Awaitable[tuple[Sequence[Model], int]]]


@dataclass
class Plan:
    """What handling one event records, worked out on the stream at `version` (last event
    `last_id`) with its partner calls made; or why it is refused, or the call that failed."""

    outcome: HandlerResult
    version: int
    last_id: object
    recorded: list[Event] = field(default_factory=list)
    origins: list[Literal["own", "observed"]] = field(default_factory=list)
    new_events: list[Event] = field(default_factory=list)
    state: object = None
    refused: InvalidEvent | None = None
    failed: Failed | None = None
    attempts: int = 1  # of its most tried partner call


class _Calls(Exception):
    """Planning reached a command: the stream has a partner call to make."""


async def _unplanned(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
    raise Unplanned(f"{event.type} {event.subject} needs a partner call it has not planned")


Call = Callable[[Event, object], Awaitable[Sequence[Model]]]


async def _plan_stream(decider: Decider[S], history: Sequence[StoredEvent],
                       events: Sequence[Event], source: str, call: Call) -> dict[object, Plan]:
    """`_plan_one` for one stream's events in turn, each on the stream as the ones before it
    left it."""
    plans: dict[object, Plan] = {}
    stream = list(history)
    for event in events:
        if event.type not in decider.relevant:
            continue
        plans[event.id] = planned = await _plan_one(decider, stream, event, source, call)
        stream.extend(StoredEvent(len(stream) + 1 + i, origin, e) for i, (e, origin)
                      in enumerate(zip(planned.recorded, planned.origins, strict=True)))
    return plans


async def _plan_one(decider: Decider[S], history: Sequence[StoredEvent], event: Event,
                    source: str, call: Call) -> Plan:
    """What handling `event` on `history` records, its commands carried out by `call` (within
    the unit of work for handle_event, with none open for a plan); or why it is refused, or the
    partner call that failed."""
    version = len(history)
    last = history[-1].event.id if history else None
    try:
        admitted = _admit(decider, history, event)
    except InvalidEvent as exc:
        return Plan("processed", version, last, refused=exc)
    if admitted is None:
        return Plan("held", version, last, [event], ["observed"])
    state, own_echo = admitted
    new_events: list[Event] = []
    try:
        for item in decider.decide(state, event):
            payloads = [item] if _is_event_payload(item) else await call(event, item)
            new_events.extend(caused_by(event, p, source=source)  # type: ignore[arg-type]
                              for p in payloads)
    except Failed as failed:
        return Plan("processed", version, last, failed=failed)
    recorded = new_events if own_echo else [event, *new_events]
    origins: list[Literal["own", "observed"]] = ["own"] * len(new_events)
    if not own_echo:
        origins.insert(0, "observed")
    return Plan("processed", version, last, recorded, origins, new_events, state)


FireTimers = Callable[[UnitOfWork, datetime], Awaitable[list[Timer]]]


def timers_for(decider: Decider[S], *, source: str, perform: Perform | None = None,
               observe: Observe[S] | None = None, limit: int = 200,
               outside: bool = False) -> FireTimers:
    """The runtime's timer job for a service whose deadlines are `decider`'s. With `outside`
    (commands that only call a partner), a timer whose commands call one is fired by
    `fire.finish(new_uow)` after the round's transaction: the call is made with no
    transaction open (see `call_outside`)."""
    jobs: list[Outside] = []

    async def fire(uow: UnitOfWork, now: datetime) -> list[Timer]:
        jobs.clear()  # those of a round that did not commit were never claimed
        return await fire_due_timers(uow, decider, now, source=source, limit=limit,
                                     perform=perform, observe=observe,
                                     outside=jobs if outside else None)

    async def finish(new_uow: Callable[[], UnitOfWork]) -> list[Timer]:
        """Fire the round's timers that call a partner; returns those fired."""
        taken = list(jobs)
        jobs.clear()

        async def one(job: Outside) -> Timer | None:
            try:
                await call_outside(new_uow, decider, job, source=source, perform=perform,
                                   observe=observe)
            except Exception as exc:
                assert job.timer is not None
                log.log(logging.WARNING if getattr(exc, "retriable", False) else logging.ERROR,
                        "timer %s of %s failed; it stays due: %s: %s", job.timer.kind,
                        job.stream_id, type(exc).__name__, exc)
                return None
            return job.timer

        done = await asyncio.gather(*(one(job) for job in taken))
        return [timer for timer in done if timer is not None]

    if outside:
        fire.finish = finish  # type: ignore[attr-defined]
    return fire


# A service's handler of one command type: carries the command out (a charge, a booking, a
# reservation) and returns the payloads that record what came of it.
CommandHandler = Callable[[UnitOfWork, Any, Event], Awaitable[Sequence[Model]]]
Commands = Mapping[type, CommandHandler]


def perform_commands(commands: Commands) -> Perform:
    """One `perform` from a {Command class: handler} table."""

    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        handler = commands.get(type(command))
        if handler is None:
            raise TypeError(f"no handler for command {command!r}")
        return await handler(uow, command, event)

    return perform


@dataclass(frozen=True)
class Wiring(Generic[S]):
    """What a service declares about its decisions. The runtime derives the rest from it: the
    consumer's handler, the timer job, and what partner callbacks and webhooks decide with.

    `commands` has a handler for exactly the command types the decider's `outcomes` name: a
    command the decider may return and nothing carries out (or a handler for a command it
    never returns) is refused when the service is wired, not when an order first needs it."""

    decider: Decider[S]
    source: str  # the producer named in each event it records, e.g. "alur/payments"
    commands: Commands = field(default_factory=dict)
    observe: Observe[S] | None = None
    prepare: Prepare | None = None
    # Its commands only call a partner (a gateway, a carrier, SMTP) and never touch the unit
    # of work: they are carried out with no transaction open (handler_for's `concurrent`,
    # timers_for's `outside`).
    partner_calls: bool = False
    # Only its consumer writes its streams (no timers, no callbacks): no stream claims, and a
    # batch waits for each of its orders (no stragglers).
    sole_writer: bool = False

    def __post_init__(self) -> None:
        missing = set(self.decider.outcomes) - set(self.commands)
        extra = set(self.commands) - set(self.decider.outcomes)
        if missing or extra:
            raise TypeError(f"{self.source}: commands without a handler: "
                            f"{sorted(c.__name__ for c in missing)}; handlers of commands the "
                            f"decider never returns: {sorted(c.__name__ for c in extra)}")

    @cached_property
    def perform(self) -> Perform | None:
        return perform_commands(self.commands) if self.commands else None

    def handler(self) -> Handler:
        return handler_for(self.decider, source=self.source, perform=self.perform,
                           observe=self.observe, concurrent=self.partner_calls,
                           claims=not self.sole_writer, stragglers=not self.sole_writer,
                           prepare=self.prepare)

    def timers(self) -> FireTimers | None:
        """The timer job, if the decider has deadlines."""
        if self.decider.deadlines is None:
            return None
        return timers_for(self.decider, source=self.source, perform=self.perform,
                          observe=self.observe, outside=self.partner_calls)


_compensations = metrics.Children(metrics.COMPENSATIONS)


def compensations(service: str, types: frozenset[str], *more: Count) -> Count:
    """A decider's `count`: alur_compensations_total for each event of `types` (the ones
    that undo an earlier effect, named by the service) and whatever `more` counts."""

    def count(events: Sequence[Event]) -> None:
        for e in events:
            if e.type in types:
                _compensations(service, e.type).inc()
        for also in more:
            also(events)

    return count


def _is_event_payload(item: object) -> bool:
    return isinstance(item, Model) and type(item) in EVENT_FOR_DATA


async def _perform(perform: Perform | None, uow: UnitOfWork, command: object,
                   event: Event) -> Sequence[Model]:
    if perform is None:
        raise TypeError(f"decider returned command {command!r} but the service performs none")
    return await perform(uow, command, event)
