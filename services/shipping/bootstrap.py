"""Builds the shipping service: books the carrier once paid and follows the parcel."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from alur.runtime.aggregate import Decider, handler_for
from alur.runtime.ports import UnitOfWork
from alur.runtime.processing import Handler
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import DeliveredData, Event, Model, ShipmentCreatedData, ShippedData
from services.shipping import domain
from services.shipping.carrier import Carrier, SimulatedCourier

SOURCE = "alur/shipping"
DECIDER = Decider(domain.ShipmentState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES)


def make_handler(carrier: Carrier) -> Handler:
    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        if isinstance(command, domain.CreateShipment):
            booking = await carrier.book(command.idempotency_key, command.address)
            return [ShipmentCreatedData(order_id=command.order_id,
                                        shipment_id=booking.shipment_id,
                                        carrier=booking.carrier,
                                        tracking_number=booking.tracking_number)]
        if isinstance(command, domain.TrackParcel):
            status = await carrier.next_status(command.tracking_number, command.status)
            parcel = dict(order_id=command.order_id, shipment_id=command.shipment_id,
                          tracking_number=command.tracking_number)
            return [ShippedData(**parcel) if status == "shipped" else DeliveredData(**parcel)]
        raise TypeError(f"unknown command {command!r}")

    return handler_for(DECIDER, source=SOURCE, perform=perform)


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    return ServiceParts(handler=make_handler(SimulatedCourier()))


# Shipping reads its own topic back: the simulated courier's updates travel as events.
DEFINITION = ServiceDefinition(
    name="shipping", subscriptions=("orders", "payments", "shipping"), migrations=None,
    build=build)
