"""One service = one OS process: a faust agent (consume -> BatchProcessor), the outbox relay,
a /metrics endpoint and whatever the service adds (the orders HTTP API).

The agent uses `noack_take`: a batch's events are acked only after its transaction committed,
so a crash or a shutdown in the middle of a batch leaves its offsets uncommitted and the batch
is delivered again (the inbox makes that harmless). faust's `exactly_once` mode is not used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import faust

from alur.runtime import metrics
from alur.runtime.aggregate import FireTimers
from alur.runtime.db import CORE_SQL, connect_pool, every, migrate
from alur.runtime.errors import ConcurrencyConflict
from alur.runtime.health import serve_operations
from alur.runtime.logs import logging_config
from alur.runtime.postgres import PostgresOutbox, PostgresUnitOfWork
from alur.runtime.processing import BatchProcessor, Handler, Message, Result
from alur.runtime.relay import OutboxRelay, new_producer, sample_outbox
from alur.runtime.topics import ensure_topics
from alur.settings import Settings

log = logging.getLogger("alur.worker")
MAX_BATCH_BACKOFF = 5.0


@dataclass
class ServiceParts:
    """What a service's bootstrap builds once the pool exists."""

    handler: Handler
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    close: Callable[[], Awaitable[None]] | None = None
    timers: FireTimers | None = None


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    subscriptions: tuple[str, ...]
    migrations: Path | None
    build: Callable[[Settings, asyncpg.Pool], Awaitable[ServiceParts]]
    # Whether /readyz needs partitions assigned. A consumer-only replica without partitions has
    # nothing to do; the orders API still serves requests without any.
    ready_needs_partitions: bool = True

    def migration_dirs(self) -> list[Path]:
        return [CORE_SQL] + ([self.migrations] if self.migrations else [])


async def prepare(definition: ServiceDefinition, settings: Settings) -> None:
    """Apply migrations and make sure the topics exist, before consuming anything."""
    await migrate(settings.pg_dsn, definition.name, *definition.migration_dirs())
    await ensure_topics(settings.kafka_bootstrap, settings.partitions)


class _Runtime:
    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.ready = asyncio.Event()
        self.processor: BatchProcessor | None = None

    def assignment(self) -> set[Any]:
        """The partitions assigned to this replica (raises before the consumer started)."""
        return set(self.app.consumer.assignment())

    def lags(self) -> dict[tuple[str, int], int]:
        """Consumer group lag per assigned partition: log end offset minus the committed offset,
        the figure `kafka-consumer-groups.sh --describe` shows. Offsets are committed every
        few seconds after their batch's transaction, so lag drops to zero shortly after the
        work is done, not the instant it is."""
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})  # faust keeps no public one
        lags: dict[tuple[str, int], int] = {}
        for tp in self.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from this partition yet
            lags[(tp.topic, tp.partition)] = max(0, end - (committed.get(tp) or 0))
        return lags


def build_app(definition: ServiceDefinition, settings: Settings) -> faust.App:
    name = definition.name
    # One per process on this host: replicas of a service (own metrics ports) run side by side.
    datadir = settings.state_dir / "faust" / f"{name}-{settings.metrics_port(name)}"
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        f"alur-{name}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        web_enabled=False,
        # faust keeps a small data dir; under the state dir it stays out of the working tree
        # (and off a read-only root filesystem in a container).
        datadir=str(datadir),
        topic_allow_declare=False,     # topics are Alur's to create, with their partitions
        topic_disable_leader=True,     # no faust leader topic: we elect nothing through faust
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(1.0, settings.session_timeout / 5),
        producer_acks=-1,
    )
    runtime = _Runtime(app)
    topic = app.topic(*definition.subscriptions, value_serializer="raw", key_serializer="raw")

    @app.task  # type: ignore[untyped-decorator]
    async def start_service() -> None:
        try:
            await _serve(definition, settings, runtime)
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit):  # uvicorn exits when its port is taken
            # Crash-only: every effect is committed or redone, so exiting is always safe, and
            # a consumer left running without its pool or relay would only fail quietly.
            log.critical("%s: the service's core failed; exiting", name, exc_info=True)
            logging.shutdown()
            os._exit(70)

    async def consume(stream: Any) -> None:  # faust.Stream; noack_take is not on StreamT
        await runtime.ready.wait()
        assert runtime.processor is not None
        recorder = _Recorder(name)
        async for events in stream.noack_take(settings.batch_size, settings.batch_within):
            batch = [Message(e.message.topic, e.message.partition, e.message.offset,
                             e.message.key, e.message.value) for e in events]
            started = time.perf_counter()
            results = await _commit_with_retry(runtime.processor, batch, recorder)
            recorder.batch(len(batch), time.perf_counter() - started, results)
            for e in events:
                await stream.ack(e)

    app.agent(topic, name=f"alur-{name}-handler")(consume)
    return app


