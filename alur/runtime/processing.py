"""Handle a batch of consumed messages in ONE transaction, each message in a savepoint.

For every message: decode, record its id in the inbox (a duplicate does nothing), call the
service's handler (load, decide, append, publish), write the audit row. A handler that can
`prepare` (partner calls only: aggregate.handler_for's `concurrent`) first carries out the
commands of the batch's orders side by side; a command that failed there is its event's
first attempt. A message whose handler
raises a retriable error is retried with backoff; one that still fails, or can never succeed
(undecodable, no value at all, oversized, an event the service refuses, a bug), goes to
`<topic>.dlq` through the outbox with its error and origin, so the partition moves on.

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
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from alur.runtime import metrics
from alur.runtime.errors import InfrastructureError, InvalidEvent, is_retriable
from alur.runtime.logs import message_context
from alur.runtime.ports import AuditRow, UnitOfWork
from schemas import DecodeError, Event, decode, dlq_topic

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
    ) -> None:
        self.service = service
        self._handler = handler
        self._new_uow = new_uow
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._progress = progress
        self._patience = patience
        # (topic, partition, offset) -> when its partner first failed it for good
        self._waiting_since: dict[tuple[str, int, int], float] = {}
        self._handler_seconds = metrics.Children(metrics.HANDLER_SECONDS, service)
        self._retries = metrics.RETRIES.labels(service)
        self._failures = metrics.BATCH_FAILURES.labels(service)

    async def commit(self, batch: Sequence[Message],
                     failed: Callable[[BaseException], None] = lambda _: None) -> list[Result]:
        """Process the batch until its effects are committed; see the module's docstring.
        `failed` hears of every failed attempt (the watchdog)."""
        delay = 0.2
        poisoned = 0
        while True:
            try:
                return await self.process(batch)
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
                    exc, PartnerUnavailable) else logging.ERROR
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

    async def process(self, batch: Sequence[Message]) -> list[Result]:
        """Process and commit the batch; raises only if the transaction itself fails."""
        decoded = [read(message) for message in batch]
        events = [e for e in decoded if isinstance(e, Event)]
        results: list[Result] = []
        committed: list[Callable[[], None]] = []  # metric updates due once the batch commits
        async with self._new_uow() as uow:
            # One statement each for the whole batch: inbox ids, then the streams to fold.
            new = await uow.remember_all([e.id for e in events])
            # Only the orders of events the service acts on are locked and loaded: an event it
            # ignores must not make a partner's callback about that order wait for the batch.
            relevant = getattr(self._handler, "relevant", None)
            await uow.preload([e.subject for e in events
                               if e.id in new and (relevant is None or e.type in relevant)])
            failed_first = await self._prepare(uow, [e for e in events if e.id in new])
            for message, event in zip(batch, decoded, strict=True):
                if isinstance(event, DecodeError):
                    results.append(
                        self._dead_letter(uow, message, None, f"undecodable: {event}", 1))
                elif event.id not in new:
                    uow.audit(self._audit_in(message, event, "duplicate", 1))
                    results.append(Result(message, "duplicate", event.type, 1))
                else:
                    new.discard(event.id)  # a second copy later in the batch is a duplicate
                    with message_context(event.subject, str(event.id), str(event.correlation_id)):
                        results.append(await self._one(uow, message, event, committed,
                                                       failed_first.pop(event.id, None)))
                self._progress()
        for callback in committed:
            callback()
        return results

    async def _prepare(self, uow: UnitOfWork, events: Sequence[Event]) -> dict[object, Exception]:
        """Let a handler that can (aggregate.handler_for's `concurrent`) carry out the
        commands of the first new event of each order at once. Returns the error of each
        event whose command failed there: its first attempt, which handling retries."""
        prepare = getattr(self._handler, "prepare", None)
        if prepare is None:
            return {}
        first: dict[str, Event] = {}
        for event in events:
            first.setdefault(event.subject, event)
        try:
            return dict(await prepare(uow, list(first.values())))
        except Exception as exc:
            if ends_transaction(exc):
                raise
            log.warning("%s: preparing the batch failed; handling it message by message: "
                        "%s: %s", self.service, type(exc).__name__, exc)
            return {}

    async def _one(self, uow: UnitOfWork, message: Message, event: Event,
                   committed: list[Callable[[], None]],
                   failed_first: Exception | None = None) -> Result:
        attempt = 0
        started = time.perf_counter()
        while True:
            attempt += 1
            try:
                if failed_first is not None:  # its first attempt was the batch's `prepare`
                    prepared, failed_first = failed_first, None
                    raise prepared
                with metrics.collecting() as pending:
                    async with uow.savepoint():
                        outcome = await self._handler(uow, event)
                        uow.audit(self._audit_in(message, event, outcome, attempt))
                committed.extend(pending)
                self._handler_seconds(event.type).observe(time.perf_counter() - started)
                self._waiting_since.pop((message.topic, message.partition, message.offset), None)
                return Result(message, outcome, event.type, attempt)
            except InvalidEvent as exc:
                # Refused (an unknown order, an impossible event): never recorded, never acted
                # on, kept on the DLQ. Not "lost": there is nothing the order is owed.
                log.warning("refusing %s %s: %s", event.type, event.subject, exc)
                await uow.forget(event.id)  # so that a redrive after a fix is handled
                return self._dead_letter(uow, message, event, f"refused: {exc}", attempt,
                                         outcome="refused")
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if ends_transaction(exc):
                    raise
                if is_retriable(exc) and attempt < self._attempts:
                    self._retries.inc()
                    log.warning("retrying %s %s (attempt %d): %s", event.type, event.subject,
                                attempt, error)
                    await self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                key = (message.topic, message.partition, message.offset)
                now = time.monotonic()
                waited = now - self._waiting_since.setdefault(key, now)
                if is_retriable(exc) and waited < self._patience:
                    # A partner (gateway, carrier, SMTP) that does not answer: the batch waits
                    # for it, as for the database, instead of dead-lettering what it will
                    # take once it is back (a restart takes seconds).
                    raise PartnerUnavailable(f"{event.type} {event.subject}: {error}") from exc
                self._waiting_since.pop(key, None)
                log.error("dead-lettering %s %s after %d attempt(s): %s", event.type,
                          event.subject, attempt, error)
                await uow.forget(event.id)  # so that a redrive after a fix is handled
                return self._dead_letter(uow, message, event, error, attempt)

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
        uow.dead_letter(dlq_topic(message.topic), message.key,
                        dead_letter_record(self.service, message, error, attempts))
        uow.audit(self._audit_in(message, event, outcome, attempts, error))
        return Result(message, outcome, event.type if event else None, attempts, error)


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
    record: dict[str, object] = {
        "service": service, "error": error, "attempts": attempts,
        "failed_at": datetime.now(UTC).isoformat(),
        "origin": {"topic": message.topic, "partition": message.partition,
                   "offset": message.offset,
                   "key": message.key.decode(errors="replace") if message.key else None},
        "value": value if message.value is not None else None, "value_encoding": encoding,
    }
    if len(raw) > len(kept):
        record |= {"value_truncated": True, "value_bytes": len(raw),
                   "value_sha256": hashlib.sha256(raw).hexdigest()}
    return json.dumps(record).encode()


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
