"""One service = one OS process: a faust agent (consume -> BatchProcessor), the outbox relay,
a /metrics endpoint and whatever the service adds (the orders HTTP API).

The agent uses `noack_take`: a batch's events are acked only after its transaction committed,
so a crash or a shutdown in the middle of a batch leaves its offsets uncommitted and the batch
is delivered again (the inbox makes that harmless). faust's `exactly_once` mode is not used.

Self-healing: when PostgreSQL or Kafka goes away, the consumer, relay and timers retry, and carry
on by themselves when it returns (broken connections are dropped and the pool opens new ones).
They report to a Watchdog; one that has not recovered within `wedged_after` seconds (or a
consumer that has lag but takes nothing) fails `/healthz`, and the process exits with status 70
for its supervisor (`alur stack up`, or Kubernetes) to start it afresh. So does a failure of any
part of the core. Every effect is committed or redone, so exiting at any instant is safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import faust
import mode.loop
from aiokafka.errors import KafkaError
from starlette.types import ASGIApp

from alur.runtime import alarm, metrics
from alur.runtime.aggregate import FireTimers, Wiring
from alur.runtime.db import CORE_SQL, DATABASE_ERRORS, connect_pool, migrate
from alur.runtime.errors import ConcurrencyConflict
from alur.runtime.health import Watchdog, serve_operations
from alur.runtime.http import embedded_server
from alur.runtime.logs import logging_config
from alur.runtime.postgres import PostgresOutbox, PostgresUnitOfWork
from alur.runtime.processing import BatchProcessor, Message, Result
from alur.runtime.relay import OutboxRelay, new_producer, sample_outbox
from alur.runtime.topics import ensure_topics
from alur.settings import Settings

log = logging.getLogger("alur.worker")
EXIT_CORE_FAILED = 70  # EX_SOFTWARE: the supervisor starts the process again
# Seconds an idle timer loop sleeps at most: how late a timer another replica wrote may be seen.
TIMERS_IDLE = 5.0


@dataclass(frozen=True)
class Context:
    """What a service's bootstrap builds with: the settings, the pool, its units of work."""

    name: str
    settings: Settings
    pool: asyncpg.Pool

    def new_uow(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self.pool, self.name)


@dataclass
class ServiceParts:
    """What a service declares once the pool exists. The worker derives the rest: the
    consumer's handler and the timer job from `wiring`, a server for `app` on `port`."""

    wiring: Wiring[Any]
    app: ASGIApp | None = None  # the service's HTTP app (API, partner callbacks, admin)
    port: int | None = None
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    close: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    subscriptions: tuple[str, ...]
    migrations: Path | None
    build: Callable[[Context], Awaitable[ServiceParts]]
    # Whether /readyz needs partitions assigned. A consumer-only replica without partitions has
    # nothing to do; the orders API still serves requests without any.
    ready_needs_partitions: bool = True

    def migration_dirs(self) -> list[Path]:
        return [CORE_SQL] + ([self.migrations] if self.migrations else [])