async def _serve(definition: ServiceDefinition, settings: Settings, runtime: _Runtime) -> None:
    """Build the service's parts, open the gate for the agent, run the relay and extras."""
    name = definition.name
    pool = await connect_pool(settings.pg_dsn, name, settings.pg_pool_size)
    producer = new_producer(settings.kafka_bootstrap)
    await producer.start()
    parts = await definition.build(settings, pool)
    metrics.initialise(metrics.DEAD_LETTERS, *((name, t) for t in definition.subscriptions))
    runtime.processor = BatchProcessor(
        name, parts.handler, lambda: PostgresUnitOfWork(pool, name),
        attempts=settings.retry_attempts, backoff=settings.retry_backoff)
    outbox = PostgresOutbox(pool)
    relay = OutboxRelay(name, name, settings.pg_dsn, outbox, producer,
                        batch=settings.relay_batch, interval=settings.relay_interval,
                        retention=settings.outbox_retention)

    async def database() -> str:
        await pool.fetchval("SELECT 1")
        return "answers"

    async def broker() -> str:
        await producer.client.fetch_all_metadata()
        return f"{len(producer.client.cluster.brokers())} broker(s)"

    async def partitions() -> str:
        assigned = runtime.assignment()
        if not assigned:
            raise RuntimeError("no partitions assigned (rebalancing, or more replicas than "
                               "partitions)")
        return f"{len(assigned)} assigned"

    checks = {"database": database, "broker": broker}
    if definition.ready_needs_partitions:
        checks["partitions"] = partitions
    operations = await serve_operations(name, settings.listen_host, settings.metrics_port(name),
                                        checks)
    runtime.ready.set()
    log.info("%s ready: consuming %s", name, ", ".join(definition.subscriptions))
    try:
        await asyncio.gather(
            relay.run(), sample_outbox(name, outbox, settings.sample_interval),
            _sample_lag(name, runtime, settings.sample_interval),
            *(job() for job in parts.background),
            *([_fire_timers(name, parts.timers, pool, settings.timer_interval)]
              if parts.timers else []))
    finally:
        await operations.cleanup()
        if parts.close:
            await parts.close()
        await producer.stop()
        await pool.close()


async def _fire_timers(service: str, fire: FireTimers, pool: asyncpg.Pool,
                       interval: float) -> None:
    """Fire due timers every `interval` seconds, one transaction per round. Replicas share the
    table: each takes the due rows no other holds."""
    fired = metrics.Children(metrics.TIMERS_FIRED, service)

    async def round_() -> None:
        try:
            with metrics.collecting() as committed:
                async with PostgresUnitOfWork(pool, service) as uow:
                    timers = await fire(uow, datetime.now(UTC))
        except ConcurrencyConflict as exc:  # the consumer wrote the same order: next round
            log.info("%s: timers wait a round: %s", service, exc)
            return
        for callback in committed:
            callback()
        for timer in timers:
            fired(timer.kind).inc()

    await every(interval, round_, "fire timers", log)


async def _sample_lag(service: str, runtime: _Runtime, interval: float) -> None:
    """Consumer lag per partition; a partition that moved to another replica is dropped."""
    lag = metrics.CONSUMER_LAG
    assigned = metrics.ASSIGNED_PARTITIONS.labels(service)
    shown: set[tuple[str, int]] = set()
    while True:
        try:
            lags = runtime.lags()
        except Exception as exc:  # the consumer is (re)starting; try again next round
            log.debug("%s: no lag sample: %s", service, exc)
        else:
            assigned.set(len(lags))
            for (topic, partition), value in lags.items():
                lag.labels(service, topic, str(partition)).set(value)
            for topic, partition in shown - lags.keys():
                lag.remove(service, topic, str(partition))
            shown = set(lags)
        await asyncio.sleep(interval)


async def _commit_with_retry(processor: BatchProcessor, batch: list[Message],
                             recorder: _Recorder) -> list[Result]:
    """Retry the batch until its transaction commits; nothing is acked before that."""
    delay = 0.2
    while True:
        try:
            return await processor.process(batch)
        except Exception as exc:  # the transaction failed as a whole (database unreachable, ...)
            recorder.batch_failed()
            # A deadlock's (or serialization failure's) victim is expected now and then;
            # anything else needs a look.
            level = logging.WARNING if isinstance(exc, asyncpg.TransactionRollbackError) else \
                logging.ERROR
            log.log(level, "%s: batch of %d failed, retrying in %.1fs: %s", processor.service,
                    len(batch), delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BATCH_BACKOFF)


class _Recorder:
    """Metric children resolved once per label set, not per message."""

    def __init__(self, service: str) -> None:
        self._consumed = metrics.Children(metrics.EVENTS_CONSUMED, service)
        self._dead_letters = metrics.Children(metrics.DEAD_LETTERS, service)
        self._seconds = metrics.BATCH_SECONDS.labels(service)
        self._size = metrics.BATCH_SIZE.labels(service)
        self._failures = metrics.BATCH_FAILURES.labels(service)

    def batch(self, size: int, seconds: float, results: list[Result]) -> None:
        self._seconds.observe(seconds)
        self._size.observe(size)
        for r in results:
            self._consumed(r.message.topic, r.event_type or "undecodable", r.outcome).inc()
            if r.outcome == "dead_lettered":
                self._dead_letters(r.message.topic).inc()

    def batch_failed(self) -> None:
        self._failures.inc()


def run_service(definition: ServiceDefinition, settings: Settings) -> None:
    """Prepare the schema and topics, then run the faust worker until SIGTERM/SIGINT."""
    asyncio.run(prepare(definition, settings))
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_app(definition, settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True,
                          logging_config=logging_config(definition.name, settings.log_level))
    # faust's terminal spinner writes cursor escapes into the log and turns the root logger to
    # DEBUG so that it can spin on every record; JSON logs want neither.
    worker.spinner = None
    worker.execute_from_commandline()
