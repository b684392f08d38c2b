"""Handle a batch of consumed messages in ONE transaction, each message in a savepoint.

For every message: decode, record its id in the inbox (a duplicate does nothing), call the
service's handler (load, decide, append, publish), write the audit row. A message whose handler
raises a retriable error is retried with backoff; one that still fails, or can never succeed
(undecodable, no value at all, oversized, an event the service refuses, a bug), goes to
`<topic>.dlq` through the outbox with its error and origin, so the partition moves on.

Effects outside the transaction. A handler that plans (partner calls only: aggregate.
handler_for's `concurrent`) is run in three steps, so that no transaction or lock is held
while a gateway, carrier or SMTP server answers:
1. a short transaction reads which events are new (the inbox), locks and reads their streams,
   and claims them (the `claims` table), then commits: from now until step 3 commits, every
   other writer of those streams (a timer round, a partner's callback) finds the claim under
   the stream's lock and tries again later;
2. with no transaction open, the handler plans each new event on the streams it read: the
   commands are carried out (orders side by side, each order's events in turn, each call with
   its idempotency key and the usual retries) and what each event records is worked out;
3. the batch's transaction checks that each stream is still where its plan found it, records
   the plans, deletes the claims and commits.
A crash between 1 and 3 leaves the claims; the messages are delivered again (the batch was
not acked) and whoever handles them takes the claims over and repeats the calls, which their
idempotency keys make return what they returned before. A stream found elsewhere than its plan
saw (only if a writer ignored the claim, e.g. after it lapsed) makes the batch plan again.

`commit` is what the consumer calls. An error of the transaction itself (database gone, or the
transaction chosen as a deadlock's victim) is retried for the whole batch until it commits, and
nothing is acked meanwhile. So is a partner (gateway, carrier, SMTP) that still fails a message
after its retries: the batch waits for it up to `patience` seconds per message (a restart, a
short outage), and only then is the message dead-lettered. Any other error that escapes the
savepoints (a value the database refuses to store, a fault outside the handler) is the batch's
poison: the batch is tried again, then message by message, and the message that fails on its
own is dead-lettered in a transaction that holds nothing else. So one record can never stall
its partition.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

from alur.runtime import metrics
from alur.runtime.errors import InfrastructureError, InvalidEvent, is_retriable
from alur.runtime.logs import message_context
from alur.runtime.ports import DEAD_LETTER_TYPE, AuditRow, UnitOfWork
from schemas import DecodeError, Event, decode, dlq_topic
from schemas.deadletter import DeadLetterRecord, Origin
from schemas.envelope import random_uuid

log = logging.getLogger("alur.processing")
# An event is a few kilobytes; a record this large is refused before it is parsed.
MAX_RECORD_BYTES = 256 * 1024
# A dead letter keeps at most this much of the original value (and its size and SHA-256), so
# that it always fits on the DLQ topic.
MAX_DEAD_LETTER_VALUE = 64 * 1024
MAX_BATCH_BACKOFF = 5.0
# A batch that fails this often for a reason other than its database is split up to find the
# record that poisons it.
POISON_AFTER = 3

HandlerResult = Literal["processed", "ignored", "held"]
Handler = Callable[[UnitOfWork, Event], Awaitable[HandlerResult]]
T = TypeVar("T")
# A claim outlives the longest a batch waits for its partner by this much.
CLAIM_MARGIN = 60.0
# Orders left to tasks of their own at most (their partner is slow); beyond, batches wait.
MAX_STRAGGLERS = 256
# A plan is a straggler once it takes this many times the typical plan (and at least
# straggler_after).
STRAGGLER_FACTOR = 4.0


@dataclass(frozen=True)
class Message:
    """A consumed Kafka record, as the runtime sees it. `value` is None for a tombstone."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Result:
    message: Message
    outcome: str
    event_type: str | None
    attempts: int
    error: str | None = None
    # For a "deferred" message (its order's partner is slow): the task that commits it.
    later: asyncio.Task[list[Result]] | None = field(default=None, compare=False)


