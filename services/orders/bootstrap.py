"""Builds the orders service from settings: consumer handler plus the HTTP API."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx

from alur.runtime import metrics
from alur.runtime.aggregate import Wiring
from alur.runtime.db import every
from alur.runtime.egress import EgressPolicy
from alur.runtime.worker import Context, ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import Event
from services.orders import domain, webhook_delivery
from services.orders.api import ApiConfig, create_app
from services.orders.api.writes import prune
from services.orders.decider import DEFAULT_POLICY, decider
from services.orders.kafka_intake import KafkaIntake

SOURCE = "alur/orders"


DECIDER = decider()
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



def wiring(policy: domain.Policy = DEFAULT_POLICY) -> Wiring[domain.OrderState]:
    # No commands: the orders service only decides (and its API writes).
    return Wiring(decider(policy), SOURCE, observe=observe_order)


async def count_stuck_orders(pool: asyncpg.Pool, stuck_after: float) -> int:
    """Orders not settled whose stream saw nothing for `stuck_after` seconds.

    Scans the orders event store; fine at this scale, to be replaced by the OrderStuck timer."""
    return int(await pool.fetchval(
        "SELECT count(*) FROM (SELECT max(recorded_at) AS last, bool_or(type = ANY($1)) AS settled"
        " FROM events GROUP BY stream_id) s"
        " WHERE NOT settled AND last < now() - make_interval(secs => $2)",
        list(domain.SETTLED_EVENTS), stuck_after))


async def build(context: Context) -> ServiceParts:
    settings, pool, new_uow = context.settings, context.pool, context.new_uow
    app = create_app(pool, new_uow, api_config(settings), observe=observe_order)
    # Shops publishing on Kafka are placed through the API's own intake and rate buckets.
    kafka_intake = KafkaIntake(settings.kafka_bootstrap, new_uow, app.state.intake,
                               app.state.limiter, settings.api_rate_per_second,
                               settings.api_burst, settings.api_body_limit)

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

    policy = webhook_delivery.DeliveryPolicy(backoff=settings.webhook_backoff,
                                             max_attempts=settings.webhook_max_attempts)
    # Redirects are never followed: the egress policy checked only the URL registered.
    client = httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False)
    egress = egress_policy(settings)

    async def deliver_webhooks() -> None:
        await webhook_delivery.run(pool, client, policy, egress, settings.webhook_interval)

    return ServiceParts(wiring(policy_of(settings)),
                        app=app, port=settings.api_port,
                        background=[watch_stuck_orders, prune_api_records, deliver_webhooks,
                                    kafka_intake.run],
                        close=client.aclose)


def policy_of(settings: Settings) -> domain.Policy:
    return domain.Policy(complete_after=timedelta(seconds=settings.auto_complete_after),
                         stuck_after=timedelta(seconds=settings.stuck_after),
                         release_after=timedelta(seconds=settings.release_after))


def egress_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy(allow_loopback=settings.egress_allow_loopback)


def api_config(settings: Settings) -> ApiConfig:
    return ApiConfig(egress=egress_policy(settings),
        body_limit=settings.api_body_limit, rate_per_second=settings.api_rate_per_second,
        burst=settings.api_burst, signature_tolerance=settings.signature_tolerance,
        idempotency_ttl=settings.idempotency_ttl,
        return_window_days=settings.return_window_days,
        loyalty_expiry_days=settings.loyalty_expiry_days,
        identity_pepper=settings.identity_pepper.get_secret_value(),
        decider=decider(policy_of(settings)))


DEFINITION = ServiceDefinition(
    name="orders", subscriptions=("inventory", "payments", "shipping"),
    migrations=Path(__file__).parent / "migrations", build=build, ready_needs_partitions=False)
