"""The shop-facing HTTP API of the orders service (FastAPI).

Every route needs a shop's API key (`Authorization: Bearer`); shops registered with a signing
secret also sign each request. POSTs take an `Idempotency-Key`. A shop sees only its own
orders and webhooks: anyone else's answer 404. Errors are RFC 9457 problem+json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Depends, FastAPI, Query

from alur.runtime.aggregate import Decider
from alur.runtime.egress import EgressPolicy
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.slice import Slice
from schemas.envelope import now
from services.orders.api import customers, orders, pos, problems, webhooks
from services.orders.api.orders import AUTH, Observe
from services.orders.api.problems import responses
from services.orders.api.security import BodyLimit, Caller, Limits, RateLimiter, authenticator
from services.orders.api.writes import Writes
from services.orders.decider import decider as orders_decider
from services.orders.domain import OrderState
from services.orders.intake import Intake
from services.orders.reports import report_on
from services.orders.retention import customer_report
from services.orders.shops import ShopRegistry

DESCRIPTION = __doc__


@dataclass(frozen=True)
class ApiConfig:
    body_limit: int = 262_144
    rate_per_second: float = 50.0
    burst: int = 100
    signature_tolerance: float = 300.0
    idempotency_ttl: float = 86_400.0
    return_window_days: float = 30.0
    loyalty_expiry_days: float = 365.0
    identity_pepper: str = "alur-local-identity-pepper"
    webhook_rotation_overlap: float = 86_400.0
    # Which webhook URLs a shop may register (alur.runtime.egress).
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # The orders' decisions under the shop's policy: the API folds an order's stream and
    # keeps its deadlines (auto-completion, stuck) in step with what it records by them.
    decider: Decider[OrderState] = field(default_factory=orders_decider)


def create_app(pool: asyncpg.Pool, new_uow: Callable[[], PostgresUnitOfWork],
               config: ApiConfig, observe: Observe = lambda *_: None) -> FastAPI:
    # Each operation is named by its handler (`place_order`), not FastAPI's default of the
    # name, path and method run together (`place_order_v1_orders_post`): the names client
    # generators turn into method names.
    app = FastAPI(title="Alur orders API", version="1.0.0", description=DESCRIPTION,
                  generate_unique_id_function=lambda route: route.name)
    problems.install(app)
    problems.publish(app)
    app.add_middleware(BodyLimit, limit=config.body_limit)
    registry = ShopRegistry(pool)
    limiter = RateLimiter()
    authenticate = authenticator(
        registry.authenticate, limiter,
        Limits(config.rate_per_second, config.burst, config.signature_tolerance))
    writes = Writes(new_uow, config.idempotency_ttl)
    authenticated = Depends(authenticate)
    # The one way orders are placed; the Kafka intake (kafka_intake.py) takes it from here.
    app.state.intake = Intake(registry, writes, observe, config.decider,
                              timedelta(days=config.loyalty_expiry_days), config.identity_pepper)
    app.state.limiter = limiter
    app.include_router(orders.router(new_uow, app.state.intake, writes, authenticate, observe,
                                     config.return_window_days, config.decider))
    app.include_router(customers.router(pool, writes, authenticate, config.loyalty_expiry_days,
                                        config.identity_pepper))
    app.include_router(pos.router(registry, writes, authenticate, observe, config.decider,
                                  config.identity_pepper))
    app.include_router(webhooks.router(pool, writes, authenticate,
                                       config.webhook_rotation_overlap, config.egress))

    @app.get("/v1/reports/sales", tags=["reports"], responses=responses(*AUTH))
    async def sales_report(
        caller: Caller = authenticated,
        placed_from: Annotated[datetime | None, Query(description="Orders placed from.")] = None,
        placed_before: Annotated[datetime | None, Query(description="Placed before.")] = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """The shop's sales: GMV and orders by day, channel and payment method; top products;
        funnel placed -> paid -> delivered -> completed with cancellation and return rates;
        average time to delivery; review ratings."""
        async with pool.acquire() as conn:
            return await report_on(conn, Slice(shop=caller.shop.shop_id, since=placed_from,
                                               until=placed_before))

    @app.get("/v1/reports/customers", tags=["reports"], responses=responses(*AUTH))
    async def customers_report(
        caller: Caller = authenticated,
        placed_from: Annotated[datetime | None, Query(description="Purchases from.")] = None,
        placed_before: Annotated[datetime | None, Query(description="Before.")] = None,
        period: Annotated[Literal["day", "week", "month"], Query(
            description="The period new and returning customers are counted by.")] = "month",
    ) -> dict[str, list[dict[str, Any]]]:
        """The shop's customers: new vs returning per period, repeat-purchase rate, monthly
        cohorts by first purchase with retention per month, median days between orders,
        channel mix and the share of omnichannel customers, the funnel by channel, and loyalty
        points issued, redeemed and expired."""
        async with pool.acquire() as conn:
            return await customer_report(
                conn, Slice(shop=caller.shop.shop_id, since=placed_from, until=placed_before),
                period=period, now=now(), expiry=timedelta(days=config.loyalty_expiry_days))

    return app
