"""Builds the orders service from settings: consumer handler plus the HTTP API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg
import uvicorn

from alur.runtime.aggregate import Decider, handler_for
from alur.runtime.ports import StoredEvent
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from services.orders import domain
from services.orders.api import OrderView, TimelineEntry, create_app

SOURCE = "alur/orders"
DECIDER = Decider(domain.OrderState(), domain.evolve, domain.decide, domain.RELEVANT)
handle = handler_for(DECIDER, source=SOURCE)


def order_view(stream: list[StoredEvent]) -> OrderView | None:
    if not stream:
        return None
    placed = stream[0].event
    state = DECIDER.fold([s.event for s in stream])
    return OrderView(
        order_id=placed.subject, shop_id=placed.shop_id, status=state.status or "unknown",
        total_amount=placed.data.total.amount, currency=placed.data.total.currency,
        timeline=[TimelineEntry(version=s.version, type=s.event.type, source=s.event.source,
                                time=s.event.time, event_id=s.event.id) for s in stream],
    )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the faust worker: the worker owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    def new_uow() -> PostgresUnitOfWork:
        return PostgresUnitOfWork(pool, "orders")

    async def load_order(order_id: str) -> OrderView | None:
        async with new_uow() as uow:
            return order_view(await uow.load(order_id))

    app = create_app(new_uow, load_order)
    server = _EmbeddedServer(uvicorn.Config(
        app, host=settings.listen_host, port=settings.api_port, log_level=settings.log_level,
        access_log=False, lifespan="off"))

    async def serve_api() -> None:
        try:
            await server.serve()
        finally:
            server.should_exit = True

    return ServiceParts(handler=handle, background=[serve_api])


DEFINITION = ServiceDefinition(
    name="orders", subscriptions=("inventory", "payments", "shipping"), migrations=None,
    build=build)
