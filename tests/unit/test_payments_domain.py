import asyncio
from datetime import timedelta
from typing import Any

import pytest

from alur.runtime.errors import InfrastructureError
from schemas import Money
from services.payments import domain
from services.payments.bootstrap import make_perform
from services.payments.domain import PaymentState
from services.payments.gateway import InMemoryGateway
from tests.unit.builders import event


def test_nothing_is_charged_before_stock_is_reserved() -> None:
    assert domain.decide(PaymentState(), event("OrderPlaced")) == []


def test_charge_when_stock_reserved_after_the_order_is_known() -> None:
    placed = domain.evolve(PaymentState(), event("OrderPlaced", "o1"))
    [charge] = domain.decide(placed, event("StockReserved", "o1"))
    assert charge.amount.amount == 4998 and charge.idempotency_key == "o1:capture"


def test_charge_when_the_order_arrives_after_its_reservation() -> None:
    reserved = domain.evolve(PaymentState(), event("StockReserved", "o1"))
    [charge] = domain.decide(reserved, event("OrderPlaced", "o1"))
    assert charge.instruction.token == "tok_visa"


def test_never_charge_twice() -> None:
    state = PaymentState()
    for name in ("OrderPlaced", "StockReserved", "PaymentConfirmed"):
        state = domain.evolve(state, event(name, "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []
    assert domain.decide(state, event("OrderPlaced", "o1")) == []


def test_an_order_cancelled_before_its_stock_was_reserved_is_never_charged() -> None:
    state = PaymentState()
    for name in ("OrderPlaced", "OrderCancelled"):
        state = domain.evolve(state, event(name, "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []


class AnswerLostOnce(InMemoryGateway):
    """Opens the account, but the first answer never reaches the service (a read timeout)."""

    lost = False

    async def open_transfer(self, *args: Any) -> str:  # noqa: ANN401
        account = await super().open_transfer(*args)
        if not self.lost:
            self.lost = True
            raise InfrastructureError("gateway unreachable: ReadTimeout('')")
        return account


async def test_a_transfer_opened_again_after_a_lost_answer_is_the_same_request() -> None:
    gateway = AnswerLostOnce()
    perform = make_perform(gateway, "http://127.0.0.1:8092", transfer_ttl=20.0)
    reserved = event("StockReserved", "o1")
    command = domain.OpenTransfer("o1", "pay_o1", Money(amount=4998, currency="EUR"),
                                  idempotency_key="o1:transfer")
    with pytest.raises(InfrastructureError):
        await perform(None, command, reserved)  # type: ignore[arg-type]  # unused by transfers
    await asyncio.sleep(0.01)  # the retry comes later; the request must not change with it
    [pending] = await perform(None, command, reserved)  # type: ignore[arg-type]
    [(_, account)] = gateway.transfers.values()
    assert pending.virtual_account == account
    assert pending.expires_at == reserved.time + timedelta(seconds=20)
