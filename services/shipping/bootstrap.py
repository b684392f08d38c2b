"""Builds the shipping service: books the carrier once the order may ship and follows the
parcel, one carrier step per timer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from alur.runtime.aggregate import Decider, Perform, handler_for, timers_for
from alur.runtime.ports import UnitOfWork
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import (
    DeliveredData,
    DeliveryFailedData,
    Event,
    InTransitData,
    Model,
    OutForDeliveryData,
    PickedUpData,
    ReadyForPickupData,
    ShipmentCreatedData,
    ShippedData,
)
from services.shipping import domain
from services.shipping.carrier import Carrier, SimulatedCourier

SOURCE = "alur/shipping"
PARCEL = {"shipped": ShippedData, "in_transit": InTransitData,
          "out_for_delivery": OutForDeliveryData, "delivered": DeliveredData}


DEFAULT_POLICY = domain.Policy()


def decider(policy: domain.Policy = DEFAULT_POLICY) -> Decider[domain.ShipmentState]:
    return Decider(domain.ShipmentState(), domain.evolve, domain.decide, domain.RELEVANT,
                   domain.OUTCOMES, domain.deadlines_under(policy), domain.on_timer)


DECIDER = decider()


def make_perform(carrier: Carrier, policy: domain.Policy = DEFAULT_POLICY) -> Perform:
    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        if isinstance(command, domain.CreateShipment):
            booking = await carrier.book(command.idempotency_key, command.address,
                                         command.store_id)
            return [ShipmentCreatedData(order_id=command.order_id,
                                        shipment_id=booking.shipment_id,
                                        carrier=booking.carrier,
                                        tracking_number=booking.tracking_number)]
        if isinstance(command, domain.TrackParcel):
            return [await _track(carrier, command, event, policy)]
        raise TypeError(f"unknown command {command!r}")

    return perform


async def _track(carrier: Carrier, command: domain.TrackParcel, event: Event,
                 policy: domain.Policy) -> Model:
    status = await carrier.next_status(command.tracking_number, command.status,
                                       command.failed_attempts, command.address)
    parcel = dict(order_id=command.order_id, shipment_id=command.shipment_id)
    if status in PARCEL:
        return PARCEL[status](**parcel, tracking_number=command.tracking_number)
    if status == "delivery_failed":
        return DeliveryFailedData(**parcel, tracking_number=command.tracking_number,
                                  reason="nobody home",
                                  next_attempt_at=event.time + policy.step_after)
    assert command.store_id is not None
    store = command.store_id
    if status == "ready_for_pickup":
        return ReadyForPickupData(**parcel, store_id=store)
    if status == "picked_up":
        return PickedUpData(**parcel, store_id=store)
    raise ValueError(f"carrier answered an unknown status {status!r}")


def policy_of(settings: Settings) -> domain.Policy:
    return domain.Policy(timedelta(seconds=settings.carrier_pickup_after),
                         timedelta(seconds=settings.carrier_step_after))


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    policy = policy_of(settings)
    chosen = decider(policy)
    perform = make_perform(SimulatedCourier(), policy)
    return ServiceParts(handler=handler_for(chosen, source=SOURCE, perform=perform),
                        timers=timers_for(chosen, source=SOURCE, perform=perform))


DEFINITION = ServiceDefinition(
    name="shipping", subscriptions=("orders", "inventory", "payments"), migrations=None,
    build=build)
