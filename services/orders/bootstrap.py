"""Builds the orders service from settings: consumer handler plus the HTTP API."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import uvicorn

from alur.runtime import metrics
from alur.runtime.aggregate import Decider, handler_for
from alur.runtime.db import every
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import Event
from services.orders import domain
from services.orders.api import ApiConfig, create_app
from services.orders.api.writes import prune

SOURCE = "alur/orders"
DECIDER = Decider(domain.OrderState(), domain.evolve, domain.decide, domain.RELEVANT)
log = logging.getLogger("alur.orders")
PRUNE_API_RECORDS_EVERY = 300.0  # seconds
_transitions = metrics.Children(metrics.ORDER_TRANSITIONS)
_stage_seconds = metrics.Children(metrics.ORDER_STAGE_SECONDS)
_since_placed = metrics.Children(metrics.ORDER_SINCE_PLACED_SECONDS)


def observe_order(before: domain.OrderState, after: domain.OrderState, event: Event) -> None:
    """Order funnel metrics: each state entered, how long the previous one lasted."""
    if after.status is None or after.status == before.status:
        return
    _transitions(event.channel, after.status).inc()
    if before.since is not None and after.since is not None:
        _stage_seconds(after.status).observe(max(0.0, (after.since - before.since).total_seconds()))
    if after.placed_at is not None and after.since is not None:
        _since_placed(after.status).observe(
            max(0.0, (after.since - after.placed_at).total_seconds()))


handle = handler_for(DECIDER, source=SOURCE, observe=observe_order)


async def count_stuck_orders(pool: asyncpg.Pool, stuck_after: float) -> int:
    """Orders not settled whose stream saw nothing for `stuck_after` seconds.

    Scans the orders event store; fine at this scale, to be replaced by the OrderStuck timer."""
    return int(await pool.fetchval(
        "SELECT count(*) FROM (SELECT max(recorded_at) AS last, bool_or(type = ANY($1)) AS settled"
        " FROM events GROUP BY stream_id) s"
        " WHERE NOT settled AND last < now() - make_interval(secs => $2)",
        list(domain.SETTLED_EVENTS), stuck_after))


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the faust worker: the worker owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    def new_uow() -> PostgresUnitOfWork:
        return PostgresUnitOfWork(pool, "orders")

    app = create_app(pool, new_uow, api_config(settings), observe=observe_order)
    server = _EmbeddedServer(uvicorn.Config(
        app, host=settings.listen_host, port=settings.api_port, log_level=settings.log_level,
        access_log=False, lifespan="off"))

    async def serve_api() -> None:
        try:
            await server.serve()
        finally:
            server.should_exit = True

    stuck = metrics.ORDERS_STUCK.labels("orders")
    metrics.initialise(metrics.COMPENSATIONS, ("orders", "OrderCancelled"))

    async def count_stuck() -> None:
        stuck.set(await count_stuck_orders(pool, settings.stuck_after))

    async def watch_stuck_orders() -> None:
        await every(settings.stuck_check_interval, count_stuck, "count stuck orders", log)

    async def prune_api_records() -> None:
        await every(PRUNE_API_RECORDS_EVERY, lambda: prune(
            pool.execute, settings.idempotency_ttl, settings.signature_tolerance),
            "prune idempotency keys and signatures", log)

    return ServiceParts(handler=handle,
                        background=[serve_api, watch_stuck_orders, prune_api_records])


def api_config(settings: Settings) -> ApiConfig:
    return ApiConfig(
        body_limit=settings.api_body_limit, rate_per_second=settings.api_rate_per_second,
        burst=settings.api_burst, signature_tolerance=settings.signature_tolerance,
        idempotency_ttl=settings.idempotency_ttl,
        return_window_days=settings.return_window_days)


DEFINITION = ServiceDefinition(
    name="orders", subscriptions=("inventory", "payments", "shipping"),
    migrations=Path(__file__).parent / "migrations", build=build, ready_needs_partitions=False)
