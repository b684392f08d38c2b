"""Builds the payments service: charges through the gateway once stock is reserved."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from alur.runtime import metrics
from alur.runtime.aggregate import DECLINE_REASONS, Decider, handler_for
from alur.runtime.ports import UnitOfWork
from alur.runtime.processing import Handler
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import Event, Model, PaymentConfirmedData, PaymentFailedData
from services.payments import domain
from services.payments.gateway import Gateway, HttpGateway

SOURCE = "alur/payments"
DECIDER = Decider(domain.PaymentState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES)


def make_handler(gateway: Gateway) -> Handler:
    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        if not isinstance(command, domain.Charge):
            raise TypeError(f"unknown command {command!r}")
        result = await gateway.charge(command.idempotency_key, command.order_id,
                                      command.amount, command.instruction.token)
        if result.succeeded:
            return [PaymentConfirmedData(
                order_id=command.order_id, payment_id=command.payment_id,
                method=command.instruction.method, amount=command.amount,
                gateway_reference=result.charge_id)]
        return [PaymentFailedData(order_id=command.order_id, payment_id=command.payment_id,
                                  amount=command.amount, reason=result.reason or "declined")]

    return handler_for(DECIDER, source=SOURCE, perform=perform)


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    metrics.initialise(metrics.PAYMENT_DECLINES, *((r,) for r in DECLINE_REASONS), ("other",))
    metrics.initialise(metrics.COMPENSATIONS, ("payments", "RefundIssued"))
    gateway = HttpGateway(settings.gateway_url)
    return ServiceParts(handler=make_handler(gateway), close=gateway.close)


DEFINITION = ServiceDefinition(
    name="payments", subscriptions=("orders", "inventory"), migrations=None, build=build)