def read(message: Message) -> Event | DecodeError:
    """The message's event, or why it can never be one."""
    if message.value is not None and len(message.value) > MAX_RECORD_BYTES:
        return DecodeError(f"{len(message.value)} bytes, over the {MAX_RECORD_BYTES}-byte limit "
                           "of an event")
    try:
        return decode(message.value)
    except DecodeError as exc:
        return exc


class BatchProcessor:
    def __init__(
        self, service: str, handler: Handler, new_uow: Callable[[], UnitOfWork], *,
        attempts: int = 4, backoff: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        progress: Callable[[], None] = lambda: None, patience: float = 120.0,
        straggler_after: float | None = None,
    ) -> None:
        self.service = service
        self._handler = handler
        self._new_uow = new_uow
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._progress = progress
        self._patience = patience
        # Seconds a batch waits for its partner calls before it commits without the orders
        # whose calls still run (None: it waits for all).
        self._straggler_after = straggler_after
        self._typical = 0.0  # seconds a plan with partner calls takes, moving average
        # stream -> the latest task that still has to commit some of its messages
        self._pending: dict[str, asyncio.Task[Any]] = {}
        # (topic, partition, offset) -> when its partner first failed it for good
        self._waiting_since: dict[tuple[str, int, int], float] = {}
        self._handler_seconds = metrics.Children(metrics.HANDLER_SECONDS, service)
        self._retries = metrics.RETRIES.labels(service)
        self._stragglers_seen = metrics.STRAGGLERS.labels(service)
        self._failures = metrics.BATCH_FAILURES.labels(service)

    async def commit(self, batch: Sequence[Message],
                     failed: Callable[[BaseException], None] = lambda _: None, *,
                     defer: bool = True) -> list[Result]:
        """Process the batch until its effects are committed; see the module's docstring.
        `failed` hears of every failed attempt (the watchdog). With `defer`, the messages of
        an order whose partner is slow may come back "deferred", with the task (`later`) that
        commits them."""
        delay = 0.2
        poisoned = 0
        while True:
            try:
                return await self.process(batch, later=failed if defer else None)
            except Exception as exc:
                self._failures.inc()
                if isinstance(exc, PartnerUnavailable):
                    self._progress()  # waiting on purpose for a partner, not wedged
                else:
                    failed(exc)
                if not _unavailable(exc):
                    poisoned += 1
                    if poisoned >= POISON_AFTER:
                        return await self._one_by_one(batch, failed)
                    log.warning("%s: batch of %d failed outside its messages, trying again: "
                                "%s: %s", self.service, len(batch), type(exc).__name__, exc)
                    continue
                # A deadlock's (or serialization failure's) victim is expected now and then;
                # anything else needs a look.
                level = logging.WARNING if _is_rollback(exc) or isinstance(
                    exc, PartnerUnavailable | Unplanned) else logging.ERROR
                log.log(level, "%s: batch of %d failed, retrying in %.1fs: %s", self.service,
                        len(batch), delay, exc)
                await self._sleep(delay)
                delay = min(delay * 2, MAX_BATCH_BACKOFF)

    async def _one_by_one(self, batch: Sequence[Message],
                          failed: Callable[[BaseException], None]) -> list[Result]:
        """Each message in a transaction of its own; the one that fails alone is poison."""
        results: list[Result] = []
        for message in batch:
            try:
                results.extend(await self.commit_alone(message, failed))
            except _Poison as poison:
                results.append(await self._bury(message, poison.error, failed))
        return results

    async def commit_alone(self, message: Message,
                           failed: Callable[[BaseException], None]) -> list[Result]:
        tries = 0
        while True:
            try:
                return await self.process([message])
            except Exception as exc:
                failed(exc)
                if not _unavailable(exc):
                    tries += 1
                    if tries > 1:
                        raise _Poison(f"{type(exc).__name__}: {exc}"[:1000]) from exc
                    continue
                await self._sleep(MAX_BATCH_BACKOFF)

    async def _bury(self, message: Message, error: str,
                    failed: Callable[[BaseException], None]) -> Result:
        """Dead-letter a message in a transaction of its own. Its inbox row is not written
        (a redrive after a fix is handled), and the audit row names no event, since the
        event's own fields are what the database may refuse."""
        log.error("%s: dead-lettering the record at %s[%d]@%d, which fails its transaction: "
                  "%s", self.service, message.topic, message.partition, message.offset, error)
        while True:
            try:
                async with self._new_uow() as uow:
                    result = self._dead_letter(uow, message, None, f"unstorable: {error}", 1)
                self._progress()
                return result
            except Exception as exc:  # only the database can fail this: wait for it
                failed(exc)
                await self._sleep(MAX_BATCH_BACKOFF)

    async def process(self, batch: Sequence[Message], *,
                      later: Callable[[BaseException], None] | None = None,
                      given: _Planned | None = None) -> list[Result]:
        """Process and commit the batch; raises only if the transaction itself fails. With
        `later` (the consumer's batches), a straggler's order is left to a task of its own
        (see _plan); `later` hears of that task's failed attempts. `given`: the plans made
        already (a straggler's, once its calls are done)."""
        decoded = [read(message) for message in batch]
        events = [e for e in decoded if isinstance(e, Event)]
        planned = given
        if planned is None and hasattr(self._handler, "plan"):
            planned = await self._plan(batch, decoded, defer=later is not None)
        waits = planned.waits if planned is not None else {}
        relevant = getattr(self._handler, "relevant", None)
        prepare = getattr(self._handler, "prepare", None)
        results: list[Result] = []
        held_back: dict[str, list[Message]] = {}
        committed: list[Callable[[], None]] = []  # metric updates due once the batch commits
        async with self._new_uow() as uow:
            uow.claimant = planned is not None
            # One statement each for the whole batch: inbox ids, then the streams to fold. An
            # event of a type the service ignores has no effect to make once: no inbox row.
            # Only the orders of events the service acts on are locked and loaded: an event it
            # ignores must not make a partner's callback about that order wait for the batch.
            new = await uow.remember_all([e.id for e in events if e.subject not in waits and (
                relevant is None or e.type in relevant)])
            acting = [e for e in events if e.id in new]
            await uow.preload([e.subject for e in acting])
            if prepare is not None and acting:
                await prepare(uow, acting)
            for message, event in zip(batch, decoded, strict=True):
                if isinstance(event, Event) and event.subject in waits:
                    held_back.setdefault(event.subject, []).append(message)
                    results.append(Result(message, "deferred", event.type, 0))
                elif isinstance(event, DecodeError):
                    results.append(
                        self._dead_letter(uow, message, None, f"undecodable: {event}", 1))
                elif relevant is not None and event.type not in relevant:
                    uow.audit(self._audit_in(message, event, "ignored", 1))
                    results.append(Result(message, "ignored", event.type, 1))
                elif event.id not in new:
                    uow.audit(self._audit_in(message, event, "duplicate", 1))
                    results.append(Result(message, "duplicate", event.type, 1))
                else:
                    new.discard(event.id)  # a second copy later in the batch is a duplicate
                    plan = planned.plans.get(event.id) if planned is not None else None
                    with message_context(event.subject, str(event.id), str(event.correlation_id)):
                        results.append(await self._one(uow, message, event, committed, plan))
                self._progress()
            if planned is not None and planned.claimed:
                uow.release_claims(planned.claimed)
        for callback in committed:
            callback()
        if held_back:
            assert later is not None and planned is not None
            tasks = {stream: self._defer(stream, messages, planned, later)
                     for stream, messages in held_back.items()}
            results = [replace(r, later=tasks[cast(Event, e).subject])
                       if r.outcome == "deferred" else r
                       for r, e in zip(results, decoded, strict=True)]
        return results

    def _defer(self, stream: str, messages: list[Message], planned: _Planned,
               failed: Callable[[BaseException], None]) -> asyncio.Task[list[Result]]:
        """Commit a straggler's messages once its partner calls are done, in a task of its
        own; the stream's later messages wait for it (they are deferred behind it)."""
        waits, straggler = planned.waits[stream], planned.stragglers.get(stream)

        async def run() -> list[Result]:
            await asyncio.wait(waits)
            given = None
            if straggler is not None and straggler.done() and not straggler.cancelled() \
                    and straggler.exception() is None:
                plans = straggler.result()
                if not any(getattr(p, "failed", None) for p in plans.values()):
                    given = _Planned(plans, [stream] if getattr(self._handler, "claims", True)
                                     else [])
            if given is not None:
                try:
                    return await self.process(messages, given=given)
                except Exception as exc:  # planned again below, with the usual retries
                    failed(exc)
                    log.warning("%s: recording the straggling order %s failed; planning it "
                                "again: %s: %s", self.service, stream, type(exc).__name__, exc)
            return await self.commit(messages, failed, defer=False)

        task = asyncio.create_task(run(), name=f"{self.service}: straggler {stream}")
        self._pending[stream] = task
        return task

    async def _plan(self, batch: Sequence[Message], decoded: Sequence[Event | DecodeError],
                    *, defer: bool) -> _Planned:
        """Steps 1 and 2 of the module's docstring: read and claim the new events' streams in
        a short transaction, then plan each order's events with no transaction open, the
        orders side by side. With `defer`, an order whose calls are still running
        `straggler_after` seconds later is left behind (the batch commits without it), and so
        is an order an earlier straggler holds. Raises PartnerUnavailable when a partner
        still fails a call after its retries and the batch has not waited for it `patience`
        seconds yet."""
        handler: Any = self._handler
        where = {e.id: m for m, e in zip(batch, decoded, strict=True) if isinstance(e, Event)}
        events = [e for e in decoded if isinstance(e, Event) and e.type in handler.relevant]
        waits: dict[str, list[asyncio.Task[Any]]] = {}
        if defer:
            for stream in {e.subject for e in events}:
                task = self._pending.get(stream)
                if task is not None and task.done():
                    del self._pending[stream]
                elif task is not None:
                    waits[stream] = [task]  # behind a straggler of an earlier batch
        events = [e for e in events if e.subject not in waits]
        claims = getattr(handler, "claims", True)
        if not events:
            return _Planned(waits=waits)
        async with self._new_uow() as uow:
            uow.claimant = True
            if not claims:  # nobody else writes these streams: nothing to lock
                uow.lock_streams = False  # type: ignore[attr-defined]
            unseen = await uow.unseen([e.id for e in events])
            todo = list({e.id: e for e in events if e.id in unseen}.values())  # one copy each
            streams = list(dict.fromkeys(e.subject for e in todo))
            await uow.preload(streams)
            histories = {s: await uow.load(s) for s in streams}
            by_stream: dict[str, list[Event]] = {}
            for event in todo:
                by_stream.setdefault(event.subject, []).append(event)
            # Only a stream with a partner call to make is claimed.
            calling = [s for s in streams if await handler.calls(histories[s], by_stream[s])]
            if claims and calling:
                await uow.claim(calling, random_uuid(), self._patience + CLAIM_MARGIN)
        tasks = {s: asyncio.create_task(handler.plan(histories[s], evs, self._attempt))
                 for s, evs in by_stream.items()}
        started = time.monotonic()
        for stream in calling:
            tasks[stream].add_done_callback(lambda _: self._took(time.monotonic() - started))
        if tasks:
            # A straggler is a call slow for this partner now, not one slowed with all the
            # others by a busy machine: the wait grows with the calls' typical duration.
            # Stragglers are bounded: with a partner that hangs for everyone, the consumer
            # waits for it (as it does for one that refuses) instead of piling up tasks.
            timeout = None
            if defer and self._straggler_after is not None \
                    and getattr(handler, "stragglers", True) \
                    and self._stragglers() < MAX_STRAGGLERS:
                timeout = max(self._straggler_after, STRAGGLER_FACTOR * self._typical)
            try:
                await asyncio.wait(tasks.values(), timeout=timeout)
            except BaseException:
                for task in tasks.values():
                    task.cancel()
                raise
        plans: dict[Any, Any] = {}
        stragglers: dict[str, asyncio.Task[Any]] = {}
        for stream, task in tasks.items():
            if not task.done():
                self._pending[stream] = stragglers[stream] = task
                waits[stream] = [task]
                self._stragglers_seen.inc()
                log.info("%s: order %s's partner call takes over %.1fs; the batch commits "
                         "without it", self.service, stream, timeout)
                continue
            plans.update(task.result())
        for event in todo:
            failed = getattr(plans.get(event.id), "failed", None)
            if failed is not None:
                self._wait_for_partner(where[event.id], event, failed.error)
        claimed = [s for s in calling if s not in waits] if claims else []
        return _Planned(plans, claimed, waits, stragglers)

    def _took(self, seconds: float) -> None:
        """A plan with partner calls took `seconds`: the typical duration moves toward it."""
        self._typical += (seconds - self._typical) * 0.05

    def _stragglers(self) -> int:
        """Deferred work not committed yet (and the bookkeeping of what was, let go)."""
        live = {s: t for s, t in self._pending.items() if not t.done()}
        if len(self._pending) > 2 * len(live) + MAX_STRAGGLERS:
            self._pending = live
        return len(live)

    async def _attempt(self, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """One partner call with the retries a handler gets, and the tries it took; Failed
        when they run out."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(), attempt
            except Exception as exc:
                if is_retriable(exc) and attempt < self._attempts:
                    self._retries.inc()
                    log.warning("retrying a partner call (attempt %d): %s: %s", attempt,
                                type(exc).__name__, exc)
                    await self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                raise Failed(exc, attempt) from exc

    async def _one(self, uow: UnitOfWork, message: Message, event: Event,
                   committed: list[Callable[[], None]], plan: Any = None) -> Result:
        attempt = 0
        started = time.perf_counter()
        failed: Failed | None = getattr(plan, "failed", None)
        if failed is not None:  # its partner failed it in planning, for good or for too long
            return await self._give_up(uow, message, event, str(failed), failed.attempts)
        apply: Any = getattr(self._handler, "apply", None)
        while True:
            attempt += 1
            try:
                with metrics.collecting() as pending:
                    async with uow.savepoint():
                        outcome = await (apply(uow, event, plan) if plan is not None
                                         else self._handler(uow, event))
                        # A plan's partner calls were retried before this transaction.
                        tries = attempt + (plan.attempts - 1 if plan is not None else 0)
                        uow.audit(self._audit_in(message, event, outcome, tries))
                committed.extend(pending)
                self._handler_seconds(event.type).observe(time.perf_counter() - started)
                self._waiting_since.pop((message.topic, message.partition, message.offset), None)
                return Result(message, outcome, event.type, tries)
            except InvalidEvent as exc:
                # Refused (an unknown order, an impossible event): never recorded, never acted
                # on, kept on the DLQ. Not "lost": there is nothing the order is owed.
                log.warning("refusing %s %s: %s", event.type, event.subject, exc)
                await uow.forget(event.id)  # so that a redrive after a fix is handled
                return self._dead_letter(uow, message, event, f"refused: {exc}", attempt,
                                         outcome="refused")
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if ends_transaction(exc) or isinstance(exc, Unplanned):
                    raise
                if is_retriable(exc) and attempt < self._attempts:
                    self._retries.inc()
                    log.warning("retrying %s %s (attempt %d): %s", event.type, event.subject,
                                attempt, error)
                    await self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                self._wait_for_partner(message, event, exc)
                return await self._give_up(uow, message, event, error, attempt)

    def _wait_for_partner(self, message: Message, event: Event, exc: Exception) -> None:
        """Raise PartnerUnavailable for a retriable failure the batch has waited for less than
        `patience` seconds: a partner (gateway, carrier, SMTP) that does not answer is waited
        for, as the database is, instead of dead-lettering what it will take once it is back
        (a restart takes seconds)."""
        if not is_retriable(exc):
            return
        key = (message.topic, message.partition, message.offset)
        now = time.monotonic()
        if now - self._waiting_since.setdefault(key, now) < self._patience:
            raise PartnerUnavailable(f"{event.type} {event.subject}: "
                                     f"{type(exc).__name__}: {exc}") from exc

    async def _give_up(self, uow: UnitOfWork, message: Message, event: Event, error: str,
                       attempts: int) -> Result:
        """Dead-letter a message its handler (or its partner) failed for good."""
        self._waiting_since.pop((message.topic, message.partition, message.offset), None)
        log.error("dead-lettering %s %s after %d attempt(s): %s", event.type, event.subject,
                  attempts, error)
        await uow.forget(event.id)  # so that a redrive after a fix is handled
        return self._dead_letter(uow, message, event, error, attempts)

    def _audit_in(self, message: Message, event: Event | None, outcome: str, attempts: int,
                  error: str | None = None) -> AuditRow:
        return AuditRow(
            direction="in", topic=message.topic, partition=message.partition,
            offset=message.offset, event_id=event.id if event else None,
            type=event.type if event else None, order_id=event.subject if event else None,
            outcome=outcome, attempts=attempts, error=error,
        )

    def _dead_letter(self, uow: UnitOfWork, message: Message, event: Event | None, error: str,
                     attempts: int, outcome: str = "dead_lettered") -> Result:
        uow.send(dlq_topic(message.topic), message.key,
                 dead_letter_record(self.service, message, error, attempts), DEAD_LETTER_TYPE)
        uow.audit(self._audit_in(message, event, outcome, attempts, error))
        return Result(message, outcome, event.type if event else None, attempts, error)


@dataclass
class _Planned:
    plans: dict[Any, Any] = field(default_factory=dict)  # event id -> aggregate.Plan
    claimed: list[str] = field(default_factory=list)  # the streams whose claims it releases
    # Deferred streams -> the tasks their messages wait for; the plans still running.
    waits: dict[str, list[asyncio.Task[Any]]] = field(default_factory=dict)
    stragglers: dict[str, asyncio.Task[Any]] = field(default_factory=dict)


class Failed(Exception):
    """A partner call that still failed after the runtime's retries (`attempts` of them)."""

    def __init__(self, error: Exception, attempts: int) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error, self.attempts = error, attempts


class Unplanned(InfrastructureError):
    """The batch's transaction found a stream elsewhere than its plan saw it, or an event
    with a command and no plan: the transaction is rolled back and the batch planned again."""


class PartnerUnavailable(InfrastructureError):
    """A message's partner still fails after its retries, within the patience: the batch is
    rolled back and tried again (its effects are idempotent), nothing is dead-lettered."""


class _Poison(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def dead_letter_record(service: str, message: Message, error: str, attempts: int) -> bytes:
    """The DLQ value: the error, where the message came from, and the original bytes (the
    first MAX_DEAD_LETTER_VALUE of them, with the whole value's size and SHA-256)."""
    raw = message.value or b""
    kept = raw[:MAX_DEAD_LETTER_VALUE]
    try:
        value, encoding = kept.decode(), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(kept).decode(), "base64"
    truncated = len(raw) > len(kept)
    return DeadLetterRecord(
        service=service, error=error, attempts=attempts, failed_at=datetime.now(UTC),
        origin=Origin(topic=message.topic, partition=message.partition, offset=message.offset,
                      key=message.key.decode(errors="replace") if message.key else None),
        value=value if message.value is not None else None, value_encoding=encoding,
        value_truncated=True if truncated else None,
        value_bytes=len(raw) if truncated else None,
        value_sha256=hashlib.sha256(raw).hexdigest() if truncated else None,
    ).model_dump_json().encode()


def ends_transaction(exc: BaseException) -> bool:
    """The database lost the connection or picked this transaction as a deadlock's victim:
    the caller retries the whole batch."""
    from alur.runtime.postgres import TRANSACTION_ERRORS  # asyncpg only where it is used

    return isinstance(exc, TRANSACTION_ERRORS)


def _unavailable(exc: BaseException) -> bool:
    """The batch failed for want of its database (gone, restarting, a deadlock's victim), not
    because of what it holds: retried as it is, however long it takes."""
    return ends_transaction(exc) or (isinstance(exc, InfrastructureError) and exc.retriable)


def _is_rollback(exc: BaseException) -> bool:
    from alur.runtime.postgres import TRANSACTION_ERRORS

    return isinstance(exc, TRANSACTION_ERRORS[-1])
