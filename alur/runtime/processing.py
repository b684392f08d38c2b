"""Handle a batch of consumed messages in ONE transaction, each message in a savepoint.

For every message: decode, record its id in the inbox (a duplicate does nothing), call the
service's handler (load, decide, append, publish), write the audit row. A message whose handler
raises a retriable error is retried with backoff; one that still fails, or can never succeed
(undecodable, a bug), goes to `<topic>.dlq` through the outbox with its error and origin, so the
partition moves on. An error of the transaction itself (database gone, or the transaction chosen
as a deadlock's victim) propagates: the caller retries the whole batch and acks nothing until it
commits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from alur.runtime import metrics
from alur.runtime.errors import is_retriable
from alur.runtime.logs import message_context
from alur.runtime.ports import AuditRow, UnitOfWork
from schemas import DecodeError, Event, decode, dlq_topic

log = logging.getLogger("alur.processing")

HandlerResult = Literal["processed", "ignored"]
Handler = Callable[[UnitOfWork, Event], Awaitable[HandlerResult]]


@dataclass(frozen=True)
class Message:
    """A consumed Kafka record, as the runtime sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Result:
    message: Message
    outcome: str
    event_type: str | None
    attempts: int
    error: str | None = None


class BatchProcessor:
    def __init__(
        self, service: str, handler: Handler, new_uow: Callable[[], UnitOfWork], *,
        attempts: int = 4, backoff: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.service = service
        self._handler = handler
        self._new_uow = new_uow
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._handler_seconds = metrics.Children(metrics.HANDLER_SECONDS, service)
        self._retries = metrics.RETRIES.labels(service)

    async def process(self, batch: Sequence[Message]) -> list[Result]:
        """Process and commit the batch; raises only if the transaction itself fails."""
        decoded: list[Event | DecodeError] = []
        for message in batch:
            try:
                decoded.append(decode(message.value))
            except DecodeError as exc:
                decoded.append(exc)
        events = [e for e in decoded if isinstance(e, Event)]
        results: list[Result] = []
        committed: list[Callable[[], None]] = []  # metric updates due once the batch commits
        async with self._new_uow() as uow:
            # One statement each for the whole batch: inbox ids, then the streams to fold.
            new = await uow.remember_all([e.id for e in events])
            await uow.preload([e.subject for e in events if e.id in new])
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
                        results.append(await self._one(uow, message, event, committed))
        for callback in committed:
            callback()
        return results

    async def _one(self, uow: UnitOfWork, message: Message, event: Event,
                   committed: list[Callable[[], None]]) -> Result:
        attempt = 0
        started = time.perf_counter()
        while True:
            attempt += 1
            try:
                with metrics.collecting() as pending:
                    async with uow.savepoint():
                        outcome = await self._handler(uow, event)
                        uow.audit(self._audit_in(message, event, outcome, attempt))
                committed.extend(pending)
                self._handler_seconds(event.type).observe(time.perf_counter() - started)
                return Result(message, outcome, event.type, attempt)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if _ends_transaction(exc):
                    raise
                if is_retriable(exc) and attempt < self._attempts:
                    self._retries.inc()
                    log.warning("retrying %s %s (attempt %d): %s", event.type, event.subject,
                                attempt, error)
                    await self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
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
                     attempts: int) -> Result:
        uow.dead_letter(dlq_topic(message.topic), message.key,
                        dead_letter_record(self.service, message, error, attempts))
        uow.audit(self._audit_in(message, event, "dead_lettered", attempts, error))
        return Result(message, "dead_lettered", event.type if event else None, attempts, error)


def dead_letter_record(service: str, message: Message, error: str, attempts: int) -> bytes:
    """The DLQ value: the error, where the message came from, and the original bytes."""
    try:
        value, encoding = message.value.decode(), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(message.value).decode(), "base64"
    return json.dumps({
        "service": service, "error": error, "attempts": attempts,
        "failed_at": datetime.now(UTC).isoformat(),
        "origin": {"topic": message.topic, "partition": message.partition,
                   "offset": message.offset,
                   "key": message.key.decode(errors="replace") if message.key else None},
        "value": value, "value_encoding": encoding,
    }).encode()


def _ends_transaction(exc: BaseException) -> bool:
    """The database lost the connection or picked this transaction as a deadlock's victim:
    the caller retries the whole batch."""
    from alur.runtime.postgres import TRANSACTION_ERRORS  # asyncpg only where it is used

    return isinstance(exc, TRANSACTION_ERRORS)
