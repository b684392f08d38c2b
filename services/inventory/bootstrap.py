"""Builds the inventory service: reservations and commits against the stock table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import asyncpg

from alur.runtime import metrics
from alur.runtime.aggregate import Decider, Perform, compensations, handler_for, timers_for
from alur.runtime.http import embedded_server
from alur.runtime.memory import InMemoryUnitOfWork
from alur.runtime.ports import UnitOfWork
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import (
    Event,
    LowStockData,
    Model,
    ReturnLine,
    StockCommittedData,
    StockLine,
    StockRejectedData,
    StockReleasedData,
    StockReservedData,
    StockRestockedData,
    StockTransferReceivedData,
    StockTransferShippedData,
    StockWrittenOffData,
    now,
)
from services.inventory import admin_api, domain
from services.inventory.adapters import BookedStock, InMemoryStock, Stock, StockBook

SOURCE = "alur/inventory"
DECIDER = Decider(domain.ReservationState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES, domain.deadlines, domain.on_timer, opens=domain.OPENS,
                  precede=domain.PRECEDE, refuse=domain.refuse,
                  count=compensations("inventory", frozenset({"StockReleased"})))


def stock_of(uow: UnitOfWork) -> Stock:
    """The stock adapter that writes inside this unit of work's transaction."""
    if isinstance(uow, PostgresUnitOfWork):
        return BookedStock(uow.attached("stock", StockBook), uow.connection)
    if isinstance(uow, InMemoryUnitOfWork):
        return InMemoryStock(uow.state.extra)
    raise TypeError(f"no stock adapter for {type(uow).__name__}")


def make_perform(reservation_ttl: float,
                 stock: Callable[[UnitOfWork], Stock] = stock_of) -> Perform:
    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        if isinstance(command, domain.Reserve):
            location, short = await stock(uow).reserve(
                command.order_id, command.reservation_id, command.lines, command.route)
            if location is None:
                return [StockRejectedData(order_id=command.order_id, short_skus=short)]
            return [StockReservedData(
                order_id=command.order_id, reservation_id=command.reservation_id,
                location=location, lines=list(command.lines),
                expires_at=now() + timedelta(seconds=reservation_ttl)),
                *await low_stock(stock(uow), location, command.lines)]
        if isinstance(command, domain.Sell):
            recounted = await stock(uow).sell(command.order_id, command.reservation_id,
                                              command.location, command.lines)
            return [StockCommittedData(order_id=command.order_id,
                                       reservation_id=command.reservation_id,
                                       location=command.location, recounted=recounted),
                    *await low_stock(stock(uow), command.location, command.lines)]
        if isinstance(command, domain.Release):
            await stock(uow).release(command.order_id)
            return [StockReleasedData(order_id=command.order_id,
                                      reservation_id=command.reservation_id,
                                      reason=command.reason)]
        if isinstance(command, domain.Commit):
            await stock(uow).commit(command.order_id)
            return [StockCommittedData(order_id=command.order_id,
                                       reservation_id=command.reservation_id,
                                       location=command.location)]
        if isinstance(command, domain.Restock):
            return await restock(stock(uow), command)
        if isinstance(command, domain.ShipTransfer):
            await stock(uow).ship_transfer(command.order_id, command.transfer_id,
                                           command.from_location, command.to_location,
                                           command.lines)
            return [StockTransferShippedData(
                order_id=command.order_id, transfer_id=command.transfer_id,
                from_location=command.from_location, to_location=command.to_location,
                lines=list(command.lines))]
        if isinstance(command, domain.ReceiveTransfer):
            await stock(uow).receive_transfer(command.transfer_id, command.location)
            return [StockTransferReceivedData(
                order_id=command.order_id, transfer_id=command.transfer_id,
                location=command.location, lines=list(command.lines))]
        if isinstance(command, domain.CollectTransfer):
            await stock(uow).collect_transfer(command.transfer_id, command.location)
            return [StockCommittedData(order_id=command.order_id,
                                       reservation_id=command.transfer_id,
                                       location=command.location)]
        raise TypeError(f"unknown command {command!r}")

    return perform


async def restock(stock: Stock, command: domain.Restock) -> list[Model]:
    """Put a return's units back on the shelf, and record the ones written off."""
    back = [x for x in command.lines if x.restock == "stock"]
    gone = [x for x in command.lines if x.restock == "write_off"]
    if back:
        await stock.restock(command.location, back)
    if command.ends_transfer is not None:
        await stock.end_transfer(command.ends_transfer)
    done: list[Model] = []
    if back:
        done.append(StockRestockedData(order_id=command.order_id, return_id=command.return_id,
                                       location=command.location, lines=_stock_lines(back)))
    if gone:
        done.append(StockWrittenOffData(order_id=command.order_id, return_id=command.return_id,
                                        location=command.location, lines=_stock_lines(gone)))
    return done


def _stock_lines(lines: Sequence[ReturnLine]) -> list[StockLine]:
    return [StockLine(sku=x.sku, quantity=x.quantity) for x in lines]


async def low_stock(stock: Stock, location: str,
                    lines: Sequence[StockLine]) -> list[LowStockData]:
    """LowStock for each SKU these units just took under its threshold at `location`."""
    return [LowStockData(sku=sku, location=location, available=available, threshold=threshold)
            for sku, available, threshold in await stock.below_threshold(location, lines)]


async def read_stock(uow: UnitOfWork, events: Sequence[Event]) -> None:
    """A batch's stock rows, read (and locked) in one statement before its orders reserve."""
    skus = [line.sku for e in events if e.type == "OrderPlaced" for line in e.data.lines]
    if skus:
        await stock_of(uow).preload(skus)


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    metrics.initialise(metrics.COMPENSATIONS, ("inventory", "StockReleased"))
    perform = make_perform(settings.reservation_ttl)
    admin = admin_api.create_app(pool, settings.inventory_admin_token.get_secret_value())
    return ServiceParts(handler=handler_for(DECIDER, source=SOURCE, perform=perform,
                                            prepare=read_stock),
                        timers=timers_for(DECIDER, source=SOURCE, perform=perform),
                        background=[embedded_server(admin, settings.listen_host,
                                                    settings.inventory_port, settings.log_level)])


DEFINITION = ServiceDefinition(
    name="inventory", subscriptions=("orders", "payments", "shipping"),
    migrations=Path(__file__).parent / "migrations", build=build)
