"""Builds the payments service: charges, bank transfers and refunds through the gateway."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from alur.runtime import metrics
from alur.runtime.aggregate import CommandHandler, Commands, Decider, Wiring, compensations
from alur.runtime.ports import UnitOfWork
from alur.runtime.worker import Context, ServiceDefinition, ServiceParts
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


def commands(gateway: Gateway, callback_url: str, transfer_ttl: float,
             request_ttl: float = 900.0) -> Commands:
    """The payments service's {command: handler} table: each carries one command out through
    the gateway."""

    def unless_lapsed(handler: CommandHandler) -> CommandHandler:
        """A payment is not asked for once the order's stock reservation lapsed."""
        async def guarded(uow: UnitOfWork, command: Any, event: Event) -> Sequence[Model]:
            if command.reserved_until is not None and now() > command.reserved_until:
                log.warning("not paying %s: its stock reservation lapsed", command.order_id)
                return []
            return await handler(uow, command, event)
        return guarded

    async def charge(uow: UnitOfWork, command: domain.Charge, event: Event) -> Sequence[Model]:
        result = await gateway.charge(command.idempotency_key, command.order_id,
                                      command.amount, command.instruction.token)
        if result.succeeded:
            return [PaymentConfirmedData(
                order_id=command.order_id, payment_id=command.payment_id,
                method=command.instruction.method, amount=command.amount,
                gateway_reference=result.charge_id)]
        return [PaymentFailedData(order_id=command.order_id, payment_id=command.payment_id,
                                  amount=command.amount, reason=result.reason or "declined")]

    async def open_transfer(uow: UnitOfWork, command: domain.OpenTransfer,
                            event: Event) -> Sequence[Model]:
        # From the event that opened it, not the clock: a retry after a timeout must send the
        # gateway the very request it may already have, or the same idempotency key with
        # another expiry is refused and the order never gets its account.
        expires_at = event.time + timedelta(seconds=transfer_ttl)
        account = await gateway.open_transfer(
            command.idempotency_key, command.order_id, command.amount, expires_at,
            callback_url + callbacks.CALLBACK_PATH, command.bank)
        return [PaymentPendingData(order_id=command.order_id, payment_id=command.payment_id,
                                   amount=command.amount, virtual_account=account,
                                   expires_at=expires_at, bank=command.bank)]

    async def request_payment(uow: UnitOfWork, command: domain.RequestPayment,
                              event: Event) -> Sequence[Model]:
        expires_at = event.time + timedelta(seconds=request_ttl)  # as for open_transfer
        request = await gateway.request_payment(
            command.idempotency_key, command.order_id, command.amount, command.method,
            expires_at, callback_url + callbacks.CALLBACK_PATH, command.token, command.wallet)
        return [domain.requested(command, request.request_id, expires_at, request.qr_string,
                                 request.wallet)]

    async def withdraw(uow: UnitOfWork, command: domain.WithdrawRequest,
                       event: Event) -> Sequence[Model]:
        if not await gateway.withdraw(command.request_id):
            return []  # paid already: the payment's callback brings it, paid back late
        return [PaymentRequestWithdrawnData(order_id=command.order_id,
                                            payment_id=command.payment_id,
                                            request_id=command.request_id)]

    async def settle_charge(uow: UnitOfWork, command: domain.SettleCharge,
                            event: Event) -> Sequence[Model]:
        captured = await gateway.captures(command.order_id)
        confirmed = domain.settle_charge(command, [(c.transfer_id, c.amount) for c in captured])
        if confirmed is None:
            return []
        log.warning("order %s was cancelled, yet the gateway had captured %s %s: paying it "
                    "back", command.order_id, confirmed.amount.amount, confirmed.amount.currency)
        refund_id = await gateway.refund(command.refund_key, command.order_id, confirmed.amount,
                                         confirmed.gateway_reference)
        return [confirmed, RefundIssuedData(order_id=command.order_id, refund_id=refund_id,
                                            amount=confirmed.amount, reason="cancelled")]

    async def return_transfer(uow: UnitOfWork, command: domain.ReturnTransfer,
                              event: Event) -> Sequence[Model]:
        refund_id = await gateway.refund(command.idempotency_key, command.order_id,
                                         command.amount, command.transfer_id)
        return [TransferReturnedData(order_id=command.order_id, transfer_id=command.transfer_id,
                                     amount=command.amount, refund_id=refund_id,
                                     reason=command.reason)]

    async def settle_transfer(uow: UnitOfWork, command: domain.SettleTransfer,
                              event: Event) -> Sequence[Model]:
        received = await (gateway.transfers(command.pay_into)
                          if command.method == "bank_transfer" else
                          gateway.paid(command.pay_into))
        return domain.settle_transfer(command, [(t.transfer_id, t.amount) for t in received])

    async def refund(uow: UnitOfWork, command: domain.Refund, event: Event) -> Sequence[Model]:
        refund_id = await gateway.refund(command.idempotency_key, command.order_id,
                                         command.amount, command.gateway_reference)
        return [RefundIssuedData(order_id=command.order_id, refund_id=refund_id,
                                 amount=command.amount, reason=command.reason,
                                 return_id=command.return_id)]

    return {
        domain.Charge: unless_lapsed(charge),
        domain.OpenTransfer: unless_lapsed(open_transfer),
        domain.RequestPayment: unless_lapsed(request_payment),
        domain.WithdrawRequest: withdraw,
        domain.SettleCharge: settle_charge,
        domain.ReturnTransfer: return_transfer,
        domain.SettleTransfer: settle_transfer,
        domain.Refund: refund,
    }


def wiring(gateway: Gateway, callback_url: str, transfer_ttl: float,
           request_ttl: float = 900.0) -> Wiring[domain.PaymentState]:
    # Every command is a call to the gateway: carried out with no transaction open.
    return Wiring(DECIDER, SOURCE, commands(gateway, callback_url, transfer_ttl, request_ttl),
                  partner_calls=True)


async def build(context: Context) -> ServiceParts:
    settings = context.settings
    metrics.initialise(metrics.PAYMENT_DECLINES, *((r,) for r in DECLINE_REASONS), ("other",))
    metrics.initialise(metrics.COMPENSATIONS, ("payments", "RefundIssued"))
    gateway = HttpGateway(settings.gateway_url)
    wired = wiring(gateway, settings.payments_url, settings.bank_transfer_ttl,
                   settings.app_payment_ttl)
    app = callbacks.create_app(context.new_uow, wired,
                               secret=settings.gateway_callback_secret.get_secret_value(),
                               tolerance=settings.signature_tolerance)
    return ServiceParts(wired, app=app, port=settings.payments_port, close=gateway.close)


DEFINITION = ServiceDefinition(
    name="payments", subscriptions=("orders", "inventory", "shipping"), migrations=None,
    build=build)
