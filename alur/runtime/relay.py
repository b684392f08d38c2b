"""The outbox relay: publishes committed outbox rows with an idempotent producer, in order.

Each record carries a `content-type` header: events are CloudEvents in the structured content
mode of the Kafka binding (schemas/codec.py), dead letters plain JSON.

One relay per service is active at a time (a PostgreSQL advisory lock held on its own
connection), so rows leave in id order and per-order event order is kept. It wakes on the
NOTIFY sent by each committing unit of work and polls as a fallback. Rows that failed to send
stay unpublished and are sent again: nothing is dropped (consumers deduplicate by event id).

A round whose sends partly fail marks published what was sent, except a row after a failed one
with the same key (an order's events stay in order on their topic), and then starts over with
a new producer: an idempotent producer that lost a batch (a leader moved, a broker restarted)
can be left numbering its batches past what the broker holds, and would be refused
(OutOfOrderSequenceNumber) for as long as it lives, while every round re-sent what had gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from alur.runtime import metrics
from alur.runtime.db import DATABASE_ERRORS, advisory_key, every
from alur.runtime.health import Watchdog
from alur.runtime.ports import DEAD_LETTER_TYPE, Outbox
from alur.runtime.postgres import notify_channel
from schemas.codec import CONTENT_TYPE

log = logging.getLogger("alur.relay")
PRUNE_EVERY = 60.0
EVENT_HEADERS = [("content-type", CONTENT_TYPE.encode())]
DEAD_LETTER_HEADERS = [("content-type", b"application/json")]


def record_headers(row_type: str) -> list[tuple[str, bytes]]:
    """Every record says what its value is: a CloudEvent in structured mode (events, and the
    outcomes of shops' intake records), or a dead letter's JSON."""
    return DEAD_LETTER_HEADERS if row_type == DEAD_LETTER_TYPE else EVENT_HEADERS


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                            linger_ms=5, request_timeout_ms=30000)


class OutboxRelay:
    def __init__(self, service: str, schema: str, dsn: str, outbox: Outbox,
                 producer: AIOKafkaProducer, *, batch: int, interval: float,
                 retention: float, watchdog: Watchdog | None = None,
                 renew: Callable[[], AIOKafkaProducer] | None = None) -> None:
        self.service = service
        self._schema = schema
        self._dsn = dsn
        self._outbox = outbox
        self.producer = producer  # replaced after a failed send, when `renew` makes another
        self._renew = renew
        self._batch = batch
        self._interval = interval
        self._retention = retention
        self._wake = asyncio.Event()
        self._watchdog = watchdog or Watchdog(float("inf"))
        self._produced = metrics.Children(metrics.EVENTS_PRODUCED, service)
        self._failures = metrics.RELAY_FAILURES.labels(service)
        self._leader = metrics.RELAY_LEADER.labels(service)

    async def run(self) -> None:
        """Hold leadership and publish until cancelled; reconnects after failures."""
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except (*DATABASE_ERRORS, KafkaError) as exc:
                self._failures.inc()
                self._watchdog.failed("relay", f"{type(exc).__name__}: {exc}")
                log.warning("relay %s lost its footing, retrying in 1s: %s", self.service, exc)
                await asyncio.sleep(1.0)
                if isinstance(exc, KafkaError):
                    await self._new_producer()

    async def _new_producer(self) -> None:
        """Start a producer afresh (a new producer id, its sequence numbers from 0); the old
        one goes once the new one is up. Kafka still away: the next round tries again."""
        if self._renew is None:
            return
        fresh = self._renew()
        try:
            await fresh.start()
        except KafkaError as exc:
            log.warning("relay %s: no new producer yet: %s", self.service, exc)
            await fresh.stop()
            return
        old, self.producer = self.producer, fresh
        try:
            await asyncio.wait_for(old.stop(), 10.0)
        except (KafkaError, TimeoutError) as exc:
            log.debug("the old producer did not stop cleanly: %s", exc)

    async def _lead(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        try:
            key = advisory_key(f"relay:{self._schema}")
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=10):
                self._watchdog.ok("relay")  # standing by is not failing
                await asyncio.sleep(1.0)  # another replica's relay is active
            await conn.add_listener(notify_channel(self._schema), lambda *_: self._wake.set())
            self._leader.set(1)
            last_prune = 0.0
            while True:
                sent = await self.publish_once()
                self._watchdog.ok("relay")
                if time.monotonic() - last_prune > PRUNE_EVERY:
                    await self._outbox.prune(self._retention)
                    last_prune = time.monotonic()
                if sent < self._batch:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._interval)
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            self._leader.set(0)
            conn.terminate()  # its lock goes with it; a graceful close could wait on a dead peer

    async def publish_once(self) -> int:
        rows = await self._outbox.unpublished(self._batch)
        if not rows:
            return 0
        # Enqueue all, then await all: the producer batches and keeps per-partition order.
        futures: list[asyncio.Future[Any]] = []
        failed: BaseException | None = None
        for r in rows:
            try:
                futures.append(await self.producer.send(r.topic, r.value, key=r.key,
                                                          headers=record_headers(r.type)))
            except KafkaError as exc:  # not even enqueued: this row and the rest wait
                failed = exc
                break
        records = await asyncio.gather(*futures, return_exceptions=True)
        sent: list[tuple[int, int, int]] = []
        stopped: set[tuple[str, bytes | None]] = set()  # keys with a row that failed
        for r, m in zip(rows, records, strict=False):
            if isinstance(m, BaseException):
                failed = failed or m
                stopped.add((r.topic, r.key))
            elif (r.topic, r.key) not in stopped:
                sent.append((r.id, m.partition, m.offset))
                self._produced(r.topic, r.type).inc()
        await self._outbox.mark_published(sent)
        if failed is not None:
            raise failed
        return len(rows)


async def sample_outbox(service: str, outbox: Outbox, interval: float) -> None:
    """Keep the outbox gauges current, on every replica whether its relay leads or not."""
    backlog = metrics.OUTBOX_BACKLOG.labels(service)
    oldest = metrics.OUTBOX_OLDEST_AGE.labels(service)

    async def sample() -> None:
        stats = await outbox.stats()
        backlog.set(stats.backlog)
        oldest.set(stats.oldest_age)

    await every(interval, sample, f"read {service}'s outbox stats", log)

