"""Builds the inventory service: reservations and commits against the stock table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from alur.runtime import metrics
from alur.runtime.aggregate import Commands, Decider, Wiring, compensations
from alur.runtime.ports import UnitOfWork
from alur.runtime.worker import Context, ServiceDefinition, ServiceParts
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
from services.inventory.adapters import Stock, postgres_stock

SOURCE = "alur/inventory"
DECIDER = Decider(domain.ReservationState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES, domain.deadlines, domain.on_timer, opens=domain.OPENS,
                  precede=domain.PRECEDE, refuse=domain.refuse,
                  count=compensations("inventory", frozenset({"StockReleased"})))


def commands(reservation_ttl: float, stock: Callable[[UnitOfWork], Stock]) -> Commands:
    """The inventory service's {command: handler} table: each moves stock inside the unit of
    work's transaction, through the adapter `stock` gives for it (the PostgreSQL one in the
    service, the in-memory one over in-memory units of work)."""

    async def reserve(uow: UnitOfWork, command: domain.Reserve, event: Event) -> Sequence[Model]:
        location, short = await stock(uow).reserve(
            command.order_id, command.reservation_id, command.lines, command.route)
        if location is None:
            return [StockRejectedData(order_id=command.order_id, short_skus=short)]
        return [StockReservedData(
            order_id=command.order_id, reservation_id=command.reservation_id,
            location=location, lines=list(command.lines),
            expires_at=now() + timedelta(seconds=reservation_ttl)),
            *await low_stock(stock(uow), location, command.lines)]

    async def sell(uow: UnitOfWork, command: domain.Sell, event: Event) -> Sequence[Model]:
        recounted = await stock(uow).sell(command.order_id, command.reservation_id,
                                          command.location, command.lines)
        return [StockCommittedData(order_id=command.order_id,
                                   reservation_id=command.reservation_id,
                                   location=command.location, recounted=recounted),
                *await low_stock(stock(uow), command.location, command.lines)]

    async def release(uow: UnitOfWork, command: domain.Release, event: Event) -> Sequence[Model]:
        await stock(uow).release(command.order_id)
        return [StockReleasedData(order_id=command.order_id,
                                  reservation_id=command.reservation_id, reason=command.reason)]

    async def commit(uow: UnitOfWork, command: domain.Commit, event: Event) -> Sequence[Model]:
        await stock(uow).commit(command.order_id)
        return [StockCommittedData(order_id=command.order_id,
                                   reservation_id=command.reservation_id,
                                   location=command.location)]

    async def restock_return(uow: UnitOfWork, command: domain.Restock,
                             event: Event) -> Sequence[Model]:
        return await restock(stock(uow), command)

    async def ship_transfer(uow: UnitOfWork, command: domain.ShipTransfer,
                            event: Event) -> Sequence[Model]:
        await stock(uow).ship_transfer(command.order_id, command.transfer_id,
                                       command.from_location, command.to_location, command.lines)
        return [StockTransferShippedData(
            order_id=command.order_id, transfer_id=command.transfer_id,
            from_location=command.from_location, to_location=command.to_location,
            lines=list(command.lines))]

    async def receive_transfer(uow: UnitOfWork, command: domain.ReceiveTransfer,
                               event: Event) -> Sequence[Model]:
        await stock(uow).receive_transfer(command.transfer_id, command.location)
        return [StockTransferReceivedData(
            order_id=command.order_id, transfer_id=command.transfer_id,
            location=command.location, lines=list(command.lines))]

    async def collect_transfer(uow: UnitOfWork, command: domain.CollectTransfer,
                               event: Event) -> Sequence[Model]:
        await stock(uow).collect_transfer(command.transfer_id, command.location)
        return [StockCommittedData(order_id=command.order_id,
                                   reservation_id=command.transfer_id,
                                   location=command.location)]

    return {domain.Reserve: reserve, domain.Sell: sell, domain.Release: release,
            domain.Commit: commit, domain.Restock: restock_return,
            domain.ShipTransfer: ship_transfer, domain.ReceiveTransfer: receive_transfer,
            domain.CollectTransfer: collect_transfer}


def wiring(reservation_ttl: float,
           stock: Callable[[UnitOfWork], Stock]) -> Wiring[domain.ReservationState]:
    async def read_stock(uow: UnitOfWork, events: Sequence[Event]) -> None:
        """A batch's stock rows, read (and locked) in one statement before its orders
        reserve."""
        skus = [line.sku for e in events if e.type == "OrderPlaced" for line in e.data.lines]
        if skus:
            await stock(uow).preload(skus)

    return Wiring(DECIDER, SOURCE, commands(reservation_ttl, stock), prepare=read_stock)


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


async def build(context: Context) -> ServiceParts:
    settings = context.settings
    metrics.initialise(metrics.COMPENSATIONS, ("inventory", "StockReleased"))
    admin = admin_api.create_app(context.pool,
                                 settings.inventory_admin_token.get_secret_value())
    return ServiceParts(wiring(settings.reservation_ttl, postgres_stock), app=admin,
                        port=settings.inventory_port)


DEFINITION = ServiceDefinition(
    name="inventory", subscriptions=("orders", "payments", "shipping"),
    migrations=Path(__file__).parent / "migrations", build=build)