async def prepare(definition: ServiceDefinition, settings: Settings) -> None:
    """Apply migrations and make sure the topics exist, before consuming anything. A database
    or broker that is not up yet (a restart during an outage) is waited for, up to
    `wedged_after` seconds; then the error ends the process for its supervisor."""
    deadline = time.monotonic() + settings.wedged_after
    delay = 0.5
    while True:
        try:
            await migrate(settings.pg_dsn, definition.name, *definition.migration_dirs())
            await ensure_topics(settings.kafka_bootstrap, settings.partitions,
                                replication=settings.replication_factor,
                                min_insync=settings.min_insync_replicas)
            return
        except (*DATABASE_ERRORS, KafkaError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: waiting for PostgreSQL and Kafka: %s", definition.name, exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)


class _Runtime:
    def __init__(self, app: faust.App, watchdog: Watchdog) -> None:
        self.app = app
        self.ready = asyncio.Event()
        self.processor: BatchProcessor | None = None
        self.watchdog = watchdog
        self.last_batch = time.monotonic()  # when the consumer last moved

    def progressed(self) -> None:
        self.watchdog.progress("consumer")
        self.last_batch = time.monotonic()

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
    runtime = _Runtime(app, Watchdog(settings.wedged_after))
    topic = app.topic(*definition.subscriptions, value_serializer="raw", key_serializer="raw")

    @app.task  # type: ignore[untyped-decorator]
    async def start_service() -> None:
        try:
            await _serve(definition, settings, runtime)
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit):  # uvicorn exits when its port is taken
            # Crash-only: every effect is committed or redone, so exiting is always safe, and
            # a consumer left running without its pool or relay would only fail quietly. No
            # clean-up first: closing a pool waits for connections a wedged loop may hold.
            _exit(f"{name}: the service's core failed; exiting", exc_info=True)

    async def consume(stream: Any) -> None:  # faust.Stream; noack_take is not on StreamT
        await runtime.ready.wait()
        processor = runtime.processor
        if processor is None:
            _exit(f"{name}: the consumer started without its processor")
        recorder = _Recorder(name)
        watchdog = runtime.watchdog

        def failed(exc: BaseException) -> None:
            watchdog.failed("consumer", f"{type(exc).__name__}: {exc}")

        acks = _InOrderAcks(stream)
        stragglers: set[asyncio.Task[None]] = set()

        async def ack_later(task: asyncio.Task[list[Result]], held: list[Any]) -> None:
            """A straggler's messages (its partner is slow) are acked once committed."""
            started = time.perf_counter()
            try:
                results = await task
            except Exception:  # commit only returns once committed: a defect, crash-only
                _exit(f"{name}: a straggler's commit failed; exiting so that its messages "
                      "come again", exc_info=True)
            recorder.batch(len(held), time.perf_counter() - started, results)
            await acks.done(held)

        async for events in stream.noack_take(settings.batch_size, settings.batch_within):
            batch = [Message(e.message.topic, e.message.partition, e.message.offset,
                             e.message.key, e.message.value) for e in events]
            started = time.perf_counter()
            with watchdog.busy("consumer"):
                results = await processor.commit(batch, failed)
            watchdog.ok("consumer")
            runtime.last_batch = time.monotonic()
            acks.add(events)
            later: dict[asyncio.Task[list[Result]], list[Any]] = {}
            for e, r in zip(events, results, strict=True):
                if r.later is not None:
                    later.setdefault(r.later, []).append(e)
            recorder.batch(len(batch), time.perf_counter() - started,
                           [r for r in results if r.later is None])
            await acks.done([e for e, r in zip(events, results, strict=True) if r.later is None])
            for task, held in later.items():
                acking = asyncio.create_task(ack_later(task, held))
                stragglers.add(acking)
                acking.add_done_callback(stragglers.discard)

    app.agent(topic, name=f"alur-{name}-handler")(consume)
    return app


