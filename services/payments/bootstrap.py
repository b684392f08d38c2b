"""Builds the payments service: charges, bank transfers and refunds through the gateway."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from alur.runtime import metrics
from alur.runtime.aggregate import Decider, Perform, compensations, handler_for, timers_for
from alur.runtime.http import embedded_server
from alur.runtime.ports import UnitOfWork
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import (
    Event,
    Model,
    PaymentConfirmedData,
    PaymentFailedData,
    PaymentPendingData,
    PaymentRequestWithdrawnData,
    RefundIssuedData,
    TransferReturnedData,
    now,
)
from services.payments import callbacks, domain
from services.payments.gateway import Gateway, HttpGateway

SOURCE = "alur/payments"
log = logging.getLogger("alur.payments")
# Label values must stay a small set: a gateway's free-text reason is counted as "other".
DECLINE_REASONS = frozenset({"card_declined", "declined", "insufficient_funds", "gateway_timeout",
                             "card_expired", "fraud_suspected"})
_declines = metrics.Children(metrics.PAYMENT_DECLINES)


def count_declines(events: Sequence[Event]) -> None:
    for e in events:
        if e.type == "PaymentFailed":
            _declines(e.data.reason if e.data.reason in DECLINE_REASONS else "other").inc()


DECIDER = Decider(domain.PaymentState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES, domain.deadlines, domain.on_timer, opens=domain.OPENS,
                  precede=domain.PRECEDE, refuse=domain.refuse,
                  count=compensations("payments", frozenset({"RefundIssued"}), count_declines))


def make_perform(gateway: Gateway, callback_url: str, transfer_ttl: float,
                 request_ttl: float = 900.0) -> Perform:
    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        if isinstance(command, domain.Charge | domain.OpenTransfer | domain.RequestPayment) \
                and lapsed(command):
            log.warning("not paying %s: its stock reservation lapsed", command.order_id)
            return []
        if isinstance(command, domain.Charge):
            result = await gateway.charge(command.idempotency_key, command.order_id,
                                          command.amount, command.instruction.token)
            if result.succeeded:
                return [PaymentConfirmedData(
                    order_id=command.order_id, payment_id=command.payment_id,
                    method=command.instruction.method, amount=command.amount,
                    gateway_reference=result.charge_id)]
            return [PaymentFailedData(order_id=command.order_id, payment_id=command.payment_id,
                                      amount=command.amount, reason=result.reason or "declined")]
        if isinstance(command, domain.OpenTransfer):
            # From the event that opened it, not the clock: a retry after a timeout must send
            # the gateway the very request it may already have, or the same idempotency key
            # with another expiry is refused and the order never gets its account.
            expires_at = event.time + timedelta(seconds=transfer_ttl)
            account = await gateway.open_transfer(
                command.idempotency_key, command.order_id, command.amount, expires_at,
                callback_url + callbacks.CALLBACK_PATH, command.bank)
            return [PaymentPendingData(order_id=command.order_id, payment_id=command.payment_id,
                                       amount=command.amount, virtual_account=account,
                                       expires_at=expires_at, bank=command.bank)]
        if isinstance(command, domain.RequestPayment):
            expires_at = event.time + timedelta(seconds=request_ttl)  # as for OpenTransfer
            request = await gateway.request_payment(
                command.idempotency_key, command.order_id, command.amount, command.method,
                expires_at, callback_url + callbacks.CALLBACK_PATH, command.token,
                command.wallet)
            return [domain.requested(command, request.request_id, expires_at,
                                     request.qr_string, request.wallet)]
        if isinstance(command, domain.WithdrawRequest):
            if not await gateway.withdraw(command.request_id):
                return []  # paid already: the payment's callback brings it, paid back late
            return [PaymentRequestWithdrawnData(order_id=command.order_id,
                                                payment_id=command.payment_id,
                                                request_id=command.request_id)]
        if isinstance(command, domain.SettleCharge):
            captured = await gateway.captures(command.order_id)
            confirmed = domain.settle_charge(command, [(c.transfer_id, c.amount)
                                                       for c in captured])
            if confirmed is None:
                return []
            log.warning("order %s was cancelled, yet the gateway had captured %s %s: paying it"
                        " back", command.order_id, confirmed.amount.amount,
                        confirmed.amount.currency)
            refund_id = await gateway.refund(command.refund_key, command.order_id,
                                             confirmed.amount, confirmed.gateway_reference)
            return [confirmed, RefundIssuedData(order_id=command.order_id, refund_id=refund_id,
                                                amount=confirmed.amount, reason="cancelled")]
        if isinstance(command, domain.ReturnTransfer):
            refund_id = await gateway.refund(command.idempotency_key, command.order_id,
                                             command.amount, command.transfer_id)
            return [TransferReturnedData(order_id=command.order_id,
                                         transfer_id=command.transfer_id, amount=command.amount,
                                         refund_id=refund_id, reason=command.reason)]
        if isinstance(command, domain.SettleTransfer):
            received = await (gateway.transfers(command.pay_into)
                              if command.method == "bank_transfer" else
                              gateway.paid(command.pay_into))
            return domain.settle_transfer(command, [(t.transfer_id, t.amount) for t in received])
        if isinstance(command, domain.Refund):
            refund_id = await gateway.refund(command.idempotency_key, command.order_id,
                                             command.amount, command.gateway_reference)
            return [RefundIssuedData(order_id=command.order_id, refund_id=refund_id,
                                     amount=command.amount, reason=command.reason,
                                     return_id=command.return_id)]
        raise TypeError(f"unknown command {command!r}")

    return perform


def lapsed(command: domain.Charge | domain.OpenTransfer | domain.RequestPayment) -> bool:
    return command.reserved_until is not None and now() > command.reserved_until


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    metrics.initialise(metrics.PAYMENT_DECLINES, *((r,) for r in DECLINE_REASONS), ("other",))
    metrics.initialise(metrics.COMPENSATIONS, ("payments", "RefundIssued"))
    gateway = HttpGateway(settings.gateway_url)
    perform = make_perform(gateway, settings.payments_url, settings.bank_transfer_ttl,
                           settings.app_payment_ttl)
    app = callbacks.create_app(
        lambda: PostgresUnitOfWork(pool, "payments"), DECIDER, perform, source=SOURCE,
        secret=settings.gateway_callback_secret.get_secret_value(),
        tolerance=settings.signature_tolerance)
    return ServiceParts(
        handler=handler_for(DECIDER, source=SOURCE, perform=perform, concurrent=True),
        timers=timers_for(DECIDER, source=SOURCE, perform=perform, outside=True),
        background=[embedded_server(app, settings.listen_host, settings.payments_port,
                                    settings.log_level)],
        close=gateway.close)


DEFINITION = ServiceDefinition(
    name="payments", subscriptions=("orders", "inventory", "shipping"), migrations=None,
    build=build)
