"""Builds the shipping service: books the carrier once the order may ship, stops the parcel of
a cancelled order (the booking cancelled, or the parcel recalled), books returns, and records
the carriers' reports from their webhook."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from alur.runtime import keyring, metrics
from alur.runtime.aggregate import Commands, Decider, Wiring
from alur.runtime.ports import UnitOfWork
from alur.runtime.worker import Context, ServiceDefinition, ServiceParts
from alur.settings import CARRIERS, Settings
from schemas import (
    Event,
    Model,
    ReturnShipmentCreatedData,
    ShipmentCreatedData,
    ShipmentRecalledData,
)
from schemas.orders import Address, Sealed
from services.shipping import domain, webhooks
from services.shipping.carrier import Carrier, HttpCarrier

SOURCE = "alur/shipping"
log = logging.getLogger("alur.shipping")
DECIDER = Decider(domain.ShipmentState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES, opens=domain.OPENS, refuse=domain.refuse)


def commands(carriers: Mapping[str, Carrier],
             open_sealed: keyring.OpenSealed = keyring.no_keyring) -> Commands:
    """The shipping service's {command: handler} table: each is a call to a carrier."""

    async def street(address: Address | None, sealed: Sealed | None) -> Address | None:
        """The address with its street opened from the customer's sealed personal data."""
        if address is None or address.line1 is not None or sealed is None:
            return address
        try:
            line1 = (await open_sealed(sealed)).get("line1")
        except keyring.Erased:
            line1 = None
        # A customer forgotten while a parcel was still to collect: the carrier is told so.
        return address.model_copy(update={"line1": line1 or "(erased)"})

    async def create(uow: UnitOfWork, command: domain.CreateShipment,
                     event: Event) -> Sequence[Model]:
        booking = await carriers[command.carrier].book(
            command.idempotency_key, command.order_id, command.service,
            await street(command.address, command.personal), command.store_id)
        return [ShipmentCreatedData(order_id=command.order_id, shipment_id=booking.shipment_id,
                                    carrier=booking.carrier,
                                    tracking_number=booking.tracking_number)]

    async def cancel(uow: UnitOfWork, command: domain.CancelShipment,
                     event: Event) -> Sequence[Model]:
        stopped = await carriers[command.carrier].cancel(command.tracking_number)
        if stopped == "recalled":
            return [ShipmentRecalledData(
                order_id=command.order_id, shipment_id=command.shipment_id,
                carrier=command.carrier, tracking_number=command.tracking_number,
                parcel_status=command.parcel_status)]
        if stopped == "arrived":
            log.error("order %s was cancelled after %s delivered parcel %s; the customer has "
                      "the goods", command.order_id, command.carrier, command.tracking_number)
        return []

    async def book_return(uow: UnitOfWork, command: domain.BookReturn,
                          event: Event) -> Sequence[Model]:
        booking = await carriers[command.carrier].book(
            command.idempotency_key, command.order_id, "return",
            await street(command.address, command.personal), command.store_id)
        return [ReturnShipmentCreatedData(
            order_id=command.order_id, return_id=command.return_id,
            shipment_id=booking.shipment_id, carrier=booking.carrier,
            tracking_number=booking.tracking_number)]

    return {domain.CreateShipment: create, domain.CancelShipment: cancel,
            domain.BookReturn: book_return}


def wiring(carriers: Mapping[str, Carrier],
           open_sealed: keyring.OpenSealed = keyring.no_keyring) -> Wiring[domain.ShipmentState]:
    return Wiring(DECIDER, SOURCE, commands(carriers, open_sealed), partner_calls=True)


def webhook_url(settings: Settings, carrier: str) -> str:
    return settings.shipping_url + webhooks.EVENTS_PATH.format(carrier=carrier)


async def build(context: Context) -> ServiceParts:
    settings = context.settings
    metrics.initialise(metrics.CARRIER_REPORTS, *((c, "recorded") for c in CARRIERS))
    carriers = {name: HttpCarrier(name, settings.carrier_url(name), webhook_url(settings, name))
                for name in CARRIERS}
    app = webhooks.create_app(context.new_uow, DECIDER, source=SOURCE,
                              secrets={name: settings.carrier_secret(name) for name in CARRIERS},
                              tolerance=settings.signature_tolerance)

    async def close() -> None:
        for carrier in carriers.values():
            await carrier.close()

    return ServiceParts(wiring(carriers, keyring.key_loader(context.pool).open), app=app,
                        port=settings.shipping_port, close=close)


DEFINITION = ServiceDefinition(
    name="shipping", subscriptions=("orders",), migrations=None,
    build=build)