class _InOrderAcks:
    """Acks a partition's events in offset order, each once it is committed. A straggler's
    event (alur.runtime.processing: its partner is slow) is committed after events that came
    later; those are acked only after it, so the offset Kafka keeps never passes an event
    whose effects are not committed (a restart sees them again, as duplicates). faust's own
    bookkeeping of acks out of order is not relied on: it can step over a gap of one."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._queues: dict[Any, deque[list[Any]]] = {}  # tp -> [event, committed] in order
        self._entries: dict[int, list[Any]] = {}

    def add(self, events: Sequence[Any]) -> None:
        for e in events:
            entry = [e, False]
            self._queues.setdefault(e.message.tp, deque()).append(entry)
            self._entries[id(e)] = entry

    async def done(self, events: Sequence[Any]) -> None:
        tps = set()
        for e in events:
            entry = self._entries.pop(id(e), None)
            if entry is not None:
                entry[1] = True
                tps.add(e.message.tp)
        for tp in tps:
            queue = self._queues[tp]
            while queue and queue[0][1]:
                await self._stream.ack(queue.popleft()[0])


def _exit(message: str, exc_info: bool = False) -> NoReturn:
    log.critical(message, exc_info=exc_info)
    logging.shutdown()
    os._exit(EXIT_CORE_FAILED)


async def _serve(definition: ServiceDefinition, settings: Settings, runtime: _Runtime) -> None:
    """Build the service's parts, open the gate for the agent, run the relay and extras."""
    name = definition.name
    watchdog = runtime.watchdog
    pool = await connect_pool(settings.pg_dsn, name, settings.pg_pool_size)
    producer = new_producer(settings.kafka_bootstrap)
    await producer.start()
    context = Context(name, settings, pool)
    parts = await definition.build(context)
    timers = parts.wiring.timers()
    background = list(parts.background)
    if parts.app is not None and parts.port is not None:
        background.append(embedded_server(parts.app, settings.listen_host, parts.port,
                                          settings.log_level))
    metrics.initialise(metrics.DEAD_LETTERS, *((name, t) for t in definition.subscriptions))
    runtime.processor = BatchProcessor(
        name, parts.wiring.handler(), context.new_uow,
        attempts=settings.retry_attempts, backoff=settings.retry_backoff,
        progress=runtime.progressed, patience=settings.partner_patience,
        straggler_after=settings.straggler_after)
    outbox = PostgresOutbox(pool)
    relay = OutboxRelay(name, name, settings.pg_dsn, outbox, producer,
                        batch=settings.relay_batch, interval=settings.relay_interval,
                        retention=settings.outbox_retention, watchdog=watchdog,
                        renew=lambda: new_producer(settings.kafka_bootstrap))

    async def database() -> str:
        await pool.fetchval("SELECT 1")
        return "answers"

    async def broker() -> str:
        client = relay.producer.client
        await client.fetch_all_metadata()
        return f"{len(client.cluster.brokers())} broker(s)"

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
                                        checks, watchdog)
    runtime.ready.set()
    log.info("%s ready: consuming %s", name, ", ".join(definition.subscriptions))
    try:
        await asyncio.gather(
            relay.run(), sample_outbox(name, outbox, settings.sample_interval),
            _sample_lag(name, runtime, settings.sample_interval),
            _enforce(name, watchdog),
            *(job() for job in background),
            *([_fire_timers(name, timers, pool, settings.timer_interval, watchdog)]
              if timers else []))
    except asyncio.CancelledError:  # a clean stop (SIGTERM): let go of everything in order
        await _close(operations.cleanup(), *([parts.close()] if parts.close else []),
                     relay.producer.stop(), pool.close())
        raise


async def _close(*steps: Awaitable[Any], timeout: float = 10.0) -> None:
    """Run clean-up steps in order, each bounded: a stop must not hang on a lost connection."""
    for step in steps:
        try:
            await asyncio.wait_for(step, timeout)
        except Exception as exc:
            log.warning("clean-up step failed: %s", exc)


async def _enforce(service: str, watchdog: Watchdog, interval: float = 1.0) -> None:
    """Exit for the supervisor once a core loop has been stuck for `wedged_after` seconds."""
    while True:
        await asyncio.sleep(interval)
        wedged = watchdog.wedged()
        if wedged:
            _exit(f"{service} is wedged, exiting for its supervisor: " + "; ".join(
                f"{loop} {why}" for loop, why in sorted(wedged.items())))


async def _fire_timers(service: str, fire: FireTimers, pool: asyncpg.Pool,
                       interval: float, watchdog: Watchdog, idle: float = TIMERS_IDLE) -> None:
    """Fire due timers, one transaction per round, and sleep until the next is due (see
    alur.runtime.alarm): at least `interval` after a round that fired nothing (what stays
    due is held by another replica, or its partner is down), at most `idle`. Replicas share
    the table: each takes the due rows no other holds."""
    fired = metrics.Children(metrics.TIMERS_FIRED, service)
    clock = alarm.TIMERS = alarm.Alarm()

    finish = getattr(fire, "finish", None)  # timers whose partner calls follow the round

    async def round_() -> int:
        try:
            with metrics.collecting() as committed:
                async with PostgresUnitOfWork(pool, service) as uow:
                    timers = await fire(uow, datetime.now(UTC))
        except ConcurrencyConflict as exc:  # the consumer wrote the same order: next round
            log.info("%s: timers wait a round: %s", service, exc)
            return 0
        for callback in committed:
            callback()
        if finish is not None:
            timers += await finish(lambda: PostgresUnitOfWork(pool, service))
        for timer in timers:
            fired(timer.kind).inc()
        return len(timers)

    while True:
        try:
            next_due = await pool.fetchval("SELECT min(due_at) FROM timers")
            now = datetime.now(UTC)
            if next_due is not None and next_due <= now:
                if await round_():
                    watchdog.ok("timers")
                    continue  # more may be due at once
                wait = interval
            else:
                wait = idle if next_due is None else min(
                    idle, (next_due - now).total_seconds())
            watchdog.ok("timers")
        except DATABASE_ERRORS as exc:
            log.warning("cannot fire timers: %s", exc)
            watchdog.failed("timers", f"cannot fire timers: {exc}")
            wait = interval
        await clock.sleep(wait, at_least=min(wait, interval))


async def _sample_lag(service: str, runtime: _Runtime, interval: float) -> None:
    """Consumer lag per partition; a partition that moved to another replica is dropped. A
    replica with lag that has taken nothing for `wedged_after` seconds has a stalled consumer
    (seen after broker restarts): the watchdog hears of it."""
    lag = metrics.CONSUMER_LAG
    assigned = metrics.ASSIGNED_PARTITIONS.labels(service)
    shown: set[tuple[str, int]] = set()
    watchdog = runtime.watchdog
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
            behind = sum(lags.values())
            idle = time.monotonic() - runtime.last_batch
            if behind and idle > watchdog.wedged_after / 2:
                watchdog.failed("consumer-fetch", f"{behind} message(s) behind, nothing "
                                f"taken for {idle:.0f}s")
            else:
                watchdog.ok("consumer-fetch")
        await asyncio.sleep(interval)


class _Recorder:
    """Metric children resolved once per label set, not per message."""

    def __init__(self, service: str) -> None:
        self._consumed = metrics.Children(metrics.EVENTS_CONSUMED, service)
        self._dead_letters = metrics.Children(metrics.DEAD_LETTERS, service)
        self._seconds = metrics.BATCH_SECONDS.labels(service)
        self._size = metrics.BATCH_SIZE.labels(service)

    def batch(self, size: int, seconds: float, results: list[Result]) -> None:
        self._seconds.observe(seconds)
        self._size.observe(size)
        for r in results:
            self._consumed(r.message.topic, r.event_type or "undecodable", r.outcome).inc()
            if r.outcome in ("dead_lettered", "refused"):
                self._dead_letters(r.message.topic).inc()


def run_service(definition: ServiceDefinition, settings: Settings) -> None:
    """Prepare the schema and topics, then run the faust worker until SIGTERM/SIGINT, on
    uvloop: its transports write to sockets in C, where the profiles of the services under
    load spent a third of their time in asyncio's."""
    mode.loop.use("uvloop")
    asyncio.run(prepare(definition, settings))
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_app(definition, settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True,
                          logging_config=logging_config(definition.name, settings.log_level))
    # faust's terminal spinner writes cursor escapes into the log and turns the root logger to
    # DEBUG so that it can spin on every record; JSON logs want neither.
    worker.spinner = None
    worker.execute_from_commandline()
